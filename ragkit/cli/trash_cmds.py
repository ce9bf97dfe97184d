"""`trash`: list the trash, `trash restore SHA...`, `trash empty [SHA...]`."""
from __future__ import annotations

import json

from ragkit.cli import common
from ragkit.cli.common import (EXIT_OK, EXIT_PARTIAL, CountProgress, add_json_flag, asset_ids, bulk_json, err, out,
                               report_left_out)
from ragkit.config import Settings


def register(commands) -> None:
    add_trash(commands)


def add_trash(commands) -> None:
    trash = commands.add_parser(
        "trash", help="list the trash; `trash restore SHA...`; `trash empty [SHA...]` deletes for good",
        description="Deleted assets wait in the trash for RAGKIT_TRASH_DAYS days (default 30), then they are "
                    "deleted for good when the app or a command next opens the library.")
    trash.set_defaults(handler=cmd_trash, sha256=[])
    trash_actions = trash.add_subparsers(dest="action", metavar="ACTION")
    trash_restore = trash_actions.add_parser("restore", help="bring assets back from the trash, as they were")
    trash_restore.add_argument("sha256", nargs="+", metavar="SHA256")
    trash_empty = trash_actions.add_parser("empty", help="delete for good everything in the trash, or these assets")
    trash_empty.add_argument("sha256", nargs="*", metavar="SHA256")
    add_json_flag(trash)
    add_json_flag(trash_restore)
    add_json_flag(trash_empty)


def cmd_trash(args, settings: Settings) -> int:
    from ragkit.lifecycle.trash import require_trash
    library = common.open_library(settings)
    require_trash(library)
    if args.action == "restore":
        return _trash_restore(library, asset_ids(args.sha256), args.json)
    if args.action == "empty":
        return _trash_empty(library, asset_ids(args.sha256) if args.sha256 else None, args.json)
    trashed = library.trashed()
    if args.json:
        print(json.dumps({"count": len(trashed), "trash_days": settings.trash_days,
                          "assets": [asset.to_dict() for asset in trashed]}, ensure_ascii=False))
        return EXIT_OK
    if not trashed:
        err("the trash is empty")
        return EXIT_OK
    from datetime import datetime
    for asset in trashed:
        when = datetime.fromtimestamp(asset.trashed_at / 1000).strftime("%Y-%m-%d %H:%M")
        out(f"{asset.sha256}  deleted {when}  {asset.filename}")  # whole: to paste into `trash restore`
    err(f"{len(trashed)} asset(s) in the trash; each is deleted for good {settings.trash_days} days after it "
        "was deleted (RAGKIT_TRASH_DAYS)")
    return EXIT_OK


def _trash_restore(library, ids: list[str], as_json: bool) -> int:
    result = library.restore(ids)
    report_left_out(result)
    if as_json:
        print(json.dumps(bulk_json(result, "restored"), ensure_ascii=False))
    else:
        err(f"restored {len(result.done)} asset(s)")
    return EXIT_OK if result.complete else EXIT_PARTIAL


def _trash_empty(library, ids: list[str] | None, as_json: bool) -> int:
    progress = CountProgress("emptying the trash:")
    try:
        result = library.empty_trash(ids, on_progress=progress)
    finally:
        progress.close()
    report_left_out(result)
    if as_json:
        print(json.dumps({"deleted": len(result.done), "deleted_ids": [a.sha256 for a in result.done],
                          "skipped": [{"sha256": sha, "reason": why} for sha, why in result.skipped.items()],
                          "not_found": result.missing}))
    else:
        err(f"deleted {len(result.done)} asset(s) for good")
    return EXIT_OK if result.complete else EXIT_PARTIAL

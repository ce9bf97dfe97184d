"""`duplicates`: groups of near-duplicate assets (nothing is deleted)."""
from __future__ import annotations

import argparse
import json

from ragkit.cli import common
from ragkit.cli.common import EXIT_OK, CountProgress, add_json_flag, err, out
from ragkit.config import Settings
from ragkit.errors import RagkitError
from ragkit.text import printable


def register(commands) -> None:
    add_duplicates(commands)


def add_duplicates(commands) -> None:
    from ragkit.search.duplicates import DEFAULT_CANDIDATES, DEFAULT_THRESHOLD
    duplicates = commands.add_parser(
        "duplicates", help="groups of near-duplicate assets (resized, re-encoded, cropped, rotated copies)",
        description="List groups of assets whose CLIP vectors have a cosine similarity >= THRESHOLD, "
                    "linked transitively (a copy of a copy joins the group). Each group names the copy "
                    "to keep by default (most pixels, then biggest file). Nothing is deleted.")
    duplicates.add_argument("--threshold", type=_threshold_arg, default=DEFAULT_THRESHOLD, metavar="T",
                            help="cosine similarity, above 0 and at most 1 (default %(default)s)")
    duplicates.add_argument("--candidates", type=_candidates_arg, default=DEFAULT_CANDIDATES, metavar="K",
                            help="neighbours compared per asset, 1-256 (default %(default)s); bigger groups "
                                 "still join up through their members")
    duplicates.set_defaults(handler=cmd_duplicates)
    add_json_flag(duplicates)


def cmd_duplicates(args, settings: Settings) -> int:
    from ragkit.search.duplicates import assets_to_delete, find_duplicate_groups
    library = common.open_library(settings)
    if library.random_weights:
        err("warning: the CLIP model has RANDOM weights: unrelated pictures score as near-duplicates, "
            "so these groups are meaningless. Use a real pretrained tag or checkpoint.")
    bar = CountProgress("compared")
    try:
        groups = find_duplicate_groups(library, args.threshold, candidates=args.candidates, on_progress=bar)
    finally:
        bar.close()
    if args.json:
        print(json.dumps({"threshold": args.threshold, "model": library.model_id,
                          "random_weights": library.random_weights,
                          "groups": [group.to_dict() for group in groups]}, ensure_ascii=False))
        return EXIT_OK
    for number, group in enumerate(groups, 1):
        out(f"group {number}: {len(group.assets)} assets, lowest similarity {group.min_score:.3f}")
        for asset, score in zip(group.assets, group.scores):
            mark = "keep" if asset.sha256 == group.keep else f"{score:.3f}"
            out(f"  {mark:>5}  {asset.sha256[:12]}  {asset.width}x{asset.height}  "
                f"{asset.size_bytes / 1024:,.0f} KiB  {asset.filename}")
        out("")
    err(f"{len(groups)} group(s) at similarity >= {args.threshold}; keeping the first of each would delete "
        f"{assets_to_delete(groups)} asset(s)" + (" (`python -m ragkit delete SHA256...`)" if groups else ""))
    return EXIT_OK


def _threshold_arg(text: str) -> float:
    """--threshold: a cosine similarity in (0, 1], or a usage error (exit 2)."""
    from ragkit.search.duplicates import validate_threshold
    try:
        return validate_threshold(text)
    except RagkitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _candidates_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"give a whole number from 1 to 256, not {printable(text)[:40]!r}")
    return value

"""Moving a library on: migrate to a Milvus server, upgrade its format, reindex with another model."""
from __future__ import annotations

import json

from ragkit.cli import common
from ragkit.cli.common import (EXIT_OK, MAX_BATCH_SIZE, MAX_COPY_BATCH, MAX_WORKERS, CountProgress, add_json_flag,
                               err, whole_number)
from ragkit.config import Settings


def register(commands) -> None:
    add_migrate(commands)
    add_upgrade(commands)
    add_reindex(commands)


def add_migrate(commands) -> None:
    migrate = commands.add_parser(
        "migrate", help="copy the library (vectors included, no re-embedding) to a Milvus server",
        description="Copy every asset of the current model's collection to the Milvus at --to. Safe to run "
                    "again: it copies only what is missing, so an interrupted run is completed by the next. "
                    "The embedded file is left as it is; image files stay in RAGKIT_DATA_DIR.")
    migrate.add_argument("--to", required=True, metavar="URI", help="the target, e.g. http://milvus.lan:19530")
    migrate.add_argument("--batch-size", type=whole_number(1, MAX_COPY_BATCH), default=256, metavar="N",
                         help=f"assets per copy step, 1-{MAX_COPY_BATCH} (default 256)")
    migrate.add_argument("--token", default="", metavar="TOKEN",
                         help="user:password or API key of the target (or write user:password@ into the URI)")
    migrate.set_defaults(handler=cmd_migrate)
    add_json_flag(migrate)


def cmd_migrate(args, settings: Settings) -> int:
    from ragkit.lifecycle.migrate import migrate_library
    library = common.open_library(settings)
    progress = CountProgress("copied")
    try:
        report = migrate_library(library, args.to, args.token or "", on_progress=progress, batch=args.batch_size)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        err(f"copied {report.copied} asset(s) to {report.target} (collection {report.collection}); "
            f"{report.already_there} were already there; the target now holds {report.target_rows}.")
        err(f"Next: set RAGKIT_MILVUS_URI={report.target} (and RAGKIT_MILVUS_TOKEN) for the app and the CLI, "
            f"and keep RAGKIT_DATA_DIR={settings.data_dir} reachable by every process. "
            "The embedded file is untouched.")
    return EXIT_OK


def add_upgrade(commands) -> None:
    upgrade = commands.add_parser(
        "upgrade", help="bring a library made by an older ragkit to the current format (no re-embedding)",
        description="Copy the library's rows and vectors into a collection of the current schema, which adds "
                    "the trash, usage rights, captions and keyword search. Safe to interrupt: the library keeps "
                    "using the old collection until the copy is complete, and the next run completes it.")
    upgrade.add_argument("--drop-old", action="store_true", help="then drop the old collection")
    upgrade.add_argument("--batch-size", type=whole_number(1, MAX_COPY_BATCH), default=256, metavar="N",
                         help="assets per copy step (default 256)")
    upgrade.set_defaults(handler=cmd_upgrade)
    add_json_flag(upgrade)


def cmd_upgrade(args, settings: Settings) -> int:
    library = common.open_library(settings)
    if library.needs_upgrade:
        err(f"upgrading the library ({library.count()} assets) to the current format: rows and vectors are "
            "copied, nothing is re-embedded; the old collection stays until --drop-old")
    progress = CountProgress("copied")
    try:
        report = library.upgrade(on_progress=progress, drop_old=args.drop_old, batch=args.batch_size)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    elif report.from_version == report.to_version:
        err(f"the library is already in the current format (schema {report.to_version}), {report.assets} assets"
            + ("; the old collection was dropped" if report.dropped_old else ""))
    else:
        err(f"upgraded: schema {report.from_version} -> {report.to_version}, {report.assets} assets "
            f"(collection {report.collection})" + ("; the old collection was dropped" if report.dropped_old else ""))
    return EXIT_OK


def add_reindex(commands) -> None:
    reindex = commands.add_parser(
        "reindex", help="embed every image again with another CLIP model, then switch the library to it",
        description="Embed every original again with --model/--pretrained into that model's own index, while the "
                    "current one keeps serving search; once complete and verified the library switches to it "
                    "(recorded in RAGKIT_DATA_DIR/model.json: every process follows). Safe to interrupt: the next "
                    "run resumes. The old index stays until --drop-old.")
    reindex.add_argument("--model", default="", metavar="ARCH", help="open_clip architecture, e.g. ViT-B-16")
    reindex.add_argument("--pretrained", default="", metavar="TAG_OR_PATH",
                         help="an open_clip pretrained tag, a checkpoint file, or none (random weights)")
    reindex.add_argument("--drop-old", action="store_true",
                         help="then drop the other models' indexes (alone: drop them now)")
    reindex.add_argument("--batch-size", type=whole_number(1, MAX_BATCH_SIZE), default=32,
                         help=f"images per model call, 1-{MAX_BATCH_SIZE} (default 32)")
    reindex.add_argument("--workers", type=whole_number(1, MAX_WORKERS), default=2,
                         help=f"decoding threads, 1-{MAX_WORKERS} (default 2)")
    reindex.set_defaults(handler=cmd_reindex, check=check_reindex)
    add_json_flag(reindex)


def check_reindex(args, error) -> None:
    """What the flags of `reindex` must be together (error: the parser's usage error)."""
    if bool(args.model) != bool(args.pretrained):
        error("reindex: give --model ARCH and --pretrained TAG_OR_PATH together")
    if not args.model and not args.drop_old:
        error("reindex: give --model ARCH --pretrained TAG_OR_PATH (or --drop-old alone)")


def cmd_reindex(args, settings: Settings) -> int:
    from ragkit.ingest.embedder import model_identity, weights_are_random
    from ragkit.lifecycle.reindex import reindex
    library = common.open_library(settings)
    model = args.model or library.active_model.choice.model  # --drop-old alone: the current model
    pretrained = args.pretrained or library.active_model.choice.pretrained
    if model_identity(model, pretrained) != library.model_id:
        err(f"re-indexing {library.count()} assets with {model_identity(model, pretrained)}: the library keeps "
            f"using {library.model_id} until the new index is complete and verified; safe to interrupt "
            "(run the same command again to resume)")
        if weights_are_random(pretrained):
            err("warning: the new model has RANDOM weights; similarities will be meaningless.")
    progress = CountProgress("re-indexed")
    try:
        report = reindex(library, model, pretrained, on_progress=progress, drop_old=args.drop_old,
                         batch_size=args.batch_size, workers=args.workers)
    finally:
        progress.close()
    dropped = f"; dropped {', '.join(report.dropped)}" if report.dropped else ""
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    elif not report.switched:
        err(f"the library already uses {report.model} ({report.assets} assets){dropped}")
    else:
        err(f"switched: the library now uses {report.model}, {report.assets} assets; embedded {report.embedded} in "
            f"{report.seconds:.0f}s ({report.images_per_second:.1f} images/s), {report.verified} checked"
            + (f", {report.updated} updated and {report.removed} removed during the reindex"
               if report.updated or report.removed else "") + dropped)
        if not report.dropped:
            err(f"the index of {report.previous} is kept (python -m ragkit reindex --drop-old removes it)")
    return EXIT_OK

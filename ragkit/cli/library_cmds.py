"""The library's everyday commands: ingest, search, stats, delete, tag, rights."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ragkit.cli import common
from ragkit.cli.common import (EXIT_OK, EXIT_PARTIAL, MAX_BATCH_SIZE, MAX_HITS, MAX_WORKERS, Progress,
                               add_filter_flags, add_json_flag, asset_ids, bulk_json, err, filters_from, fraction,
                               out, report_left_out, warn_random, whole_number)
from ragkit.config import Settings
from ragkit.errors import InvalidImageError


def register(commands) -> None:
    add_ingest(commands)
    add_search(commands)
    add_stats(commands)
    add_delete(commands)
    add_tag(commands)
    add_rights(commands)


def add_ingest(commands) -> None:
    ingest = commands.add_parser("ingest", help="add image files or folders (recursive) to the library")
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    ingest.add_argument("--tag", action="append", default=[], help="tag every added image (repeatable)")
    ingest.add_argument("--batch-size", type=whole_number(1, MAX_BATCH_SIZE), default=32,
                        help=f"images per model call, 1-{MAX_BATCH_SIZE} (default 32)")
    ingest.add_argument("--workers", type=whole_number(1, MAX_WORKERS), default=2,
                        help=f"decoding threads, 1-{MAX_WORKERS} (default 2)")
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")
    ingest.add_argument("--describe", action="store_true",
                        help="then caption the added images with Gemini (RAGKIT_CAPTION_MODEL; needs GEMINI_API_KEY)")
    ingest.add_argument("--concurrency", type=whole_number(1, 16), default=4, metavar="C",
                        help="with --describe: requests at a time, 1-16 (default 4)")
    ingest.set_defaults(handler=cmd_ingest)
    add_json_flag(ingest)


def cmd_ingest(args, settings: Settings) -> int:
    if args.describe:
        from ragkit.studio.captions import Captioner
        Captioner.from_settings(settings).close()  # no key -> a clear error before anything is added
    library = common.open_library(settings)
    warn_random(library)
    bar = Progress(sys.stderr.isatty() and not args.quiet)
    try:
        report = library.ingest_paths(args.paths, tags=args.tag, on_progress=bar,
                                      batch_size=args.batch_size, workers=args.workers)
    finally:
        bar.close()
    for rejected in report.rejected:
        err(f"rejected: {rejected.path}: {rejected.reason}")
    rate = len(report.added) / report.seconds if report.seconds and report.added else 0.0
    restored = f", restored from the trash {len(report.restored)}" if report.restored else ""
    err(f"added {len(report.added)}, duplicates {len(report.duplicates)}{restored}, rejected {len(report.rejected)} "
        f"in {report.seconds:.1f}s ({rate:.1f} images/s)")
    described = _describe_added(library, report, args.concurrency) if args.describe else None
    if args.json:
        print(json.dumps({**report.to_dict(), **({"describe": described.to_dict()} if described else {})},
                         ensure_ascii=False))
    described_all = described is None or described.counts()["done"] == len(report.added)
    return EXIT_OK if report.ok and described_all else EXIT_PARTIAL


def _describe_added(library, report, concurrency: int):
    """ingest --describe: captions for the images just added (`describe --all` finishes an interrupted run)."""
    from ragkit.cli.studio_cmds import run_describe
    from ragkit.studio import describe
    from ragkit.studio.cost import format_usd
    if not report.added:
        return None
    plan = describe.plan_describe(library, ids=[asset.sha256 for _, asset in report.added])
    outcome = run_describe(library, plan, concurrency)
    for item in outcome.items:
        if item.reason:
            err(f"not described: {item.sha256[:12]}…: {item.reason}")
    if outcome.error:
        err(f"error: {outcome.error} (`python -m ragkit describe --all` describes the rest)")
    err(f"described {outcome.counts()['done']} of {len(report.added)}, cost {format_usd(outcome.cost_usd)}")
    return outcome


def add_search(commands) -> None:
    search = commands.add_parser("search", help="find images by text, by an example image, or similar to an asset")
    search.add_argument("text", nargs="?", help="what you are looking for")
    search.add_argument("--image", metavar="FILE", help="search by an example image (with TEXT: like it, moved by the words)")
    search.add_argument("--similar", metavar="SHA256", help="images similar to an asset (with TEXT: moved by the words)")
    search.add_argument("--text-weight", type=fraction, default=0.5, metavar="W",
                        help="with --image/--similar and TEXT: 0 = the picture only .. 1 = the words only (default 0.5)")
    search.add_argument("--not", dest="not_text", default="", metavar="TEXT",
                        help="with --image/--similar: move away from this (e.g. 'people')")
    search.add_argument("--no-keywords", action="store_true",
                        help="TEXT by what pictures show only (CLIP), not also by words in names, tags and briefs")
    search.add_argument("-k", type=whole_number(1, MAX_HITS), default=6,
                        help=f"number of hits, 1-{MAX_HITS} (default 6)")
    add_filter_flags(search)
    search.add_argument("--min-score", type=float, default=None, help="drop hits below this cosine similarity")
    search.add_argument("--usable", action="store_true",
                        help="only assets within their usage rights today (leaves out those past their "
                             "usable-until date; see `rights`)")
    search.set_defaults(handler=cmd_search, check=check_search)
    add_json_flag(search)


def check_search(args, error) -> None:
    """What the flags of `search` must be together (error: the parser's usage error)."""
    examples = bool(args.image) + bool(args.similar)
    if examples > 1 or not (examples or args.text):
        error("search takes TEXT, --image FILE or --similar SHA256 (TEXT may go with one of the other two)")
    if args.not_text and not examples:
        error("--not goes with --image or --similar (words alone can't be 'not' something)")


def cmd_search(args, settings: Settings) -> int:
    filters = {"filters": filters_from(args), "min_score": args.min_score}  # bad filters: before the model loads
    library = common.open_library(settings)
    warn_random(library)
    if args.usable:
        from ragkit.rights import now_ms
        filters["usable_at"] = now_ms()
    data = None
    if args.image:
        from ragkit.ingest.pipeline import MAX_FILE_BYTES, read_image_file
        try:
            data = read_image_file(Path(args.image), MAX_FILE_BYTES)
        except InvalidImageError as exc:
            raise InvalidImageError(f"The example image {args.image} can't be used: {exc}") from None
    if (args.image or args.similar) and (args.text or args.not_text):  # "like this, but red"
        hits = library.search_composed(image=data, similar=args.similar, text=args.text or "",
                                       text_weight=args.text_weight, not_text=args.not_text, k=args.k, **filters)
    elif args.image:
        hits = library.search_image(data, args.k, **filters)
    elif args.similar:
        hits = library.search_similar(args.similar, args.k, **filters)
    else:
        hits = library.search_text(args.text or "", args.k, keywords=not args.no_keywords, **filters)
        if not args.no_keywords and library.keyword_search_unavailable and not args.json:
            err(f"note: words in names and tags are not searched: {library.keyword_search_unavailable}")
    if args.json:
        print(json.dumps({"query": args.text or args.image or args.similar,
                          "hits": [hit.to_dict() for hit in hits]}, ensure_ascii=False))
        return EXIT_OK
    if not hits:
        err("no matches" + (" (the library is empty: run `python -m ragkit ingest FOLDER`)"
                            if library.count() == 0 else ""))
        return EXIT_OK
    out(f"{'#':>2}  {'score':>6}  {'sha256':<12}  {'source':<9}  filename  [tags]")
    for rank, hit in enumerate(hits, 1):
        asset = hit.asset
        tags = f"  [{', '.join(asset.tags)}]" if asset.tags else ""
        found = "  (by words: " + ", ".join(hit.matched) + ")" if hit.matched else ""
        out(f"{rank:>2}  {hit.score:6.3f}  {asset.sha256[:12]}  {asset.source:<9}  {asset.filename}{tags}{found}")
        if asset.prompt:
            out(f"{'':>34}prompt: {asset.prompt[:100]}")
    return EXIT_OK


def add_stats(commands) -> None:
    stats = commands.add_parser("stats", help="library size, model and database")
    stats.set_defaults(handler=cmd_stats)
    add_json_flag(stats)


def cmd_stats(args, settings: Settings) -> int:
    from ragkit.studio.cost import CostLedger, format_usd
    library = common.open_library(settings)
    stats = library.stats()
    spent = CostLedger(settings.data_dir).totals()
    if args.json:
        print(json.dumps({**stats.to_dict(), "generation_cost_usd": spent.known_cost,
                          "generations": spent.generations, "generations_unpriced": spent.unpriced,
                          "ledger_damaged_lines": spent.damaged, "ledger_problem": spent.problem},
                         ensure_ascii=False))
        return EXIT_OK
    out(f"assets     {stats.assets}")
    out(f"generated  {stats.generated}")
    out(f"model      {stats.model}{'  (RANDOM WEIGHTS: demo/test only)' if stats.random_weights else ''}")
    out(f"database   {stats.db_uri}  (collection {stats.collection})")
    out(f"files      {stats.data_dir}")
    out(f"generated  {spent.generations} time(s) in the Studio, cost {format_usd(spent.known_cost)}{spent.summary()}")
    if stats.advice:
        out(f"advice     {stats.advice}")
    _print_models(stats)
    return EXIT_OK


def _print_models(stats) -> None:
    """The model part of `stats`: a configured model the library does not use, a reindex, other models."""
    if stats.configured_model:
        out(f"note       RAGKIT_CLIP_MODEL/RAGKIT_CLIP_PRETRAINED name {stats.configured_model}, but this library "
            f"uses {stats.model} (recorded in its data folder, model.json). To move it to that model: "
            "python -m ragkit reindex --model ARCH --pretrained TAG_OR_PATH")
    if stats.reindex:
        state = stats.reindex
        how = ("no progress for a while: it was probably stopped; run the same reindex again to resume"
               if state["stalled"] else "in progress")
        out(f"reindex    to {state['model_id']}: {state['done']} of {state['total']} ({how})")
    for other in stats.other_collections:
        filling = "" if other["complete"] else ", being filled"
        out(f"other      {other['model']}: {other['count']} rows (collection {other['collection']}{filling})")


def add_delete(commands) -> None:
    delete = commands.add_parser(
        "delete", help="move assets to the trash (restorable; `trash empty` deletes for good)",
        description="Move assets to the trash: out of the library, search and export, restorable as they were "
                    "with `trash restore` until `trash empty` or RAGKIT_TRASH_DAYS delete them for good. "
                    "(A library made by an older ragkit has no trash until `upgrade`: there this deletes for good.)")
    delete.add_argument("sha256", nargs="+", metavar="SHA256")
    delete.set_defaults(handler=cmd_delete)
    add_json_flag(delete)


def cmd_delete(args, settings: Settings) -> int:
    """To the trash, or for good on a library that has no trash yet: the one rule, trash.remove."""
    from ragkit.lifecycle.trash import remove
    library = common.open_library(settings)
    to_trash = library.has_trash
    result = remove(library, asset_ids(args.sha256))
    report_left_out(result)
    if args.json:
        print(json.dumps({"deleted": len(result.done), "to_trash": to_trash, "not_found": result.missing,
                          "already_in_trash": list(result.skipped)}))
    elif to_trash:
        err(f"moved {len(result.done)} asset(s) to the trash; `python -m ragkit trash restore SHA...` brings "
            f"them back, `python -m ragkit trash empty` deletes them for good (so does time: after "
            f"{settings.trash_days} days)")
    if not to_trash:
        err(f"deleted {len(result.done)} asset(s) for good: this library has no trash yet; "
            "`python -m ragkit upgrade` adds it (deleted images can then be restored)")
    return EXIT_OK if not result.missing else EXIT_PARTIAL


def add_tag(commands) -> None:
    tag = commands.add_parser("tag", help="add or remove tags of one or many assets")
    tag.add_argument("sha256", nargs="+", metavar="SHA256")
    tag.add_argument("--add", action="append", default=[], metavar="TAG", help="a tag to add (repeatable)")
    tag.add_argument("--remove", action="append", default=[], metavar="TAG", help="a tag to remove (repeatable)")
    tag.set_defaults(handler=cmd_tag)
    add_json_flag(tag)


def cmd_tag(args, settings: Settings) -> int:
    library = common.open_library(settings)
    result = library.update_tags_many(asset_ids(args.sha256), add=args.add, remove=args.remove)
    report_left_out(result)
    if args.json:
        print(json.dumps(bulk_json(result, "updated"), ensure_ascii=False))
    else:
        for asset in result.done:
            out(f"{asset.sha256[:12]}  {', '.join(asset.tags) or '(no tags)'}")
    return EXIT_OK if result.complete else EXIT_PARTIAL


def add_rights(commands) -> None:
    rights = commands.add_parser(
        "rights", help="usage rights of assets: licence note, usable-until date, not as a reference",
        description="Set the usage rights of one or many assets; without options, show them. An asset past its "
                    "usable-until date (the whole day counts, UTC) is marked expired: left out of the Studio's "
                    "suggestions, batch products and `search --usable`.")
    rights.add_argument("sha256", nargs="+", metavar="SHA256")
    until = rights.add_mutually_exclusive_group()
    until.add_argument("--until", metavar="YYYY-MM-DD", help="the last day the assets may be used")
    until.add_argument("--no-until", action="store_true", help="remove the usable-until date")
    rights.add_argument("--note", metavar="TEXT", help="licence or usage note ('' removes it)")
    reference = rights.add_mutually_exclusive_group()
    reference.add_argument("--no-reference", action="store_true", help="do not use them as references")
    reference.add_argument("--allow-reference", action="store_true", help="they may be used as references again")
    rights.set_defaults(handler=cmd_rights)
    add_json_flag(rights)


def cmd_rights(args, settings: Settings) -> int:
    from ragkit.rights import describe, now_ms, rights_change
    library = common.open_library(settings)
    ids = asset_ids(args.sha256)
    no_reference = True if args.no_reference else (False if args.allow_reference else None)
    change = rights_change(until=args.until, no_until=args.no_until, note=args.note, no_reference=no_reference)
    if change.empty:  # nothing to change: show them
        from ragkit.records import BulkResult
        found = {asset.sha256: asset for asset in library.get_many(ids)}
        result = BulkResult(done=[found[sha] for sha in ids if sha in found],
                            missing=[sha for sha in ids if sha not in found])
    else:
        result = library.set_rights(ids, change)
    report_left_out(result)
    if args.json:
        print(json.dumps(bulk_json(result, "assets"), ensure_ascii=False))
    else:
        now = now_ms()
        for asset in result.done:
            out(f"{asset.sha256[:12]}  {describe(asset, now) or '(no usage rights recorded)'}")
    return EXIT_OK if result.complete else EXIT_PARTIAL

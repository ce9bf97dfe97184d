"""Command-line interface: `python -m ragkit ingest | search | stats | delete | tag`.

With ``--json`` stdout carries exactly one JSON document; progress and messages go to
stderr. Exit status: 0 = everything done, 3 = done but some inputs were rejected,
1 = failure (one line on stderr, no traceback), 2 = bad command-line usage.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from .config import Settings
from .errors import InvalidImageError, RagkitError
from .messages import user_message
from .records import SOURCES
from .text import printable

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
MAX_HITS = 1024  # the store returns at most this many hits per search
MAX_BATCH_SIZE = 1024
MAX_WORKERS = 64
MAX_COPY_BATCH = 16384  # Milvus' query result window (quotaAndLimits.limits.maxQueryResultWindow)


def _err(message: str) -> None:
    """A message line on stderr; names and reasons in it are user data (see printable)."""
    print(printable(message), file=sys.stderr, flush=True)


def _out(text: str, *, keep_newlines: bool = False) -> None:
    """Human-readable output on stdout, through the same filter (JSON is printed as is)."""
    print(printable(text, keep_newlines=keep_newlines))


def _open_library(settings: Settings):
    from .library import Library
    return Library.open(settings)


def _warn_random(library) -> None:
    """Load the model now (ingest and search need it) and say loudly if it is untrained."""
    if library.embedder.random_weights:
        _err("warning: the CLIP model has RANDOM weights (RAGKIT_CLIP_PRETRAINED="
             f"{library.settings.clip_pretrained}); similarities are meaningless. "
             "Use a real pretrained tag or checkpoint for real search.")


class _Progress:
    """A tqdm bar on a terminal; silence when stderr is piped (logs stay readable)."""
    def __init__(self, enabled: bool) -> None:
        self._bar = None
        self._enabled = enabled

    def __call__(self, progress) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            from tqdm import tqdm
            self._bar = tqdm(total=progress.total, unit="img", file=sys.stderr, dynamic_ncols=True)
        self._bar.set_postfix(added=progress.added, dup=progress.duplicates, rejected=progress.rejected)
        self._bar.update(progress.done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _CountProgress:
    """(done, total) progress: a tqdm bar on a terminal; in a log, one line per tenth of the work."""
    def __init__(self, verb: str, unit: str = "asset") -> None:
        self._verb, self._unit = verb, unit
        self._bar = None
        self._logged = -1

    def __call__(self, done: int, total: int) -> None:
        if not total:
            return
        if sys.stderr.isatty():
            if self._bar is None:
                from tqdm import tqdm
                self._bar = tqdm(total=total, unit=self._unit, file=sys.stderr, dynamic_ncols=True)
            self._bar.update(done - self._bar.n)
        elif (tenth := done * 10 // total) > self._logged:
            self._logged = tenth
            _err(f"{self._verb} {done} of {total}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def cmd_ingest(args, settings: Settings) -> int:
    library = _open_library(settings)
    _warn_random(library)
    bar = _Progress(sys.stderr.isatty() and not args.quiet)
    try:
        report = library.ingest_paths(args.paths, tags=args.tag, on_progress=bar,
                                      batch_size=args.batch_size, workers=args.workers)
    finally:
        bar.close()
    for rejected in report.rejected:
        _err(f"rejected: {rejected.path}: {rejected.reason}")
    rate = len(report.added) / report.seconds if report.seconds and report.added else 0.0
    _err(f"added {len(report.added)}, duplicates {len(report.duplicates)}, rejected {len(report.rejected)} "
         f"in {report.seconds:.1f}s ({rate:.1f} images/s)")
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    return EXIT_OK if report.ok else EXIT_PARTIAL


def cmd_search(args, settings: Settings) -> int:
    filters = {"filters": _filters(args), "min_score": args.min_score}  # bad filters: before the model loads
    library = _open_library(settings)
    _warn_random(library)
    data = None
    if args.image:
        from .ingest import MAX_FILE_BYTES, read_image_file
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
        if not args.no_keywords and library.keyword_search and not args.json:
            _err(f"note: words in names and tags are not searched: {library.keyword_search}")
    if args.json:
        print(json.dumps({"query": args.text or args.image or args.similar,
                          "hits": [hit.to_dict() for hit in hits]}, ensure_ascii=False))
        return EXIT_OK
    if not hits:
        _err("no matches" + (" (the library is empty: run `python -m ragkit ingest FOLDER`)"
                             if library.count() == 0 else ""))
        return EXIT_OK
    _out(f"{'#':>2}  {'score':>6}  {'sha256':<12}  {'source':<9}  filename  [tags]")
    for rank, hit in enumerate(hits, 1):
        asset = hit.asset
        tags = f"  [{', '.join(asset.tags)}]" if asset.tags else ""
        found = "  (by words: " + ", ".join(hit.matched) + ")" if hit.matched else ""
        _out(f"{rank:>2}  {hit.score:6.3f}  {asset.sha256[:12]}  {asset.source:<9}  {asset.filename}{tags}{found}")
        if asset.prompt:
            _out(f"{'':>34}prompt: {asset.prompt[:100]}")
    return EXIT_OK


def cmd_stats(args, settings: Settings) -> int:
    library = _open_library(settings)
    stats = library.stats()
    if args.json:
        print(json.dumps(stats.to_dict(), ensure_ascii=False))
        return EXIT_OK
    _out(f"assets     {stats.assets}")
    _out(f"generated  {stats.generated}")
    _out(f"model      {stats.model}{'  (RANDOM WEIGHTS: demo/test only)' if stats.random_weights else ''}")
    _out(f"database   {stats.db_uri}  (collection {stats.collection})")
    _out(f"files      {stats.data_dir}")
    if stats.advice:
        _out(f"advice     {stats.advice}")
    return EXIT_OK


def cmd_delete(args, settings: Settings) -> int:
    library = _open_library(settings)
    from .filters import validate_sha256
    ids = [validate_sha256(s) for s in args.sha256]
    missing = [s for s in ids if library.store.get(s) is None]
    deleted = library.delete([s for s in ids if s not in missing])
    for sha in missing:
        _err(f"not found: {sha}")
    if args.json:
        print(json.dumps({"deleted": deleted, "not_found": missing}))
    else:
        _err(f"deleted {deleted} asset(s)")
    return EXIT_OK if not missing else EXIT_PARTIAL


def cmd_tag(args, settings: Settings) -> int:
    library = _open_library(settings)
    asset = library.update_tags(args.sha256, add=args.add, remove=args.remove)
    if args.json:
        print(json.dumps(asset.to_dict(), ensure_ascii=False))
    else:
        _out(", ".join(asset.tags) or "(no tags)")
    return EXIT_OK


def cmd_doctor(args, settings: Settings) -> int:
    from . import doctor
    library = _open_library(settings)
    report = doctor.repair(library) if args.repair else doctor.check(library)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        _out(f"rows {report.rows}, original files {report.files}")
        problems = [("rows whose original is missing", report.rows_without_original),
                    ("rows whose thumbnail is missing", report.rows_without_thumbnail),
                    ("files without a row", report.files_without_row),
                    ("unfinished writes", report.temp_files)]
        for label, items in problems:
            if items:
                _out(f"{label}: {len(items)}")
        for action in report.actions:
            _out(f"repaired: {action}")
        if report.healthy:
            _out("healthy: files and database agree")
        elif not args.repair:
            _out("run `python -m ragkit doctor --repair` to fix these")
    return EXIT_OK if report.healthy or args.repair else EXIT_PARTIAL


def cmd_export(args, settings: Settings) -> int:
    from .portable import export_library
    filters = _filters(args)
    library = _open_library(settings)
    report = export_library(library, args.out, filters=filters)
    for sha in report.missing:
        _err(f"missing original, not exported: {sha} (run `python -m ragkit doctor`)")
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        _err(f"exported {report.assets} asset(s) to {report.path} ({report.bytes / 2**20:.1f} MiB)")
    return EXIT_OK if not report.missing else EXIT_PARTIAL


def cmd_import(args, settings: Settings) -> int:
    from .portable import import_library
    library = _open_library(settings)
    _warn_random(library)
    report = import_library(library, args.archive)
    for rejected in report.rejected:
        _err(f"rejected: {rejected.path}: {rejected.reason}")
    _err(f"imported {len(report.added)}, duplicates {len(report.duplicates)}, rejected {len(report.rejected)}")
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    return EXIT_OK if report.ok else EXIT_PARTIAL


def cmd_generate(args, settings: Settings) -> int:
    from .images import EXTENSION_BY_MIME
    from .studio import ImageGenerator, generate_from, save_generated_image
    generator = ImageGenerator.from_settings(settings)  # no key -> a clear error before anything loads
    library = _open_library(settings)
    _err(f"generating {args.n} image(s) with {args.model or settings.gemini_model} "
         f"from {len(args.ref)} reference(s)…")
    generation = generate_from(library, generator, args.brief, args.ref, model=args.model,
                               aspect_ratio=args.aspect, variations=args.n)
    for warning in generation.warnings:
        _err(f"warning: {warning}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = []
    stamp = __import__("time").strftime("%Y%m%d-%H%M%S")
    for index, image in enumerate(generation.images, 1):
        path = out_dir / f"ragkit-{stamp}-{index}{EXTENSION_BY_MIME.get(image.mime, '.png')}"
        path.write_bytes(image.data)
        entry = {"path": str(path), "mime": image.mime}
        if args.save:
            entry["sha256"] = save_generated_image(library, generation, image, tags=args.tag).sha256
        images.append(entry)
        _err(f"wrote {path}" + (f" (saved to library as {entry['sha256'][:12]})" if args.save else ""))
    if args.json:
        print(json.dumps({"images": images, "text": generation.text, "model": generation.model,
                          "usage": generation.usage, "seconds": round(generation.seconds, 2),
                          "warnings": generation.warnings}, ensure_ascii=False))
    elif generation.text:
        _out(generation.text, keep_newlines=True)
    return EXIT_OK if not generation.warnings else EXIT_PARTIAL


def cmd_migrate(args, settings: Settings) -> int:
    from .migrate import migrate_library
    library = _open_library(settings)
    progress = _CountProgress("copied")
    try:
        report = migrate_library(library, args.to, args.token or "", on_progress=progress, batch=args.batch_size)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        _err(f"copied {report.copied} asset(s) to {report.target} (collection {report.collection}); "
             f"{report.already_there} were already there; the target now holds {report.target_rows}.")
        _err(f"Next: set RAGKIT_MILVUS_URI={report.target} (and RAGKIT_MILVUS_TOKEN) for the app and the CLI, "
             f"and keep RAGKIT_DATA_DIR={settings.data_dir} reachable by every process. "
             "The embedded file is untouched.")
    return EXIT_OK


def cmd_upgrade(args, settings: Settings) -> int:
    library = _open_library(settings)
    if library.needs_upgrade:
        _err(f"upgrading the library ({library.count()} assets) to the current format: rows and vectors are "
             "copied, nothing is re-embedded; the old collection stays until --drop-old")
    progress = _CountProgress("copied")
    try:
        report = library.upgrade(on_progress=progress, drop_old=args.drop_old, batch=args.batch_size)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    elif report.from_version == report.to_version:
        _err(f"the library is already in the current format (schema {report.to_version}), {report.assets} assets"
             + ("; the old collection was dropped" if report.dropped_old else ""))
    else:
        _err(f"upgraded: schema {report.from_version} -> {report.to_version}, {report.assets} assets "
             f"(collection {report.collection})" + ("; the old collection was dropped" if report.dropped_old else ""))
    return EXIT_OK


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors (which quote what was typed) made safe to print."""
    def error(self, message: str):
        super().error(printable(message))


def _fraction(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, not {printable(text)[:40]}")
    return value


def _whole_number(low: int, high: int):
    """An argparse type: an int in [low, high], or a usage error that says the range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, not {value}")
        return value
    return parse


def _checked(parse, what: str):
    """An argparse type from a ragkit.filters parser: its InvalidInputError becomes a usage error (exit 2)."""
    def check(text: str):
        try:
            return parse(text)
        except RagkitError as exc:
            raise argparse.ArgumentTypeError(printable(str(exc))) from None
    check.__name__ = what  # argparse names the type in some messages
    return check


def _add_filter_flags(command: argparse.ArgumentParser) -> None:
    """The filters `search` and `export` share (ragkit.filters.Filters)."""
    from .filters import FILE_TYPES, ORIENTATIONS, MAX_SIDE, file_type, parse_day, parse_min_side
    command.add_argument("--tag", action="append", default=[], help="only assets with this tag (repeatable)")
    command.add_argument("--source", choices=SOURCES, help="only uploaded or only generated assets")
    command.add_argument("--since", type=_checked(lambda t: parse_day(t, "--since"), "date"), metavar="YYYY-MM-DD",
                         help="only assets added on or after this day (UTC)")
    command.add_argument("--until", type=_checked(lambda t: parse_day(t, "--until"), "date"), metavar="YYYY-MM-DD",
                         help="only assets added on or before this day (UTC)")
    command.add_argument("--type", dest="types", action="append", default=[], metavar="TYPE",
                         type=_checked(file_type, "type"),
                         help=f"only this file type (repeatable): {', '.join(FILE_TYPES)}")
    command.add_argument("--orientation", type=str.lower, choices=ORIENTATIONS,
                         help="only wider than tall, taller than wide, or square pictures")
    command.add_argument("--min-side", type=_checked(parse_min_side, "pixels"), default=0, metavar="PX",
                         help=f"only pictures whose shorter side has at least PX pixels (up to {MAX_SIDE:,})")


def _filters(args):
    """The Filters of `search` or `export` (InvalidInputError, e.g. --since after --until)."""
    from .filters import Filters
    return Filters(tags=tuple(args.tag), source=args.source, since=args.since, until=args.until,
                   types=tuple(args.types), orientation=args.orientation, min_side=args.min_side)


def _threshold_arg(text: str) -> float:
    """--threshold: a cosine similarity in (0, 1], or a usage error (exit 2)."""
    from .duplicates import validate_threshold
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


def cmd_duplicates(args, settings: Settings) -> int:
    from .duplicates import assets_to_delete, find_duplicate_groups
    library = _open_library(settings)
    if library.random_weights:
        _err("warning: the CLIP model has RANDOM weights: unrelated pictures score as near-duplicates, "
             "so these groups are meaningless. Use a real pretrained tag or checkpoint.")
    bar = _CountProgress("compared")
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
        _out(f"group {number}: {len(group.assets)} assets, lowest similarity {group.min_score:.3f}")
        for asset, score in zip(group.assets, group.scores):
            mark = "keep" if asset.sha256 == group.keep else f"{score:.3f}"
            _out(f"  {mark:>5}  {asset.sha256[:12]}  {asset.width}x{asset.height}  "
                 f"{asset.size_bytes / 1024:,.0f} KiB  {asset.filename}")
        _out("")
    _err(f"{len(groups)} group(s) at similarity >= {args.threshold}; keeping the first of each would delete "
         f"{assets_to_delete(groups)} asset(s)" + (" (`python -m ragkit delete SHA256...`)" if groups else ""))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m ragkit",
        description="ragkit: search your image library by description, and generate promo images from it.",
        epilog="Exit status: 0 ok, 3 some inputs rejected (the rest done), 1 failure, 2 usage error. "
               "Settings come from RAGKIT_* environment variables (see README).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = commands.add_parser("ingest", help="add image files or folders (recursive) to the library")
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    ingest.add_argument("--tag", action="append", default=[], help="tag every added image (repeatable)")
    ingest.add_argument("--batch-size", type=_whole_number(1, MAX_BATCH_SIZE), default=32,
                        help=f"images per model call, 1-{MAX_BATCH_SIZE} (default 32)")
    ingest.add_argument("--workers", type=_whole_number(1, MAX_WORKERS), default=2,
                        help=f"decoding threads, 1-{MAX_WORKERS} (default 2)")
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")
    ingest.set_defaults(handler=cmd_ingest)

    search = commands.add_parser("search", help="find images by text, by an example image, or similar to an asset")
    search.add_argument("text", nargs="?", help="what you are looking for")
    search.add_argument("--image", metavar="FILE", help="search by an example image (with TEXT: like it, moved by the words)")
    search.add_argument("--similar", metavar="SHA256", help="images similar to an asset (with TEXT: moved by the words)")
    search.add_argument("--text-weight", type=_fraction, default=0.5, metavar="W",
                        help="with --image/--similar and TEXT: 0 = the picture only .. 1 = the words only (default 0.5)")
    search.add_argument("--not", dest="not_text", default="", metavar="TEXT",
                        help="with --image/--similar: move away from this (e.g. 'people')")
    search.add_argument("--no-keywords", action="store_true",
                        help="TEXT by what pictures show only (CLIP), not also by words in names, tags and briefs")
    search.add_argument("-k", type=_whole_number(1, MAX_HITS), default=6,
                        help=f"number of hits, 1-{MAX_HITS} (default 6)")
    _add_filter_flags(search)
    search.add_argument("--min-score", type=float, default=None, help="drop hits below this cosine similarity")
    search.set_defaults(handler=cmd_search)

    stats = commands.add_parser("stats", help="library size, model and database")
    stats.set_defaults(handler=cmd_stats)

    delete = commands.add_parser("delete", help="remove assets (row, original and thumbnail)")
    delete.add_argument("sha256", nargs="+")
    delete.set_defaults(handler=cmd_delete)

    tag = commands.add_parser("tag", help="add or remove tags of an asset")
    tag.add_argument("sha256")
    tag.add_argument("--add", action="append", default=[], metavar="TAG")
    tag.add_argument("--remove", action="append", default=[], metavar="TAG")
    tag.set_defaults(handler=cmd_tag)

    doctor = commands.add_parser("doctor", help="check that database rows and files agree (and --repair)")
    doctor.add_argument("--repair", action="store_true",
                        help="fix what it finds: adopt orphan files, drop rows whose original is gone, "
                             "rebuild missing thumbnails, remove unfinished writes")
    doctor.set_defaults(handler=cmd_doctor)

    export = commands.add_parser("export", help="write originals + metadata.json to a zip you can take away")
    export.add_argument("--out", required=True, metavar="FILE.zip")
    _add_filter_flags(export)
    export.set_defaults(handler=cmd_export)

    import_ = commands.add_parser("import", help="bring back an export (tags and provenance included)")
    import_.add_argument("archive", metavar="FILE.zip")
    import_.set_defaults(handler=cmd_import)

    generate = commands.add_parser("generate", help="Nano Banana: brief + reference assets -> new images")
    generate.add_argument("brief", help="what to make, e.g. 'a model wearing these on the beach'")
    generate.add_argument("--ref", action="append", default=[], metavar="SHA256",
                          help="a library asset to use as reference (repeatable)")
    generate.add_argument("--model", default=None,
                          help="gemini-2.5-flash-image (Nano Banana, default) or gemini-3-pro-image-preview (Pro)")
    generate.add_argument("--aspect", default=None, help="aspect ratio, e.g. 1:1, 16:9, 9:16")
    generate.add_argument("-n", type=int, default=1, choices=range(1, 9), metavar="N",
                          help="number of variations, 1-8 (requested concurrently)")
    generate.add_argument("--save", action="store_true", help="also save the images into the library")
    generate.add_argument("--tag", action="append", default=[], help="tags for saved images (repeatable)")
    generate.add_argument("--out", default="out", metavar="DIR", help="where image files are written (default out/)")
    generate.set_defaults(handler=cmd_generate)

    migrate = commands.add_parser(
        "migrate", help="copy the library (vectors included, no re-embedding) to a Milvus server",
        description="Copy every asset of the current model's collection to the Milvus at --to. Safe to run "
                    "again: it copies only what is missing, so an interrupted run is completed by the next. "
                    "The embedded file is left as it is; image files stay in RAGKIT_DATA_DIR.")
    migrate.add_argument("--to", required=True, metavar="URI", help="the target, e.g. http://milvus.lan:19530")
    migrate.add_argument("--batch-size", type=_whole_number(1, MAX_COPY_BATCH), default=256, metavar="N",
                         help=f"assets per copy step, 1-{MAX_COPY_BATCH} (default 256)")
    migrate.add_argument("--token", default="", metavar="TOKEN",
                         help="user:password or API key of the target (or write user:password@ into the URI)")
    migrate.set_defaults(handler=cmd_migrate)

    upgrade = commands.add_parser(
        "upgrade", help="bring a library made by an older ragkit to the current format (no re-embedding)",
        description="Copy the library's rows and vectors into a collection of the current schema, which adds "
                    "the trash, usage rights, captions and keyword search. Safe to interrupt: the library keeps "
                    "using the old collection until the copy is complete, and the next run completes it.")
    upgrade.add_argument("--drop-old", action="store_true", help="then drop the old collection")
    upgrade.add_argument("--batch-size", type=_whole_number(1, MAX_COPY_BATCH), default=256, metavar="N",
                         help="assets per copy step (default 256)")
    upgrade.set_defaults(handler=cmd_upgrade)


    from .duplicates import DEFAULT_CANDIDATES, DEFAULT_THRESHOLD
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

    for sub in (ingest, search, stats, delete, tag, doctor, export, import_, generate, migrate, upgrade, duplicates):
        sub.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # A file name that is not UTF-8 must not crash the output (strict locales) or break the JSON
    # (C locales write the raw byte): \udcff is printed as that escape, which JSON reads back as is.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "search":
        examples = bool(args.image) + bool(args.similar)
        if examples > 1 or not (examples or args.text):
            parser.error("search takes TEXT, --image FILE or --similar SHA256 (TEXT may go with one of the other two)")
        if args.not_text and not examples:
            parser.error("--not goes with --image or --similar (words alone can't be 'not' something)")
    debug = os.environ.get("RAGKIT_DEBUG") == "1"
    logging.basicConfig(level=logging.DEBUG if debug else logging.ERROR, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from .connection import quiet_milvus_logging
    if not debug:
        quiet_milvus_logging()
        # open_clip and huggingface_hub log through their own and the root logger; the CLI
        # reports every failure itself, once, as one line.
        logging.getLogger().setLevel(logging.CRITICAL)
        logging.getLogger("huggingface_hub").setLevel(logging.CRITICAL)
    settings = None
    typed_secrets = [getattr(args, "token", "")]  # a --token on the command line is a secret too
    try:
        settings = Settings.load()
        return args.handler(args, settings)
    except RagkitError as exc:
        _err(f"error: {user_message(exc, settings, extra_secrets=typed_secrets)}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _err("interrupted: what was finished is saved; run the same command again to complete it")
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, never a traceback
        if debug:
            raise
        # No server log behind the CLI: the line itself says what failed (detail), secrets masked.
        _err(f"error: {user_message(exc, settings, extra_secrets=typed_secrets, detail=True)} "
             "Set RAGKIT_DEBUG=1 for details.")
        return EXIT_FAILURE

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
from typing import Sequence

from .config import Settings
from .errors import RagkitError
from .records import SOURCES

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _scrub(text: str, settings: Settings | None, args=None) -> str:
    """Secrets out of a message: the settings' ones, and a --token given on the command line."""
    text = settings.scrub(text) if settings else text
    token = getattr(args, "token", "")
    return text.replace(token, "***") if token else text


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
    library = _open_library(settings)
    _warn_random(library)
    filters = {"tags": args.tag, "source": args.source, "min_score": args.min_score}
    if args.image:
        try:
            data = open(args.image, "rb").read()
        except OSError as exc:
            raise RagkitError(f"Cannot read {args.image}: {exc.strerror or exc}") from None
        hits = library.search_image(data, args.k, **filters)
    elif args.similar:
        hits = library.search_similar(args.similar, args.k, **filters)
    else:
        hits = library.search_text(args.text or "", args.k, **filters)
    if args.json:
        print(json.dumps({"query": args.text or args.image or args.similar,
                          "hits": [hit.to_dict() for hit in hits]}, ensure_ascii=False))
        return EXIT_OK
    if not hits:
        _err("no matches" + (" (the library is empty: run `python -m ragkit ingest FOLDER`)"
                             if library.count() == 0 else ""))
        return EXIT_OK
    print(f"{'#':>2}  {'score':>6}  {'sha256':<12}  {'source':<9}  filename  [tags]")
    for rank, hit in enumerate(hits, 1):
        asset = hit.asset
        tags = f"  [{', '.join(asset.tags)}]" if asset.tags else ""
        print(f"{rank:>2}  {hit.score:6.3f}  {asset.sha256[:12]}  {asset.source:<9}  {asset.filename}{tags}")
        if asset.prompt:
            print(f"{'':>34}prompt: {asset.prompt[:100]}")
    return EXIT_OK


def cmd_stats(args, settings: Settings) -> int:
    library = _open_library(settings)
    stats = library.stats()
    if args.json:
        print(json.dumps(stats.to_dict(), ensure_ascii=False))
        return EXIT_OK
    print(f"assets     {stats.assets}")
    print(f"generated  {stats.generated}")
    print(f"model      {stats.model}{'  (RANDOM WEIGHTS: demo/test only)' if stats.random_weights else ''}")
    print(f"database   {stats.db_uri}  (collection {stats.collection})")
    print(f"files      {stats.data_dir}")
    if stats.advice:
        print(f"advice     {stats.advice}")
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
        print(", ".join(asset.tags) or "(no tags)")
    return EXIT_OK


def cmd_doctor(args, settings: Settings) -> int:
    from . import doctor
    library = _open_library(settings)
    report = doctor.repair(library) if args.repair else doctor.check(library)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        print(f"rows {report.rows}, original files {report.files}")
        problems = [("rows whose original is missing", report.rows_without_original),
                    ("rows whose thumbnail is missing", report.rows_without_thumbnail),
                    ("files without a row", report.files_without_row),
                    ("unfinished writes", report.temp_files)]
        for label, items in problems:
            if items:
                print(f"{label}: {len(items)}")
        for action in report.actions:
            print(f"repaired: {action}")
        if report.healthy:
            print("healthy: files and database agree")
        elif not args.repair:
            print("run `python -m ragkit doctor --repair` to fix these")
    return EXIT_OK if report.healthy or args.repair else EXIT_PARTIAL


def cmd_export(args, settings: Settings) -> int:
    from .portable import export_library
    library = _open_library(settings)
    report = export_library(library, args.out, tags=args.tag, source=args.source)
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
    from pathlib import Path

    from .generate import ImageGenerator
    from .images import EXTENSION_BY_MIME
    from .studio import load_references, save_generated_image
    generator = ImageGenerator.from_settings(settings)  # no key -> a clear error before anything loads
    library = _open_library(settings)
    references = load_references(library, args.ref)
    _err(f"generating {args.n} image(s) with {args.model or settings.gemini_model} "
         f"from {len(references)} reference(s)…")
    generation = generator.generate(args.brief, references, model=args.model, aspect_ratio=args.aspect,
                                    variations=args.n)
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
        print(generation.text)
    return EXIT_OK if not generation.warnings else EXIT_PARTIAL


def cmd_migrate(args, settings: Settings) -> int:
    from .migrate import migrate_library
    library = _open_library(settings)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None and total and sys.stderr.isatty():
            from tqdm import tqdm
            bar = tqdm(total=total, unit="asset", file=sys.stderr, dynamic_ncols=True)
        if bar is not None:
            bar.update(done - bar.n)

    try:
        report = migrate_library(library, args.to, args.token or "", on_progress=progress, batch=args.batch_size)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        _err(f"copied {report.copied} asset(s) to {report.target} (collection {report.collection}); "
             f"{report.already_there} were already there; the target now holds {report.target_rows}.")
        _err(f"Next: set RAGKIT_MILVUS_URI={report.target} (and RAGKIT_MILVUS_TOKEN) for the app and the CLI, "
             f"and keep RAGKIT_DATA_DIR={settings.data_dir} reachable by every process. "
             "The embedded file is untouched.")
    return EXIT_OK


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
        raise argparse.ArgumentTypeError(f"give a whole number from 1 to 256, not {text[:40]!r}")
    return value


class _CountBar:
    """A tqdm bar fed by (done, total) callbacks, on a terminal only (logs stay readable when piped)."""
    def __init__(self, unit: str, description: str) -> None:
        self._bar = None
        self._unit, self._description = unit, description

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None and total and sys.stderr.isatty():
            from tqdm import tqdm
            self._bar = tqdm(total=total, unit=self._unit, desc=self._description, file=sys.stderr,
                             dynamic_ncols=True)
        if self._bar is not None:
            self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def cmd_duplicates(args, settings: Settings) -> int:
    from .duplicates import assets_to_delete, find_duplicate_groups
    library = _open_library(settings)
    if library.random_weights:
        _err("warning: the CLIP model has RANDOM weights: unrelated pictures score as near-duplicates, "
             "so these groups are meaningless. Use a real pretrained tag or checkpoint.")
    bar = _CountBar("asset", "comparing")
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
        print(f"group {number}: {len(group.assets)} assets, lowest similarity {group.min_score:.3f}")
        for asset, score in zip(group.assets, group.scores):
            mark = "keep" if asset.sha256 == group.keep else f"{score:.3f}"
            print(f"  {mark:>5}  {asset.sha256[:12]}  {asset.width}x{asset.height}  "
                  f"{asset.size_bytes / 1024:,.0f} KiB  {asset.filename}")
        print()
    _err(f"{len(groups)} group(s) at similarity >= {args.threshold}; keeping the first of each would delete "
         f"{assets_to_delete(groups)} asset(s)" + (" (`python -m ragkit delete SHA256...`)" if groups else ""))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ragkit",
        description="ragkit: search your image library by description, and generate promo images from it.",
        epilog="Exit status: 0 ok, 3 some inputs rejected (the rest done), 1 failure, 2 usage error. "
               "Settings come from RAGKIT_* environment variables (see README).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = commands.add_parser("ingest", help="add image files or folders (recursive) to the library")
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    ingest.add_argument("--tag", action="append", default=[], help="tag every added image (repeatable)")
    ingest.add_argument("--batch-size", type=int, default=32, help="images per model call (default 32)")
    ingest.add_argument("--workers", type=int, default=2, help="decoding threads (default 2)")
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")
    ingest.set_defaults(handler=cmd_ingest)

    search = commands.add_parser("search", help="find images by text, by an example image, or similar to an asset")
    search.add_argument("text", nargs="?", help="what you are looking for")
    search.add_argument("--image", metavar="FILE", help="search by an example image instead of text")
    search.add_argument("--similar", metavar="SHA256", help="images similar to an asset in the library")
    search.add_argument("-k", type=int, default=6, help="number of hits (default 6)")
    search.add_argument("--tag", action="append", default=[], help="only assets with this tag (repeatable)")
    search.add_argument("--source", choices=SOURCES, help="only uploaded or only generated assets")
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
    export.add_argument("--tag", action="append", default=[], help="only assets with this tag (repeatable)")
    export.add_argument("--source", choices=SOURCES, help="only uploaded or only generated assets")
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
    migrate.add_argument("--batch-size", type=int, default=256, metavar="N", help="assets per copy step (default 256)")
    migrate.add_argument("--token", default="", metavar="TOKEN",
                         help="user:password or API key of the target (or write user:password@ into the URI)")
    migrate.set_defaults(handler=cmd_migrate)

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

    for sub in (ingest, search, stats, delete, tag, doctor, export, import_, generate, migrate, duplicates):
        sub.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "search" and sum(bool(x) for x in (args.text, args.image, args.similar)) != 1:
        parser.error("search takes exactly one of: TEXT, --image FILE, --similar SHA256")
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
    try:
        settings = Settings.load()
        return args.handler(args, settings)
    except RagkitError as exc:
        _err(f"error: {_scrub(str(exc), settings, args)}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _err("interrupted: what was finished is saved; run the same command again to complete it")
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, never a traceback
        if debug:
            raise
        _err(f"error: unexpected {type(exc).__name__}: {_scrub(str(exc), settings, args)[:500]} "
             "(set RAGKIT_DEBUG=1 for details)")
        return EXIT_FAILURE

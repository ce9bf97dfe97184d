"""The library's files: doctor (rows and files agree), export to a zip, import one."""
from __future__ import annotations

import json

from ragkit.cli import common
from ragkit.cli.common import (EXIT_OK, EXIT_PARTIAL, add_filter_flags, add_json_flag, err, filters_from, out,
                               warn_random)
from ragkit.config import Settings


def register(commands) -> None:
    add_doctor(commands)
    add_export(commands)
    add_import(commands)


def add_doctor(commands) -> None:
    doctor = commands.add_parser("doctor", help="check that database rows and files agree (and --repair)")
    doctor.add_argument("--repair", action="store_true",
                        help="fix what it finds: adopt orphan files, drop rows whose original is gone, "
                             "rebuild missing thumbnails, remove unfinished writes")
    doctor.set_defaults(handler=cmd_doctor)
    add_json_flag(doctor)


def cmd_doctor(args, settings: Settings) -> int:
    from ragkit.lifecycle import doctor
    library = common.open_library(settings)
    report = doctor.repair(library) if args.repair else doctor.check(library)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        out(f"rows {report.rows} ({report.in_trash} in the trash), original files {report.files}")
        problems = [("rows whose original is missing", report.rows_without_original),
                    ("rows whose thumbnail is missing", report.rows_without_thumbnail),
                    ("files without a row", report.files_without_row),
                    ("unfinished writes", report.temp_files)]
        for label, items in problems:
            if items:
                out(f"{label}: {len(items)}")
        for action in report.actions:
            out(f"repaired: {action}")
        if report.healthy:
            out("healthy: files and database agree")
        elif not args.repair:
            out("run `python -m ragkit doctor --repair` to fix these")
    return EXIT_OK if report.healthy or args.repair else EXIT_PARTIAL


def add_export(commands) -> None:
    export = commands.add_parser("export", help="write originals + metadata.json to a zip you can take away")
    export.add_argument("--out", required=True, metavar="FILE.zip")
    add_filter_flags(export)
    export.set_defaults(handler=cmd_export)
    add_json_flag(export)


def cmd_export(args, settings: Settings) -> int:
    from ragkit.ingest.portable import export_library
    filters = filters_from(args)
    library = common.open_library(settings)
    report = export_library(library, args.out, filters=filters)
    for sha in report.missing:
        err(f"missing original, not exported: {sha} (run `python -m ragkit doctor`)")
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        err(f"exported {report.assets} asset(s) to {report.path} ({report.bytes / 2**20:.1f} MiB)")
    return EXIT_OK if not report.missing else EXIT_PARTIAL


def add_import(commands) -> None:
    import_ = commands.add_parser("import", help="bring back an export (tags and provenance included)")
    import_.add_argument("archive", metavar="FILE.zip")
    import_.set_defaults(handler=cmd_import)
    add_json_flag(import_)


def cmd_import(args, settings: Settings) -> int:
    from ragkit.ingest.portable import import_library
    library = common.open_library(settings)
    warn_random(library)
    report = import_library(library, args.archive)
    for rejected in report.rejected:
        err(f"rejected: {rejected.path}: {rejected.reason}")
    err(f"imported {len(report.added)}, duplicates {len(report.duplicates)}, rejected {len(report.rejected)}")
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    return EXIT_OK if report.ok else EXIT_PARTIAL

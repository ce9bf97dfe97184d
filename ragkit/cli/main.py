"""Command-line interface: `python -m ragkit ingest | search | stats | delete | tag | rights | trash | ...`.

With ``--json`` stdout carries exactly one JSON document; progress and messages go to
stderr. Exit status: 0 = everything done, 3 = done but some inputs were rejected,
1 = failure (one line on stderr, no traceback), 2 = bad command-line usage.

This module is the shell: the parser and `main()`. Each command lives in the module of its
group (`library_cmds`, `trash_cmds`, ...), whose `register(commands)` adds its parsers next to
its handlers; what they share (exit codes, output, argument types, `open_library`) is `common`.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from ragkit.cli import (duplicates_cmds, files_cmds, library_cmds, lifecycle_cmds, studio_cmds,
                        trash_cmds)
from ragkit.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, Parser, err
from ragkit.config import Settings
from ragkit.errors import RagkitError
from ragkit.messages import user_message

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_PARTIAL"]  # tests use the codes


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m ragkit",
        description="ragkit: search your image library by description, and generate promo images from it.",
        epilog="Exit status: 0 ok, 3 some inputs rejected (the rest done), 1 failure, 2 usage error. "
               "Settings come from RAGKIT_* environment variables (see README).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The order here is the order `--help` lists the commands in.
    library_cmds.register(commands)     # ingest search stats delete tag rights
    trash_cmds.register(commands)       # trash [restore|empty]
    files_cmds.register(commands)       # doctor export import
    studio_cmds.register(commands)      # generate brand-kit batch describe
    lifecycle_cmds.register(commands)   # migrate upgrade reindex
    duplicates_cmds.register(commands)  # duplicates
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # A file name that is not UTF-8 must not crash the output (strict locales) or break the JSON
    # (C locales write the raw byte): \udcff is printed as that escape, which JSON reads back as is.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "check", None):  # a command's cross-flag checks (usage errors, exit 2)
        args.check(args, parser.error)
    debug = os.environ.get("RAGKIT_DEBUG") == "1"
    logging.basicConfig(level=logging.DEBUG if debug else logging.ERROR, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from ragkit.storage.connection import quiet_milvus_logging
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
        err(f"error: {user_message(exc, settings, extra_secrets=typed_secrets)}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        err("interrupted: what was finished is saved; run the same command again to complete it")
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, never a traceback
        if debug:
            raise
        # No server log behind the CLI: the line itself says what failed (detail), secrets masked.
        err(f"error: {user_message(exc, settings, extra_secrets=typed_secrets, detail=True)} "
            "Set RAGKIT_DEBUG=1 for details.")
        return EXIT_FAILURE

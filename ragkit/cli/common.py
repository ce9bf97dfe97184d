"""What every command shares: exit codes and limits, output helpers, argument types, and opening the library.

Commands open the library through ONE seam, `common.open_library(settings)` (call it as
`common.open_library`, so a test can patch it here for every command).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ragkit.config import Settings
from ragkit.errors import RagkitError
from ragkit.records import SOURCES
from ragkit.text import printable

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
MAX_HITS = 1024  # the store returns at most this many hits per search
MAX_BATCH_SIZE = 1024
MAX_WORKERS = 64
MAX_COPY_BATCH = 16384  # Milvus' query result window (quotaAndLimits.limits.maxQueryResultWindow)


def err(message: str) -> None:
    """A message line on stderr; names and reasons in it are user data (see printable)."""
    print(printable(message), file=sys.stderr, flush=True)


def out(text: str, *, keep_newlines: bool = False) -> None:
    """Human-readable output on stdout, through the same filter (JSON is printed as is)."""
    print(printable(text, keep_newlines=keep_newlines))


def open_library(settings: Settings):
    """The library of these settings; says when opening it emptied expired assets from the trash."""
    from ragkit.library import Library
    library = Library.open(settings)
    if library.expired_on_open:
        err(f"emptied {library.expired_on_open} asset(s) from the trash: they were deleted more than "
            f"{settings.trash_days} days ago (RAGKIT_TRASH_DAYS)")
    return library


def asset_ids(texts: Sequence[str]) -> list[str]:
    """Asset ids from the command line, checked and without repeats (a bad one stops the command)."""
    from ragkit.storage.filters import validate_sha256
    return list(dict.fromkeys(validate_sha256(text) for text in texts))


def bulk_json(result, done_key: str) -> dict:
    """A BulkResult as JSON: the assets as they are now, and what was not done, with why."""
    return {done_key: [asset.to_dict() for asset in result.done],
            "skipped": [{"sha256": sha, "reason": why} for sha, why in result.skipped.items()],
            "not_found": result.missing}


def report_left_out(result) -> None:
    for sha, why in result.skipped.items():
        err(f"skipped {sha}: {why}")
    for sha in result.missing:
        err(f"not found: {sha}")


def warn_random(library) -> None:
    """Load the model now (ingest and search need it) and say loudly if it is untrained."""
    if library.embedder.random_weights:
        err("warning: the CLIP model has RANDOM weights (RAGKIT_CLIP_PRETRAINED="
            f"{library.settings.clip_pretrained}); similarities are meaningless. "
            "Use a real pretrained tag or checkpoint for real search.")


class Progress:
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


class CountProgress:
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
            err(f"{self._verb} {done} of {total}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors (which quote what was typed) made safe to print."""
    def error(self, message: str):
        super().error(printable(message))


def fraction(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, not {printable(text)[:40]}")
    return value


def whole_number(low: int, high: int):
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


def checked(parse, what: str):
    """An argparse type from a ragkit.storage.filters parser: its InvalidInputError becomes a usage error (exit 2)."""
    def check(text: str):
        try:
            return parse(text)
        except RagkitError as exc:
            raise argparse.ArgumentTypeError(printable(str(exc))) from None
    check.__name__ = what  # argparse names the type in some messages
    return check


def add_filter_flags(command: argparse.ArgumentParser) -> None:
    """The filters `search` and `export` share (ragkit.storage.filters.Filters)."""
    from ragkit.storage.filters import FILE_TYPES, ORIENTATIONS, MAX_SIDE, file_type, parse_day, parse_min_side
    command.add_argument("--tag", action="append", default=[], help="only assets with this tag (repeatable)")
    command.add_argument("--source", choices=SOURCES, help="only uploaded or only generated assets")
    command.add_argument("--since", type=checked(lambda t: parse_day(t, "--since"), "date"), metavar="YYYY-MM-DD",
                         help="only assets added on or after this day (UTC)")
    command.add_argument("--until", type=checked(lambda t: parse_day(t, "--until"), "date"), metavar="YYYY-MM-DD",
                         help="only assets added on or before this day (UTC)")
    command.add_argument("--type", dest="types", action="append", default=[], metavar="TYPE",
                         type=checked(file_type, "type"),
                         help=f"only this file type (repeatable): {', '.join(FILE_TYPES)}")
    command.add_argument("--orientation", type=str.lower, choices=ORIENTATIONS,
                         help="only wider than tall, taller than wide, or square pictures")
    command.add_argument("--min-side", type=checked(parse_min_side, "pixels"), default=0, metavar="PX",
                         help=f"only pictures whose shorter side has at least PX pixels (up to {MAX_SIDE:,})")


def filters_from(args):
    """The Filters of `search` or `export` (InvalidInputError, e.g. --since after --until)."""
    from ragkit.storage.filters import Filters
    return Filters(tags=tuple(args.tag), source=args.source, since=args.since, until=args.until,
                   types=tuple(args.types), orientation=args.orientation, min_side=args.min_side)


def add_json_flag(command: argparse.ArgumentParser) -> None:
    """--json, the last option of every command that has it."""
    command.add_argument("--json", action="store_true", help="print one JSON document on stdout")

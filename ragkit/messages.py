"""What a person reads when something fails: one message per exception, never with a secret in it.

The CLI's main(), the pages' show_error and the Studio all turn exceptions into text here.
"""
from __future__ import annotations

import os
from typing import Iterable

from ragkit.config import Settings, mask_secrets
from ragkit.errors import RagkitError
from ragkit.storage.files import is_disk_full, is_read_only

MAX_DETAIL_CHARS = 500


def user_message(exc: BaseException, settings: Settings | None, *, action: str = "",
                 extra_secrets: Iterable[str] = (), detail: bool = False) -> str:
    """The message for a person, with every secret masked.

    A RagkitError's own text (it says what to do next). Anything else gets a short generic
    line naming its type and, if `action` is given, what was being done; its own text is added
    (cut short) only with `detail`, for a surface that has no server log to send it to (the CLI).
    `settings` is None when they could not be loaded (that error's text holds no secret);
    `extra_secrets` are secrets the settings don't know, such as a --token typed on a command line.
    """
    extra = tuple(extra_secrets)
    if isinstance(exc, RagkitError):
        return _masked(str(exc), settings, extra)
    if disk_problem := _disk_message(exc, settings):
        return _masked(disk_problem, settings, extra)
    doing = f" while {action}" if action else ""
    said = str(exc).strip()
    shown = f" ({_masked(said, settings, extra)[:MAX_DETAIL_CHARS]})" if detail and said else ""
    return f"Something unexpected went wrong{doing}: {type(exc).__name__}{shown}."


def _masked(text: str, settings: Settings | None, extra_secrets: tuple[str, ...]) -> str:
    return settings.scrub(text, extra_secrets) if settings else mask_secrets(text, extra_secrets)


def _disk_message(exc: BaseException, settings: Settings | None) -> str:
    """A full or read-only disk, said as such with where (never "unexpected"): the same everywhere."""
    if not isinstance(exc, OSError) or not (is_disk_full(exc) or is_read_only(exc)):
        return ""
    where = exc.filename or (settings.data_dir if settings else None)
    folder = f" {os.path.dirname(str(where)) if exc.filename else where}" if where else ""
    if is_disk_full(exc):
        return (f"The disk is full: ragkit could not write{f' {where}' if where else ''}. What was saved before it "
                f"filled is kept. Free some space on the disk holding{folder or ' the data folder'} (`df -h` shows "
                "it) and run the same command again: it finishes the rest.")
    return (f"ragkit can't write{f' {where}' if where else ''}: the folder{folder} is read-only ({exc.strerror}). "
            "Make it writable for the user running ragkit (or mount it read-write), then try again.")

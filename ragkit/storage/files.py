"""One bounded reader for every file ragkit reads back: its state files are input, like an upload.

Kits, jobs' state.json, the cost ledger, RAGKIT_PRICES and the model record are written by ragkit, but
a person, a full disk, a sync tool or a hostile hand can leave anything there: a truncated file, a list
where an object was, a symlink to /dev/zero, a FIFO, a folder, megabytes of ``[``. Each read here:

- opens without following into a special file: the open is non-blocking (a FIFO can't hang it) and the
  opened file must be a regular file (``/dev/zero``, a socket or a folder is refused);
- reads at most ``max_bytes`` (a state file is small; a bigger one is damage, not data);
- turns every way of being damaged (bad UTF-8, bad JSON, nesting deep enough for a RecursionError,
  NaN) into one StateFileError that names the file and says what to do.

A missing file is not damage: FileNotFoundError goes through for the caller, who knows what "none"
means (no kit, an empty ledger, a new library).
"""
from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from ragkit.errors import StateFileError

MAX_STATE_BYTES = 4 * 1024 * 1024   # a kit or a job's state is a few KB; a job of 10,000 takes is ~3 MB
MAX_LINE_BYTES = 64 * 1024          # one line of an append-only file (the ledger)


def open_state_file(path: Path | str, *, what: str, fix: str) -> BinaryIO:
    """`path` opened for reading if it is a regular file; else a StateFileError naming it.
    FileNotFoundError (also for a dangling symlink) is left to the caller."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise StateFileError(f"{path} ({what}) is a folder, not a file. {fix}") from None
    except NotADirectoryError:
        raise StateFileError(f"{path} ({what}) can't be read: a part of its path is a file, not a folder. "
                             f"{fix}") from None
    except OSError as exc:
        raise StateFileError(f"{path} ({what}) can't be read ({exc.strerror or exc}). {fix}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise StateFileError(f"{path} ({what}) is a folder, not a file. {fix}")
        if not stat.S_ISREG(mode):
            raise StateFileError(f"{path} ({what}) is not a regular file (a device, a pipe or a socket, or a "
                                 f"link to one). {fix}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_state_bytes(path: Path | str, *, what: str, fix: str, max_bytes: int = MAX_STATE_BYTES) -> bytes:
    """The bytes of a small state file, read with the bounds above."""
    with open_state_file(path, what=what, fix=fix) as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise StateFileError(f"{path} ({what}) can't be read ({exc.strerror or exc}). {fix}") from None
    if len(data) > max_bytes:
        raise StateFileError(f"{path} ({what}) is larger than {max_bytes:,} bytes, far more than such a file "
                             f"holds: it is damaged. {fix}")
    return data


def parse_json(data: bytes | str, *, source: str, fix: str) -> Any:
    """JSON from a state file (or a setting); any damage is one StateFileError naming `source`."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        reason = f"not valid JSON: {exc.msg} at line {exc.lineno}"
    except RecursionError:
        reason = "nested too deeply to be real data"
    except UnicodeError:
        reason = "not UTF-8 text"
    except ValueError as exc:  # NaN / Infinity
        reason = str(exc)
    raise StateFileError(f"{source} is damaged ({reason}). {fix}")


def read_json_file(path: Path | str, *, what: str, fix: str, max_bytes: int = MAX_STATE_BYTES) -> Any:
    """A state file's JSON, bounded and validated as far as JSON goes (the caller checks its shape)."""
    data = read_state_bytes(path, what=what, fix=fix, max_bytes=max_bytes)
    return parse_json(data, source=f"{path} ({what})", fix=fix)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number ragkit writes")


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def is_read_only(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)

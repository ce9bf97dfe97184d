"""One writer at a time for the read-modify-write of a library's rows: across processes and threads.

Milvus 2.3 has no partial update, so every edit (tags, trash, restore, rights, captions, approve)
reads whole rows and upserts them back, and emptying the trash reads rows and then deletes them.
Two writers interleaving lose one's write: a restore racing an empty left live rows whose original
was deleted; a delete racing a tag edit either brought the deleted images back or dropped the tags.

Why not order writers in Milvus itself: it has no conditional write (no compare-and-set, no
transaction). A version field can be compared on read, but the compare and the upsert are two calls
and another writer fits between them; a lease row has the same hole, because taking it is itself an
unconditional upsert (and a crashed holder's lease needs a clock to expire). Partial update
(Milvus 2.6) would still not make "restore only if its file is still there" atomic.

What every writer of a library does share is its data folder: the originals and thumbnails live
there, and team mode points every app and CLI at one folder on shared storage. So an OS lock on
``DATA_DIR/rows.lock`` (``fcntl.flock``) orders writers across processes, and across machines on a
shared filesystem whose locks work (NFSv4; NFSv3 with lockd); the kernel releases it when a holder
dies, so a kill -9 never leaves it stuck. Inside one process (a Streamlit server with many sessions)
a re-entrant thread lock is taken first, so one thread holds the file lock at a time and a holder may
call another locked step (emptying a step deletes its rows, which locks too).

Reads inside the lock must see every other writer's last write: a server read there is Strong
(AssetStore), not Session: that read is the cost, ~0.2 s an edit on Milvus 2.3.5 (the flock is ~free;
bench/races_bench.py, docs/performance.md).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path
from typing import Iterator

from ragkit.errors import StoreError

LOCK_FILE = "rows.lock"

_registry_lock = threading.Lock()
_locks: dict[str, "RowLock"] = {}


class RowLock:
    """The row lock of one data folder (``RowLock.for_folder``), or of this process only (``folder=None``:
    a store opened without a data folder, as tests and copies between collections do)."""

    def __init__(self, folder: Path | None) -> None:
        self.path = Path(folder) / LOCK_FILE if folder is not None else None
        self._thread_lock = threading.RLock()
        self._depth = 0    # how deep the holding thread is (guarded by _thread_lock)
        self._fd: int | None = None

    @classmethod
    def for_folder(cls, folder: Path) -> "RowLock":
        """The one RowLock of this folder in this process: every Library on it shares the thread lock."""
        key = os.path.realpath(folder)
        with _registry_lock:
            lock = _locks.get(key)
            if lock is None:
                lock = _locks[key] = cls(Path(key))
            return lock

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock (re-entrant in the holding thread); waits for other threads and processes."""
        with self._thread_lock:
            if self._depth == 0 and self.path is not None:
                self._fd = self._open_locked()
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fd, self._fd = self._fd, None
                    try:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                    finally:
                        os.close(fd)

    def _open_locked(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            try:  # a folder this user may not write still locks through a lock file that is there
                fd = os.open(self.path, os.O_RDONLY)
            except OSError as exc:
                raise StoreError(
                    f"ragkit could not make its edit lock {self.path} ({exc.strerror}), which keeps two "
                    "people's edits from undoing each other. Let this user write to the data folder "
                    "(RAGKIT_DATA_DIR), or create that file once with write access for everyone.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

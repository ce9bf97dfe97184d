"""What exists only because of Milvus Lite, the embedded engine (a ``.db`` path).

The store speaks Milvus; this module holds the embedded engine's quirks, measured on Milvus Lite
3.2 (docs/performance.md):

- pymilvus hands a ``.db`` path to milvus_lite's ServerManager, which starts one gRPC server per
  path *in this process* (holding an flock on ``<path>/LOCK``) and reuses it for every later client
  of that path. ``MilvusClient.close()`` never stops it, so the file would stay locked for other
  processes until exit: we count our clients per path and stop the server with the last one.
- A file can be open in one process only; a second one gets "Open local milvus failed".
- A query from another thread can miss a row whose upsert has already returned (seen: 1 in 30
  three-way upload races; ``consistency_level="Strong"`` does not help). `RecentWrites` lets the
  store ask again, briefly, for ids it wrote moments ago.
- Searches over unsealed (growing) data are slow until a flush seals it.
"""
from __future__ import annotations

import errno
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ragkit.errors import ReadOnlyDataError, StoreLockedError

log = logging.getLogger(__name__)

# Above this many assets the embedded engine is the bottleneck (docs/performance.md: its per-row
# Python passes grow linearly; a text query costs ~180 ms at 100k against ~45 ms on a Milvus server).
COMFORTABLE_ASSETS = 50_000
RECENT_WRITE_SECONDS = 10.0                         # how long RecentWrites remembers an id
STALE_READ_RETRIES_S = (0.02, 0.05, 0.1, 0.2, 0.4)  # ~0.8 s in all, only for ids written moments ago

_clients_lock = threading.Lock()
_clients: dict[str, int] = {}  # absolute .db path -> open clients of this process


def open_client(path: str):
    """A MilvusClient on the Milvus Lite file `path`, counted so close_client() can free the file."""
    from pymilvus import MilvusClient
    key = os.path.abspath(path)
    Path(key).parent.mkdir(parents=True, exist_ok=True)
    with _clients_lock:
        try:
            # A dedicated channel: closing it closes it (a shared one would outlive the server).
            client = MilvusClient(uri=path, dedicated=True)
        except BaseException:
            if not _clients.get(key):  # a server started for nobody: stop it
                _release_server(key)
            raise
        _clients[key] = _clients.get(key, 0) + 1
        return client


def close_client(client, path: str) -> None:
    """Close a client from open_client(); the last one of this process stops the file's server,
    so another process (or a later open) can have the file."""
    try:
        client.close()
    except Exception:  # noqa: BLE001 - closing after the server went away is harmless
        pass
    key = os.path.abspath(path)
    with _clients_lock:
        left = _clients.get(key, 0) - 1
        if left > 0:
            _clients[key] = left
            return
        _clients.pop(key, None)
        try:
            _release_server(key)
        except Exception:  # noqa: BLE001 - the OS frees the lock at exit anyway
            log.warning("could not stop the Milvus Lite server of %s", path, exc_info=True)


def _release_server(key: str) -> None:
    """Stop the in-process server of this file, which frees its LOCK (caller holds _clients_lock)."""
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:  # pragma: no cover - pymilvus without milvus-lite cannot open a .db
        return
    server_manager_instance.release_server(key)


def scale_advice(assets: int) -> str:
    """What to tell the owner of an embedded library that has outgrown it ('' while it hasn't)."""
    if assets < COMFORTABLE_ASSETS:
        return ""
    return (f"{assets:,} assets: the embedded database slows down beyond ~{COMFORTABLE_ASSETS:,}. "
            "Move the library to a Milvus server with `python -m ragkit migrate --to http://HOST:19530` "
            "(README › Team mode).")


def is_locked_error(text: str) -> bool:
    return "Open local milvus failed" in text or "lock" in text.lower()


def locked_error(path: str) -> StoreLockedError:
    from ragkit.storage.app_record import running_app_url
    url = running_app_url(path)
    if url:
        return StoreLockedError(
            f"The library database {path} is open in the app running at {url}. Do it there (to add a folder "
            "of images: Library › Import a folder), or stop the app and run this command again. To use both "
            f"at once, share one server: run `milvus-lite server --data-dir {Path(path).parent} --port 19530` "
            "and set RAGKIT_MILVUS_URI=http://127.0.0.1:19530 for every process.")
    return StoreLockedError(
        f"The library database {path} is open in another process (a running app or CLI). "
        "Stop that process, or share one server between them: run "
        f"`milvus-lite server --data-dir {Path(path).parent} --port 19530` and set "
        "RAGKIT_MILVUS_URI=http://127.0.0.1:19530 for every process.")


def read_only_reason(path: str) -> str:
    """Why the embedded database at `path` can't be written ('' if it can): the engine opens its LOCK
    file for writing even to read, so a read-only folder looks like "open in another process"."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    probe = folder / "LOCK" if (folder / "LOCK").exists() else folder / f".ragkit-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return exc.strerror or "read-only"
        return ""
    os.close(fd)
    if probe.name.startswith(".ragkit-probe-"):
        probe.unlink(missing_ok=True)
    return ""


def read_only_error(path: str, reason: str) -> ReadOnlyDataError:
    folder = Path(path).parent
    return ReadOnlyDataError(
        f"The library's data folder {folder} is read-only ({reason}), so its embedded database {path} can't "
        "be opened: the engine writes to it even to read. Make the folder writable for the user running ragkit "
        "(or mount it read-write); to look into a read-only copy, copy the folder somewhere writable first.")


class RecentWrites:
    """Ids this store upserted in the last RECENT_WRITE_SECONDS, for reads that Lite answers stale."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._written: dict[str, float] = {}

    def remember(self, ids: Iterable[str]) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._written) > 10_000:
                self._written = {k: t for k, t in self._written.items() if now - t < RECENT_WRITE_SECONDS}
            self._written.update((sha, now) for sha in ids)

    def forget(self, ids: Iterable[str]) -> None:
        """Deleted ids: a miss on them is true."""
        with self._lock:
            for sha in ids:
                self._written.pop(sha, None)

    def confirm(self, ids: Sequence[str], found: set[str], ask: Callable[[list[str]], set[str]]) -> set[str]:
        """`found` plus those of `ids` written moments ago that a first query missed and a retry finds."""
        now = time.monotonic()
        with self._lock:
            recent = {sha for sha in ids if now - self._written.get(sha, -1e18) < RECENT_WRITE_SECONDS}
        for delay in STALE_READ_RETRIES_S:
            missed = recent - found
            if not missed:
                break
            time.sleep(delay)
            found |= ask(sorted(missed))
        return found

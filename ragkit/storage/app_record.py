"""Which running app holds an embedded library: a small file next to its database.

Milvus Lite lets one process open a ``.db`` file. When the app has it, a CLI command can only say
"open in another process"; with this record it can name the app's address and the way to do the
same there. The app writes ``<db folder>/app.json`` (the data folder by default) when it opens the
library: its address and process id. A record whose process is gone, or a damaged one, is ignored.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ragkit.errors import StateFileError
from ragkit.storage.blobs import write_atomic
from ragkit.storage.files import read_json_file

RECORD = "app.json"
MAX_RECORD_BYTES = 4096


def record_path(db_path: str | Path) -> Path:
    return Path(db_path).parent / RECORD


def write_app_record(db_path: str | Path, url: str, pid: int | None = None) -> None:
    """Note that this process (an app at `url`) has the embedded database at `db_path` open."""
    payload = {"url": url, "pid": os.getpid() if pid is None else int(pid)}
    write_atomic(record_path(db_path), json.dumps(payload).encode())


def running_app_url(db_path: str | Path) -> str:
    """The address of the running app that wrote the record ('' if none, gone, or the record is damaged)."""
    try:
        data = read_json_file(record_path(db_path), what="the running app's address",
                              fix="Delete it; the app writes it again when it starts.", max_bytes=MAX_RECORD_BYTES)
    except (FileNotFoundError, StateFileError):
        return ""
    if not isinstance(data, dict) or not isinstance(data.get("url"), str) or not isinstance(data.get("pid"), int):
        return ""
    if data["pid"] == os.getpid() or not _alive(data["pid"]):
        return ""
    url = data["url"]
    return url if url.startswith(("http://", "https://")) and len(url) < 300 and url.isprintable() else ""


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    except OSError:
        return False
    return True

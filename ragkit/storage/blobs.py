"""Originals and thumbnails on disk, addressed by the SHA-256 of the original's bytes.

Paths are derived from the asset id only, never from a user's filename, so a name like
``../../etc/passwd`` can't steer a write. Every write goes to a temp file in the same
folder and is renamed into place: a crash leaves either the whole file or nothing.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator

from ragkit.storage.filters import validate_sha256


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder and a rename: a crash leaves
    the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.originals_dir = self.root / "originals"
        self.thumbnails_dir = self.root / "thumbnails"

    def original_path(self, sha256: str) -> Path:
        sha = validate_sha256(sha256)
        return self.originals_dir / sha[:2] / sha

    def thumbnail_path(self, sha256: str) -> Path:
        sha = validate_sha256(sha256)
        return self.thumbnails_dir / sha[:2] / f"{sha}.jpg"

    def put(self, sha256: str, original: bytes, thumbnail: bytes) -> None:
        """Store both files; content-addressed, so an existing original is left alone."""
        original_path = self.original_path(sha256)
        if not original_path.exists() or original_path.stat().st_size != len(original):
            write_atomic(original_path, original)
        write_atomic(self.thumbnail_path(sha256), thumbnail)

    def put_thumbnail(self, sha256: str, thumbnail: bytes) -> None:
        write_atomic(self.thumbnail_path(sha256), thumbnail)

    def read_original(self, sha256: str) -> bytes:
        return self.original_path(sha256).read_bytes()

    def read_thumbnail(self, sha256: str) -> bytes:
        return self.thumbnail_path(sha256).read_bytes()

    def has(self, sha256: str) -> bool:
        return self.original_path(sha256).is_file() and self.thumbnail_path(sha256).is_file()

    def delete(self, sha256: str) -> None:
        self.original_path(sha256).unlink(missing_ok=True)
        self.thumbnail_path(sha256).unlink(missing_ok=True)

    def original_ids(self) -> Iterator[str]:
        """Every stored original's id (for consistency checks)."""
        if self.originals_dir.is_dir():
            for path in self.originals_dir.glob("*/*"):
                if path.is_file() and not path.name.startswith(".tmp-"):
                    yield path.name

    def thumbnail_ids(self) -> Iterator[str]:
        if self.thumbnails_dir.is_dir():
            for path in self.thumbnails_dir.glob("*/*.jpg"):
                if not path.name.startswith(".tmp-"):
                    yield path.stem

    def stale_temp_files(self) -> list[Path]:
        """Temp files left by a crash mid-write."""
        return [p for d in (self.originals_dir, self.thumbnails_dir) if d.is_dir()
                for p in d.glob("*/.tmp-*")]

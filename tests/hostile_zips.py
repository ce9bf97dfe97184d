"""Hostile and careless ragkit exports, built on demand (never committed: a bomb is ~250 KB
zipped and 250 MiB unzipped, so it is written in seconds and costs no repository space).

    write_export(path, entries, members)      # metadata.json + members, like `ragkit export` writes
    honest_entry(data, "shot.jpg")            # the metadata.json entry export would write for data
    Filler(250 * 2**20)                       # 250 MiB of zero bytes, streamed (never in memory)
"""
from __future__ import annotations

import functools
import hashlib
import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

BOMB_MEMBER_BYTES = 250 * 2**20
_CHUNK = 2**20


@dataclass(frozen=True)
class Filler:
    """A member of `size` bytes: `byte` repeated, optionally ending in `tail` (distinct contents)."""
    size: int
    byte: bytes = b"\0"
    tail: bytes = b""

    def chunks(self):
        left = self.size - len(self.tail)
        block = self.byte * _CHUNK
        while left > 0:
            yield block[:min(left, _CHUNK)]
            left -= _CHUNK
        if self.tail:
            yield self.tail


@functools.lru_cache(maxsize=16)
def sha256_of(member: bytes | Filler) -> str:
    digest = hashlib.sha256()
    for chunk in (member.chunks() if isinstance(member, Filler) else [member]):
        digest.update(chunk)
    return digest.hexdigest()


def honest_entry(member: bytes | Filler, filename: str = "shot.jpg", **fields) -> dict:
    """The entry `ragkit export` writes for these bytes (fields override any key)."""
    sha = sha256_of(member)
    return {"sha256": sha, "filename": filename, "mime": "image/jpeg", "width": 320, "height": 240,
            "size_bytes": member.size if isinstance(member, Filler) else len(member), "tags": [],
            "source": "upload", "created_at": "2024-05-01T10:00:00.000+00:00", "prompt": "", "model": "",
            "reference_ids": [], "file": f"originals/{sha}.jpg", **fields}


def manifest(entries: list) -> dict:
    return {"format": "ragkit-export", "version": 1, "model": "ragkit-tiny",
            "exported_at": "2024-05-02T10:00:00+00:00", "assets": entries}


def write_export(path: Path, entries: list | None = None, members: dict[str, bytes | Filler] | None = None, *,
                 metadata: bytes | Filler | None = None, document=None) -> Path:
    """A zip with metadata.json (the manifest of `entries`, or `document` as JSON, or raw `metadata`
    bytes) and the given members; big members are deflated as they are written."""
    if metadata is None:
        metadata = json.dumps(manifest(entries or []) if document is None else document).encode()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        _write_member(archive, "metadata.json", metadata)
        for name, member in (members or {}).items():
            _write_member(archive, name, member)
    return path


def _write_member(archive: zipfile.ZipFile, name: str, member: bytes | Filler) -> None:
    if isinstance(member, bytes):
        archive.writestr(name, member)
        return
    with archive.open(name, "w", force_zip64=True) as handle:
        for chunk in member.chunks():
            handle.write(chunk)


def lie_about_size(path: Path, member: str, claimed_size: int) -> None:
    """Rewrite the uncompressed size that `member`'s local and central headers declare (the CRC
    stays that of the real content): reading it fails with 'Bad CRC-32' or a short stream."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<I", raw, info.header_offset + 22, claimed_size)  # local header: uncompressed size
    name = member.encode()
    central = raw.find(b"PK\x01\x02")
    while central != -1:  # this member's central directory record, found by its name
        name_len = struct.unpack_from("<H", raw, central + 28)[0]
        if raw[central + 46:central + 46 + name_len] == name:
            struct.pack_into("<I", raw, central + 24, claimed_size)
            break
        central = raw.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(raw))

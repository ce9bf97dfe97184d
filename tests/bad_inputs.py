"""The bad-input corpus: every kind of file a real archive or a careless drag-and-drop holds.

Built on demand into a folder (binary fixtures would hide what they contain). Each entry
says what the user must be told; `good` files must land whatever else is in the batch.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.images_factory import encode, jpeg_bytes, picture


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes | None          # None: made specially (see build)
    expect: str | None          # regex of the rejection reason; None means it must be added


def _animated_gif() -> bytes:
    frames = [picture(s, (200, 150)) for s in (41, 42, 43)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    return buffer.getvalue()


def _sixteen_bit_tiff() -> bytes:
    grey = np.asarray(picture(44).convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(grey), "TIFF")


def cases() -> list[Case]:
    jpeg = jpeg_bytes(40)
    return [
        Case("good.jpg", jpeg_bytes(45), None),
        Case("animated.gif", _animated_gif(), None),
        Case("sixteen-bit.tif", _sixteen_bit_tiff(), None),
        Case("cmyk.jpg", encode(picture(46).convert("CMYK"), "JPEG"), None),
        Case("ünïcødé 写真 🦄.png", encode(picture(47), "PNG"), None),
        Case("empty.jpg", b"", "empty"),
        Case("truncated.jpg", jpeg[: len(jpeg) // 3], "truncated|corrupt"),
        Case("page.jpg", b"<!DOCTYPE html><html><body>Not found</body></html>", "not an image"),
        Case("notes.png", "just some text\n".encode() * 20, "not an image"),
        Case("random.jpg", np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
             "not an image"),
        Case("bomb.png", encode(Image.new("1", (30000, 30000)), "PNG"), "megapixels|decompression"),
        Case("huge-file.jpg", None, "limit is"),
    ]


def build(folder: Path, oversize_bytes: int) -> dict[str, Case]:
    """Write the corpus into folder; the oversized file is sparse (costs no disk)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for case in cases():
        path = folder / case.name
        if case.data is None:
            with open(path, "wb") as handle:
                handle.write(jpeg_bytes(48))
                handle.truncate(oversize_bytes)
        else:
            path.write_bytes(case.data)
        written[str(path)] = case
    return written


HOSTILE_UPLOAD_NAMES = [
    "../../../etc/cron.d/evil.jpg",
    "..\\..\\Windows\\System32\\evil.jpg",
    "/absolute/path.png",
    "..",
    "con\x00trol\x07chars\n.jpg",
    "\u202etxt.jpg",  # right-to-left override
    "a" * 1000 + ".jpg",
    "",
]


def files_outside(root: Path, allowed: list[Path]) -> list[Path]:
    """Every file under root that is not inside one of the allowed folders."""
    allowed = [a.resolve() for a in allowed]
    found = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath, name).resolve()
            if not any(path == a or a in path.parents for a in allowed):
                found.append(path)
    return found

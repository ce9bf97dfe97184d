"""A labelled near-duplicate test set, generated on the fly (no binaries in git).

Every *shot* is an original picture plus the copies a real archive collects of it: crops that trim
5-15% of the frame, resizes to 50% and 25%, JPEG re-encodes at quality 95/70/40, a copy whose
pixels are stored rotated with an EXIF orientation tag that turns it back, a 16-bit-per-channel
PNG and a plain PNG. Beside them are *different pictures of one subject* that must not be grouped:
the same product in another colour, and the same product shot again (another backdrop, another
framing). Each sample carries the name of its shot (None for those): same shot = a true pair.

    python -m tests.near_duplicates DIR    # write the set as files, to look at or ingest
"""
from __future__ import annotations

import io
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.images_factory import picture

EXIF_ORIENTATION = 0x0112
ROTATE_90_CW_TO_VIEW = 6  # EXIF: "the 0th row is the visual right side": a viewer turns it 90° clockwise
CROPS = (0.05, 0.10, 0.15)
RESIZES = (0.5, 0.25)
REENCODES = (95, 70, 40)
ORIGINAL_QUALITY = 90


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes
    shot: str | None  # the original it copies; None for a different picture of a shared subject
    subject: str      # what it shows ("sneaker"): same subject, other shot = must not group
    variant: str      # "original", "crop5", "q40", "png16", ..., or "other-colour" / "reshot"


def jpeg(image: Image.Image, quality: int = ORIGINAL_QUALITY, **options) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality, **options)
    return buffer.getvalue()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def png16(image: Image.Image) -> bytes:
    """A 48-bit RGB PNG (16 bits per channel), written by hand: Pillow can read but not write one."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint16) * 257  # 0..255 -> 0..65535
    height, width, _ = pixels.shape
    scanlines = b"".join(b"\x00" + pixels[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # 16-bit, truecolour
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(scanlines, 6))
            + chunk(b"IEND", b""))


def exif_rotated_jpeg(image: Image.Image) -> bytes:
    """The pixels stored turned 90° anticlockwise, with the EXIF tag that makes a viewer turn them back."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATE_90_CW_TO_VIEW
    return jpeg(image.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes())


def crop(image: Image.Image, fraction: float) -> Image.Image:
    """Trim `fraction` of the width and of the height, unevenly, as a person re-framing would."""
    w, h = image.size
    box = (round(w * fraction * 0.6), round(h * fraction * 0.4),
           w - round(w * fraction * 0.4), h - round(h * fraction * 0.6))
    return image.crop(box)


def resize(image: Image.Image, factor: float) -> Image.Image:
    w, h = image.size
    return image.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.LANCZOS)


def copies(name: str, subject: str, original: Image.Image) -> list[Sample]:
    """The original (as a JPEG) and its eleven near-duplicates."""
    variants = [("original", ".jpg", jpeg(original))]
    variants += [(f"crop{round(f * 100)}", ".jpg", jpeg(crop(original, f))) for f in CROPS]
    variants += [(f"resize{round(f * 100)}", ".jpg", jpeg(resize(original, f))) for f in RESIZES]
    variants += [(f"q{q}", ".jpg", jpeg(original, q)) for q in REENCODES]
    variants += [("exif-rotated", ".jpg", exif_rotated_jpeg(original)), ("png16", ".png", png16(original)),
                 ("png", ".png", png(original))]
    return [Sample(f"{name}{'' if variant == 'original' else '-' + variant}{suffix}", data, name, subject, variant)
            for variant, suffix, data in variants]


# --- the pictures -----------------------------------------------------------------------------
PRODUCT_SHOTS = [("sneaker", "red", "blue"), ("watch", "black", "teal"), ("handbag", "green", "pink")]
PHOTO_SEEDS = (11, 12)


def product_shot(product: str, colour: str, seed: int = 0) -> Image.Image:
    from tests.e2e_support import product_picture
    return product_picture(product, colour, seed=seed)


def reshot(product: str, colour: str, seed: int) -> Image.Image:
    """The same product photographed again: from its other side, on another backdrop, framed tighter."""
    from tests.e2e_support import product_picture
    bigger = product_picture(product, colour, seed=seed + 1, size=(800, 600))
    return bigger.transpose(Image.Transpose.FLIP_LEFT_RIGHT).crop((40, 100, 680, 580))


def photo(seed: int) -> Image.Image:
    """A photo-like picture: colour fields, shapes and grain (bench/synth.py's generator when it is
    importable, else the tests' own smooth pictures)."""
    try:
        from bench.synth import textured_image
    except ImportError:  # pragma: no cover - the bench folder is part of the repository
        return picture(seed, (800, 600))
    return textured_image(800, 600, seed=seed)


def near_duplicate_set() -> list[Sample]:
    samples: list[Sample] = []
    for index, (product, colour, other_colour) in enumerate(PRODUCT_SHOTS):
        name = f"{colour}-{product}"
        samples += copies(name, product, product_shot(product, colour, seed=index))
        samples += [Sample(f"{other_colour}-{product}.jpg", jpeg(product_shot(product, other_colour, seed=index)),
                           None, product, "other-colour"),
                    Sample(f"{name}-reshot.jpg", jpeg(reshot(product, colour, seed=index)), None, product, "reshot")]
    for seed in PHOTO_SEEDS:
        samples += copies(f"photo{seed}", f"photo{seed}", photo(seed))
    return samples


def true_pairs(samples: list[Sample]) -> set[frozenset[str]]:
    """Every pair of names that copy one shot."""
    return {frozenset((a.name, b.name)) for i, a in enumerate(samples) for b in samples[i + 1:]
            if a.shot is not None and a.shot == b.shot}


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "near-duplicates")
    target.mkdir(parents=True, exist_ok=True)
    for sample in near_duplicate_set():
        (target / sample.name).write_bytes(sample.data)
    print(f"wrote {len(near_duplicate_set())} files to {target}")

"""Decoding images the way real archives hold them, into plain 8-bit RGB.

Handles EXIF orientation, CMYK, palette and 1-bit images, transparency (composited on
white, the way a person sees a product cut-out), 16-bit images (scaled, not clipped),
animated GIF/WebP (first frame) and huge photos (JPEGs are decoded at a reduced size
with Pillow's draft mode, so a 24-megapixel photo costs a fraction of a full decode).
Sizes that would cost memory out of proportion to the file (too many pixels, or a shape
beyond 100:1) are refused from the header, before decoding: see check_dimensions.

Two ways in, one guard (_open_checked inside _pillow_failures): decode_image, for thumbnails
and the CLIP model; fit_for_model, which makes an image fit to send to the image model
(upright, long side within a limit, PNG/JPEG/WebP).
"""
from __future__ import annotations

import io
import math
import struct
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ragkit.errors import InvalidImageError

# Pillow refuses truncated files by default; keep it that way (a half-written JPEG
# must be rejected with a reason, not silently stored with a grey bottom half).
ImageFile.LOAD_TRUNCATED_IMAGES = False

SENDABLE_MIME_BY_FORMAT = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}  # as they are
MIME_BY_FORMAT = {
    "JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp",
    "BMP": "image/bmp", "TIFF": "image/tiff", "MPO": "image/jpeg", "ICO": "image/x-icon",
    "AVIF": "image/avif", "HEIF": "image/heif", "PPM": "image/x-portable-pixmap",
}
EXTENSION_BY_MIME = {
    "image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp",
    "image/bmp": ".bmp", "image/tiff": ".tif", "image/x-icon": ".ico", "image/avif": ".avif",
    "image/heif": ".heic", "image/x-portable-pixmap": ".ppm",
}
THUMBNAIL_SIDE = 384
# Long side : short side. The model's preprocessing scales the *short* side up to its input
# size (224 px for ViT-B-32), so the long side grows with the ratio: a 474-byte 1x100000 PNG
# became 224 x 22.4 million pixels (15 GB). At 100:1 that resize costs at most 15 MB (60 MB
# for a 448 px model), while web banners (1920x60 is 32:1), sprite strips and phone panoramas
# (often 4:1 to 12:1) all fit; only slivers such as 1-px rules and dividers are refused.
MAX_ASPECT_RATIO = 100


@dataclass(frozen=True)
class EncodedImage:
    """Image bytes and their MIME type, e.g. ready to send to a model."""
    data: bytes
    mime: str

    def __repr__(self) -> str:  # never dump megabytes of bytes into a log
        return f"EncodedImage(mime={self.mime!r}, bytes={len(self.data)})"


@dataclass(frozen=True)
class DecodedImage:
    """An image ready for thumbnails and the model, plus facts about the original."""
    image: Image.Image  # 8-bit RGB, upright, possibly reduced in size
    width: int          # of the original, after EXIF rotation
    height: int
    mime: str


def _scale_high_bit_depth(img: Image.Image) -> Image.Image:
    """Map 16-bit / 32-bit grey images to 8 bits by scaling the full range, never clipping."""
    arr = np.asarray(img)
    if img.mode == "F":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scaled = (arr - lo) / (hi - lo or 1.0) * 255.0
    else:
        # 16-bit data is stored as I;16 or as I (32-bit int); both use the 0..65535 range.
        peak = 65535.0 if arr.max(initial=0) <= 65535 else float(arr.max())
        scaled = arr.astype(np.float32) * (255.0 / peak)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB, compositing transparency on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = _scale_high_bit_depth(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode == "RGB":
        return img
    # CMYK (Pillow inverts Adobe CMYK JPEGs itself), YCbCr, LAB, L, 1 ...
    return img.convert("RGB")


def _ratio_text(long: int, short: int) -> str:
    return f"{long / short:.1f}".removesuffix(".0")


def check_dimensions(width: int, height: int, *, max_pixels: int | None) -> None:
    """Refuse an image whose size would make decoding or resizing cost far more than its file.

    The one guard every path that decodes or resizes a user's image goes through (ingest,
    search by image, thumbnails, doctor, Studio references), called on the size the file
    declares, before any pixel is decoded. Raises InvalidImageError with the reason.
    """
    if width < 1 or height < 1:
        raise InvalidImageError(f"image is {width}x{height} px: it has no pixels")
    if max_pixels is not None and width * height > max_pixels:
        raise InvalidImageError(
            f"image is {width}x{height} ({width * height / 1e6:.0f} megapixels), over the "
            f"{max_pixels / 1e6:.0f} MP limit (possible decompression bomb); "
            "raise RAGKIT_MAX_IMAGE_PIXELS if it is genuine")
    short, long = sorted((width, height))
    if long > MAX_ASPECT_RATIO * short:
        raise InvalidImageError(
            f"image is {width}x{height} px: aspect ratio {_ratio_text(long, short)}:1 is beyond the "
            f"{MAX_ASPECT_RATIO}:1 limit (resizing so thin a strip for the model costs memory out of all "
            "proportion to the file); crop it to a less extreme shape")


def _draft_size(width: int, height: int, min_short: int, min_long: int) -> tuple[int, int]:
    """Smallest size that still has short side >= min_short and long side >= min_long."""
    short, long = min(width, height), max(width, height)
    scale = min(1.0, max(min_short / max(short, 1), min_long / max(long, 1)))
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


@contextmanager
def _pillow_failures() -> Iterator[None]:
    """Pillow failing on a user's bytes becomes InvalidImageError with the reason; Pillow's
    decompression-bomb warning counts as a failure."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImageError("image dimensions are too large (possible decompression bomb)") from None
    except UnidentifiedImageError:
        raise InvalidImageError("not an image file Pillow can read (unknown or corrupt format)") from None
    except OSError as exc:
        # Truncated or otherwise corrupt image data.
        raise InvalidImageError(f"corrupt or truncated image data ({exc})") from None
    except (ValueError, SyntaxError, struct.error, EOFError, MemoryError) as exc:
        raise InvalidImageError(f"corrupt image data ({type(exc).__name__}: {exc})") from None


def _open_checked(data: bytes, max_pixels: int | None) -> Image.Image:
    """Open the image (its header only) and refuse it if its declared size fails check_dimensions.

    Call inside _pillow_failures, so that Pillow's own refusals come out as InvalidImageError too.
    """
    if not data:
        raise InvalidImageError("empty file")
    img = Image.open(io.BytesIO(data))
    check_dimensions(*img.size, max_pixels=max_pixels)
    return img


def decode_image(data: bytes, *, max_pixels: int, min_short: int = 224,
                 min_long: int = THUMBNAIL_SIDE) -> DecodedImage:
    """Decode bytes into an upright RGB image at least big enough for the model and thumbnail.

    Raises InvalidImageError with a reason a person understands.
    """
    with _pillow_failures():
        img = _open_checked(data, max_pixels)
        fmt = img.format or ""
        width, height = img.size
        if getattr(img, "is_animated", False):
            img.seek(0)  # first frame of GIF / WebP / APNG
        orientation = img.getexif().get(0x0112, 1)
        upright_w, upright_h = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
        if fmt in ("JPEG", "MPO"):
            draft_w, draft_h = _draft_size(width, height, min_short, min_long)
            img.draft("RGB" if img.mode != "CMYK" else "CMYK", (draft_w, draft_h))
        img.load()
        img = ImageOps.exif_transpose(img) or img
        if max(img.size) > 4 * min_long:
            # Non-JPEG huge images: shrink once with a fast box filter before anything else.
            target = _draft_size(*img.size, min_short, min_long)
            factor = max(1, min(img.size[0] // target[0], img.size[1] // target[1]))
            if factor > 1:
                img = img.reduce(factor) if img.mode not in ("P", "1") else img.convert("RGBA").reduce(factor)
        rgb = to_rgb(img)
    mime = MIME_BY_FORMAT.get(fmt, f"image/{fmt.lower()}" if fmt else "application/octet-stream")
    return DecodedImage(image=rgb, width=upright_w, height=upright_h, mime=mime)


def fit_for_model(data: bytes, max_side: int) -> EncodedImage:
    """Make an image fit to send to an image model: upright, long side <= max_side, PNG/JPEG/WebP.

    Small, upright PNG/JPEG/WebP files pass through byte for byte. Everything else is
    re-encoded: PNG when it has real transparency, else JPEG quality 90. The bytes decide the
    format. Raises InvalidImageError with the reason for data that isn't a usable image.
    """
    with _pillow_failures():
        # No pixel limit of ours: Pillow's bomb check (an error in _pillow_failures) bounds the pixels.
        img = _open_checked(data, max_pixels=None)
        fmt = img.format or ""
        orientation = img.getexif().get(0x0112, 1)
        too_big = max(img.size) > max_side
        if too_big and fmt == "JPEG":
            # Decode big JPEGs at a reduced scale: a 24 MP photo costs a fraction of a full decode.
            img.draft("CMYK" if img.mode == "CMYK" else "RGB", _fit_within(img.size, max_side))
        img.load()  # a full decode also rejects truncated files before they are sent
        sendable_mime = SENDABLE_MIME_BY_FORMAT.get(fmt)
        if sendable_mime and not too_big and orientation == 1 and not getattr(img, "is_animated", False):
            return EncodedImage(data, sendable_mime)
        img = ImageOps.exif_transpose(img) or img
        if max(img.size) > max_side:
            img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return _encode_for_model(img)


def _fit_within(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    scale = max_side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _has_alpha(img: Image.Image) -> bool:
    """True only when some pixel is actually see-through (an opaque RGBA gets JPEG)."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode not in ("RGBA", "LA", "PA", "RGBa", "La"):
        return False
    return img.getchannel("A").getextrema()[0] < 255


def _encode_for_model(img: Image.Image) -> EncodedImage:
    buffer = io.BytesIO()
    if _has_alpha(img):
        img.convert("RGBA").save(buffer, format="PNG", optimize=True)
        return EncodedImage(buffer.getvalue(), "image/png")
    to_rgb(img).save(buffer, format="JPEG", quality=90, optimize=True)  # CMYK, 16-bit, palette ...
    return EncodedImage(buffer.getvalue(), "image/jpeg")


def make_thumbnail(image: Image.Image, side: int = THUMBNAIL_SIDE, quality: int = 82) -> bytes:
    """A JPEG no larger than side x side, for grids (never full-size originals in the UI)."""
    thumb = image.copy()
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()

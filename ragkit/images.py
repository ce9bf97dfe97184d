"""Decoding images the way real archives hold them, into plain 8-bit RGB.

Handles EXIF orientation, CMYK, palette and 1-bit images, transparency (composited on
white, the way a person sees a product cut-out), 16-bit images (scaled, not clipped),
animated GIF/WebP (first frame) and huge photos (JPEGs are decoded at a reduced size
with Pillow's draft mode, so a 24-megapixel photo costs a fraction of a full decode).
Sizes that would cost memory out of proportion to the file (too many pixels, or a shape
beyond 100:1) are refused from the header, before decoding: see check_dimensions.
"""
from __future__ import annotations

import io
import math
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import InvalidImageError

# Pillow refuses truncated files by default; keep it that way (a half-written JPEG
# must be rejected with a reason, not silently stored with a grey bottom half).
ImageFile.LOAD_TRUNCATED_IMAGES = False

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


def decode_image(data: bytes, *, max_pixels: int, min_short: int = 224,
                 min_long: int = THUMBNAIL_SIDE) -> DecodedImage:
    """Decode bytes into an upright RGB image at least big enough for the model and thumbnail.

    Raises InvalidImageError with a reason a person understands.
    """
    if not data:
        raise InvalidImageError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or ""
            width, height = img.size
            check_dimensions(width, height, max_pixels=max_pixels)
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
    except InvalidImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImageError("image dimensions are too large (possible decompression bomb)") from None
    except UnidentifiedImageError:
        raise InvalidImageError("not an image file Pillow can read (unknown or corrupt format)") from None
    except OSError as exc:
        # Truncated or otherwise corrupt image data.
        raise InvalidImageError(f"corrupt or truncated image data ({exc})") from None
    except (ValueError, SyntaxError, struct.error, EOFError, MemoryError) as exc:
        raise InvalidImageError(f"corrupt image data ({type(exc).__name__}: {exc})") from None
    mime = MIME_BY_FORMAT.get(fmt, f"image/{fmt.lower()}" if fmt else "application/octet-stream")
    return DecodedImage(image=rgb, width=upright_w, height=upright_h, mime=mime)


def make_thumbnail(image: Image.Image, side: int = THUMBNAIL_SIDE, quality: int = 82) -> bytes:
    """A JPEG no larger than side x side, for grids (never full-size originals in the UI)."""
    thumb = image.copy()
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def open_rgb(data: bytes, max_pixels: int = 150_000_000) -> Image.Image:
    """Convenience: decode bytes to an upright RGB image (used for query images)."""
    return decode_image(data, max_pixels=max_pixels).image

"""References: library assets made ready to send with a brief, and the ones to suggest for it."""
from __future__ import annotations

import io
import warnings
from typing import Iterable, Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import AssetNotFoundError, InvalidImageError
from ..images import check_dimensions, to_rgb
from ..records import SearchHit
from .generation import ReferenceImage

REFERENCE_MAX_SIDE = 1536


def load_references(library, sha256s: Sequence[str]) -> list[ReferenceImage]:
    """Library assets -> downscaled reference images, in the order picked."""
    references = []
    for sha in sha256s:
        asset = library.get(sha)
        try:
            data = library.original_bytes(sha)
        except AssetNotFoundError:
            raise AssetNotFoundError(f"Reference {asset.filename} ({sha[:12]}…) has no original file any more; "
                                     "remove it from the tray.") from None
        references.append(prepare_reference(data, asset.mime, sha256=sha))
    return references


def suggest_references(library, brief: str, k: int = 8, exclude: Iterable[str] = ()) -> list[SearchHit]:
    """The retrieval half of the loop: library images that match the brief itself."""
    skip = set(exclude)
    hits = library.search_text(brief, k + len(skip))
    return [h for h in hits if h.asset.sha256 not in skip][:k]


def prepare_reference(data: bytes, mime: str | None = None, sha256: str | None = None,
                      max_side: int = REFERENCE_MAX_SIDE) -> ReferenceImage:
    """Make an image fit to send: upright, long side <= max_side, in a format Gemini accepts.

    Small, upright PNG/JPEG/WebP files pass through byte for byte. Everything else is
    re-encoded: PNG when it has real transparency, else JPEG quality 90. `mime` is only
    a fallback; the bytes decide. Raises InvalidImageError for data that isn't an image.
    """
    if not data:
        raise InvalidImageError("the reference image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or ""
            check_dimensions(*img.size, max_pixels=None)  # Pillow's own bomb check (above) bounds the pixels
            orientation = img.getexif().get(0x0112, 1)
            too_big = max(img.size) > max_side
            passthrough_mime = _PASSTHROUGH.get(fmt)
            if too_big and fmt == "JPEG":
                # Decode big JPEGs at a reduced scale: a 24 MP photo costs a fraction of a full decode.
                img.draft("CMYK" if img.mode == "CMYK" else "RGB", _fit(img.size, max_side))
            img.load()  # a full decode also rejects truncated files before we send them
            if passthrough_mime and not too_big and orientation == 1 and not getattr(img, "is_animated", False):
                return ReferenceImage(data=data, mime=passthrough_mime, sha256=sha256)
            img = ImageOps.exif_transpose(img) or img
            if max(img.size) > max_side:
                img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            encoded, out_mime = _encode(img)
    except InvalidImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImageError("the reference image is too large to decode safely (possible decompression "
                                "bomb)") from None
    except UnidentifiedImageError:
        raise InvalidImageError(f"the reference is not an image Pillow can read"
                                f"{f' (declared {mime})' if mime else ''}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidImageError(f"the reference image is corrupt or truncated ({exc})") from None
    return ReferenceImage(data=encoded, mime=out_mime, sha256=sha256)


_PASSTHROUGH = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    scale = max_side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _has_alpha(img: Image.Image) -> bool:
    """True only when some pixel is actually see-through (an opaque RGBA gets JPEG)."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode not in ("RGBA", "LA", "PA", "RGBa", "La"):
        return False
    return img.getchannel("A").getextrema()[0] < 255


def _encode(img: Image.Image) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    if _has_alpha(img):
        img.convert("RGBA").save(buffer, format="PNG", optimize=True)
        return buffer.getvalue(), "image/png"
    to_rgb(img).save(buffer, format="JPEG", quality=90, optimize=True)  # CMYK, 16-bit, palette ...
    return buffer.getvalue(), "image/jpeg"

"""Decoding what real archives hold, and embedding copies like their originals."""
import io

import numpy as np
import pytest
from PIL import Image

from ragkit.errors import InvalidImageError
from ragkit.ingest.images import decode_image, make_thumbnail
from tests.images_factory import encode, jpeg_bytes, picture

MAX = 150_000_000


def _decode(data: bytes, **kw):
    return decode_image(data, max_pixels=kw.pop("max_pixels", MAX), **kw)


def _exif_rotated_copy(image: Image.Image) -> bytes:
    """Pixels stored rotated, with EXIF orientation 6 telling viewers to rotate them back."""
    stored = image.transpose(Image.Transpose.ROTATE_90)  # 90° counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    return encode(stored, "JPEG", quality=95, exif=exif)


def _sixteen_bit_grey(image: Image.Image) -> bytes:
    grey16 = (np.asarray(image.convert("L"), dtype=np.uint16) * 257)
    return encode(Image.fromarray(grey16), "PNG")


def _cmyk_copy(image: Image.Image) -> bytes:
    return encode(image.convert("CMYK"), "JPEG", quality=95)


def test_exif_orientation_is_applied():
    original = picture(1, (320, 200))
    decoded = _decode(_exif_rotated_copy(original))
    assert (decoded.width, decoded.height) == (320, 200)
    diff = np.abs(np.asarray(decoded.image.resize((320, 200)), float) - np.asarray(original, float)).mean()
    assert diff < 12


def test_sixteen_bit_is_scaled_not_clipped():
    original = picture(2)
    decoded = _decode(_sixteen_bit_grey(original))
    expected = np.asarray(original.convert("L"), float)
    got = np.asarray(decoded.image.convert("L").resize(original.size), float)
    assert got.max() > 200, "16-bit data was clipped or darkened"
    assert np.abs(got - expected).mean() < 4


@pytest.mark.parametrize("mode", ["CMYK", "P", "1", "L", "LA"])
def test_modes_become_rgb(mode):
    image = picture(3).convert(mode)
    fmt = "JPEG" if mode in ("CMYK", "L") else "PNG"
    decoded = _decode(encode(image, fmt))
    assert decoded.image.mode == "RGB"


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (300, 300), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (100, 100, 200, 200))
    decoded = _decode(encode(rgba, "PNG")).image
    assert decoded.getpixel((10, 10)) == (255, 255, 255)
    assert decoded.getpixel((150, 150)) == (0, 0, 255)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (300, 300), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    decoded = _decode(buffer.getvalue())
    r, g, b = decoded.image.getpixel((150, 150))
    assert r > 200 and g < 50 and b < 50
    assert decoded.mime == "image/gif"


@pytest.mark.slow
def test_huge_jpeg_is_decoded_at_reduced_size():
    big = picture(4, (6000, 4000))  # 24 megapixels
    decoded = _decode(encode(big, "JPEG", quality=80))
    assert (decoded.width, decoded.height) == (6000, 4000)
    assert max(decoded.image.size) < 1600, "draft mode should decode a fraction of the pixels"
    assert min(decoded.image.size) >= 224


def test_decompression_bomb_is_rejected():
    bomb = encode(Image.new("1", (20000, 20000)), "PNG")  # 400 MP, a few kB on disk
    assert len(bomb) < 100_000
    with pytest.raises(InvalidImageError, match="megapixels|decompression"):
        _decode(bomb)


@pytest.mark.parametrize("data,reason", [
    (b"", "empty"),
    (b"<html><body>not an image</body></html>", "not an image"),
    (bytes(range(256)) * 40, "not an image"),
    (jpeg_bytes(5)[:1500], "truncated|corrupt"),
])
def test_bad_files_are_rejected_with_reasons(data, reason):
    with pytest.raises(InvalidImageError, match=reason):
        _decode(data)


def test_thumbnail_is_small_jpeg():
    thumb = make_thumbnail(picture(6, (2000, 1000)))
    image = Image.open(io.BytesIO(thumb))
    assert image.format == "JPEG" and max(image.size) == 384


def _cos(a, b):
    return float(np.dot(a, b))


def test_copies_embed_like_the_original(tiny_embedder):
    """An EXIF-rotated, a 16-bit and a CMYK copy must land next to their original."""
    original = picture(7)
    other = picture(8)
    base = tiny_embedder.embed_images([_decode(encode(original, "PNG")).image])[0]
    grey_base = tiny_embedder.embed_images([_decode(encode(original.convert("L"), "PNG")).image])[0]
    unrelated = tiny_embedder.embed_images([_decode(encode(other, "PNG")).image])[0]
    copies = {
        "exif": (_exif_rotated_copy(original), base),
        "cmyk": (_cmyk_copy(original), base),
        "16-bit": (_sixteen_bit_grey(original), grey_base),
    }
    for name, (data, reference) in copies.items():
        vector = tiny_embedder.embed_images([_decode(data).image])[0]
        assert _cos(vector, reference) > 0.99, name
        assert _cos(vector, reference) > _cos(vector, unrelated), name

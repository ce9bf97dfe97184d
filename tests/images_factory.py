"""Pictures the tests make: textured, distinct per seed, in any format a test needs."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


def picture(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A distinct RGB picture: smooth colour fields plus shapes, different for every seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.5, 6, 2).tolist() + [rng.uniform(0, 6.28)]
        channels.append(127.5 + 127.5 * np.sin(2 * np.pi * (fx * x / w + fy * y / h) + phase))
    arr = np.stack(channels, axis=-1)
    for _ in range(4):  # a few solid rectangles so pictures differ in structure too
        x0, y0 = rng.integers(0, w - w // 4), rng.integers(0, h - h // 4)
        arr[y0:y0 + h // 4, x0:x0 + w // 4] = rng.integers(0, 255, 3)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg_bytes(seed: int, size: tuple[int, int] = (320, 240), quality: int = 90) -> bytes:
    return encode(picture(seed, size), "JPEG", quality=quality)


def png_bytes(seed: int, size: tuple[int, int] = (320, 240)) -> bytes:
    return encode(picture(seed, size), "PNG")

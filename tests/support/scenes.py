"""A camera's view as JPEGs: a still scene with sensor noise, and the same scene with an object moving across.

What a real sensor sends for a still scene is never twice the same: every frame has fresh noise and
its own JPEG artefacts, which motion detection must ignore. The object is a dark square that moves
a few percent of the width per frame.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def _scene(size: tuple[int, int]) -> Image.Image:
    width, height = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    rnd = random.Random(3)
    for _ in range(25):  # furniture: edges and texture, where JPEG artefacts show
        x, y = rnd.randrange(width), rnd.randrange(height)
        w, h = rnd.randrange(10, width // 4), rnd.randrange(10, height // 4)
        draw.rectangle((x, y, x + w, y + h), fill=tuple(rnd.randrange(256) for _ in range(3)))
    return image.filter(ImageFilter.GaussianBlur(1))


def _encode(image: Image.Image, rng: np.random.Generator, noise: float, quality: int) -> bytes:
    pixels = np.asarray(image, dtype=np.float32)
    noisy = np.clip(pixels + rng.normal(0, noise, pixels.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(noisy).save(out, "JPEG", quality=quality)
    return out.getvalue()


def still(count: int = 20, size: tuple[int, int] = (640, 480), noise: float = 6.0, quality: int = 60,
          seed: int = 1) -> list[bytes]:
    """``count`` frames of the same scene, each with its own sensor noise."""
    rng = np.random.default_rng(seed)
    scene = _scene(size)
    return [_encode(scene, rng, noise, quality) for _ in range(count)]


def moving(count: int = 20, size: tuple[int, int] = (640, 480), noise: float = 6.0, quality: int = 60,
           object_pct: float = 3.0, seed: int = 2) -> list[bytes]:
    """The scene with a dark square of ``object_pct`` percent of the picture crossing it."""
    rng = np.random.default_rng(seed)
    scene = _scene(size)
    width, height = size
    side = int((width * height * object_pct / 100) ** 0.5)
    frames = []
    for i in range(count):
        x = int((width - side) * i / max(1, count - 1))
        image = scene.copy()
        ImageDraw.Draw(image).rectangle((x, height // 3, x + side, height // 3 + side), fill=(20, 20, 30))
        frames.append(_encode(image, rng, noise, quality))
    return frames

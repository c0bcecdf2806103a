"""Controlled degradations for checking that the quality score moves the right way.

Each takes and returns a PIL RGB image; parameters are fixed and documented so figures are
reproducible: Gaussian blur (radius 3), Gaussian noise (sigma 25, seeded), JPEG quality 10,
down-scaling to 1/4 of each side, over-exposure (x1.8 + 60, clipped).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def blur(im: Image.Image) -> Image.Image:
    return im.filter(ImageFilter.GaussianBlur(3))


def noise(im: Image.Image, sigma: float = 25.0, seed: int = 0) -> Image.Image:
    a = np.asarray(im, dtype=np.float32)
    a = a + np.random.default_rng(seed).normal(0, sigma, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def jpeg(im: Image.Image, quality: int = 10) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def downscale(im: Image.Image, factor: int = 4) -> Image.Image:
    w, h = im.size
    return im.resize((max(1, w // factor), max(1, h // factor)), Image.BICUBIC)


def overexpose(im: Image.Image) -> Image.Image:
    a = np.asarray(im, dtype=np.float32) * 1.8 + 60
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


DEGRADATIONS = {
    "blur": blur,
    "noise": noise,
    "jpeg_q10": jpeg,
    "downscale_x4": downscale,
    "overexpose": overexpose,
}

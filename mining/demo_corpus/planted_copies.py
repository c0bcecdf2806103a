"""Planted near-duplicates, low-quality copies and broken records, from an original view."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

NEAR_DUPLICATE = ("reencode", "resize", "crop", "flip", "colorshift", "same_url")
LOW_QUALITY = ("blur", "noise", "tiny", "overexposed")
BROKEN = ("truncated", "zero_bytes", "empty_caption", "non_utf8_caption")


def encode(img: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    """Deterministic encoding (no EXIF, no timestamps)."""
    buf = io.BytesIO()
    if fmt == "PNG":
        img.save(buf, format="PNG", optimize=False, compress_level=6)
    else:
        img.save(buf, format="JPEG", quality=int(quality), optimize=False, subsampling=2)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def _arr_to_img(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def degrade(original: bytes, kind: str, r: np.random.Generator) -> bytes:
    """Encoded bytes of a near-duplicate or low-quality copy of the ``original`` bytes."""
    if kind == "same_url":
        return original
    img = decode(original)
    w, h = img.size
    q = int(r.integers(85, 96))
    if kind == "reencode":
        return encode(img, quality=int(r.integers(55, 76)))
    if kind == "resize":
        f = float(r.choice([r.uniform(0.5, 0.8), r.uniform(1.2, 1.5)]))
        return encode(img.resize((max(16, round(w * f)), max(16, round(h * f))), Image.LANCZOS), quality=q)
    if kind == "crop":
        fx, fy = r.uniform(0.02, 0.05, 2), r.uniform(0.02, 0.05, 2)
        box = (int(w * fx[0]), int(h * fy[0]), w - int(w * fx[1]), h - int(h * fy[1]))
        return encode(img.crop(box), quality=q)
    if kind == "flip":
        return encode(img.transpose(Image.FLIP_LEFT_RIGHT), quality=q)
    if kind == "colorshift":
        gain = r.uniform(0.9, 1.1, 3).astype(np.float32)
        return encode(_arr_to_img(np.asarray(img, np.float32) * gain + r.uniform(-8, 8)), quality=q)
    if kind == "blur":
        return encode(img.filter(ImageFilter.GaussianBlur(float(r.uniform(3.0, 5.0)))), quality=q)
    if kind == "noise":
        noise = r.normal(0, float(r.uniform(30, 45)), (h, w, 3)).astype(np.float32)
        return encode(_arr_to_img(np.asarray(img, np.float32) + noise), quality=q)
    if kind == "tiny":
        s = 48 / max(w, h)
        return encode(img.resize((max(8, round(w * s)), max(8, round(h * s))), Image.BILINEAR), quality=q)
    if kind == "overexposed":
        return encode(_arr_to_img(np.asarray(img, np.float32) * r.uniform(2.0, 2.6) + 60), quality=q)
    raise ValueError(f"unknown degradation {kind!r}")


def truncate(data: bytes, r: np.random.Generator) -> bytes:
    """The first 35-65% of the bytes: the header parses, the pixels do not."""
    return data[: int(len(data) * r.uniform(0.35, 0.65))]


def non_utf8(caption: str) -> bytes:
    """The caption plus a cp1252-encoded suffix: bytes that are not valid UTF-8."""
    raw = (caption + " \u2013 tr\u00e8s joli \u00a9").encode("cp1252")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    raise AssertionError("caption unexpectedly valid UTF-8")  # pragma: no cover

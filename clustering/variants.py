"""Near-duplicate variants of real images, for scoring deduplication on real data.

``make_variant(data, kind, rng)``: re-encode (JPEG quality 55-80), resize (0.5-0.8x), crop
(keep 85-92% of each side), horizontal flip, small colour shift (per-channel gain 0.92-1.08
and offset +-8). ``build_corpus`` writes originals + variants as a CSV (``path``, ``caption``,
``url``) and a truth CSV (``key``, ``group``, ``role``, ``duplicate_of_key``) whose keys match
the table reader's (``url_key(url)``).
"""

from __future__ import annotations

import csv
import io
import os
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from core.contracts import url_key

KINDS = ("reencode", "resize", "crop", "flip", "colorshift")


def _jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def make_variant(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    im = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    w, h = im.size
    if kind == "reencode":
        return _jpeg(im, int(rng.integers(55, 81)))
    if kind == "resize":
        s = float(rng.uniform(0.5, 0.8))
        return _jpeg(im.resize((max(8, round(w * s)), max(8, round(h * s))), Image.Resampling.BICUBIC))
    if kind == "crop":
        fw, fh = rng.uniform(0.85, 0.92, size=2)
        cw, ch = round(w * fw), round(h * fh)
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return _jpeg(im.crop((x0, y0, x0 + cw, y0 + ch)))
    if kind == "flip":
        return _jpeg(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    if kind == "colorshift":
        a = np.asarray(im, dtype=np.float32) * rng.uniform(0.92, 1.08, size=3) + rng.uniform(-8, 8, size=3)
        return _jpeg(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)))
    raise ValueError(kind)


def build_corpus(items: list[tuple[str, str]], out_dir: str, fraction: float = 0.3, seed: int = 0,
                 group_of: dict[str, str] | None = None) -> dict[str, Any]:
    """Originals (``(image path, caption)``) plus variants of a ``fraction`` of them, in ``out_dir``."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(out_dir, "variants"), exist_ok=True)
    pairs, truth = [], []
    for i, (path, caption) in enumerate(items):
        url = os.path.abspath(path)
        key = url_key(url)
        pairs.append({"path": url, "caption": caption, "url": url})
        truth.append(
            {"key": key, "group": (group_of or {}).get(path, ""), "role": "original", "duplicate_of_key": ""}
        )
        if rng.random() >= fraction:
            continue
        kind = KINDS[i % len(KINDS)]
        with open(path, "rb") as fh:
            data = make_variant(fh.read(), kind, rng)
        vpath = os.path.abspath(os.path.join(out_dir, "variants", f"{i:05d}_{kind}.jpg"))
        with open(vpath, "wb") as fh:
            fh.write(data)
        pairs.append({"path": vpath, "caption": caption, "url": vpath})
        truth.append(
            {
                "key": url_key(vpath),
                "group": (group_of or {}).get(path, ""),
                "role": "near_duplicate",
                "duplicate_of_key": key,
                "degradation": kind,
            }
        )
    for name, rows in (("pairs.csv", pairs), ("truth.csv", truth)):
        with open(os.path.join(out_dir, name), "w", newline="", encoding="utf-8") as fh:
            fields = sorted({k for r in rows for k in r})
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
    return {"pairs": os.path.join(out_dir, "pairs.csv"), "truth": os.path.join(out_dir, "truth.csv"),
            "originals": len(items), "variants": len(pairs) - len(items)}

"""Technical quality measures, each mapped to [0, 1] (1 = good), and their combination.

Measured on the luminance of the image resized so its short side is ``ANALYSIS_SIDE`` (so a
down-scaled copy looks soft, as it would when displayed at the same size):

| measure | raw | mapping |
|---|---|---|
| resolution | decoded megapixels | 1 at >= 0.25 Mpx, falling in log2 |
| sharpness | variance of the Laplacian | ``v / (v + 150)`` |
| exposure | mean luminance, clipped fractions (<= 3, >= 252) | 1 - mean's distance from mid-grey - clipping |
| contrast | luminance standard deviation | ``s / (s + 0.08)`` |
| noise | sigma of the finest diagonal Haar band (median absolute deviation / 0.6745) | ``exp(-sigma / 4)`` |
| blockiness | gradient at 8-px block borders over gradient elsewhere | ``exp(-3 (ratio - 1))`` |
| aspect | long / short side | 1 up to 2, then 2 / aspect |

``technical`` is their weighted geometric mean.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

ANALYSIS_SIDE = 384
WEIGHTS = {"resolution": 1.0, "sharpness": 1.5, "exposure": 1.0, "contrast": 0.5, "noise": 1.0,
           "blockiness": 1.0, "aspect": 0.5}
NAMES = tuple(WEIGHTS)


def analysis_luma(rgb: np.ndarray) -> np.ndarray:
    """float32 luminance in [0, 255], short side resized to ANALYSIS_SIDE (area down, cubic up)."""
    h, w = rgb.shape[:2]
    s = ANALYSIS_SIDE / min(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    small = cv2.resize(rgb, (nw, nh), interpolation=interp)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)


def raw_measures(rgb: np.ndarray) -> dict[str, float]:
    """Raw values of every measure for an RGB uint8 array (H, W, 3)."""
    h, w = rgb.shape[:2]
    y = analysis_luma(rgb)
    lap = cv2.Laplacian(y, cv2.CV_32F, ksize=3)
    yn = y / 255.0
    # finest diagonal Haar detail: noise sigma (Donoho's MAD estimator)
    hh = (y[0:-1:2, 0:-1:2] - y[1::2, 0:-1:2] - y[0:-1:2, 1::2] + y[1::2, 1::2]) / 2.0
    sigma = float(np.median(np.abs(hh)) / 0.6745)
    # blockiness on the decoded (not resized) grid, where JPEG blocks live
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    dx = np.abs(np.diff(g, axis=1)).mean(0)
    dy = np.abs(np.diff(g, axis=0)).mean(1)
    ratios = []
    for d in (dx, dy):
        if d.size >= 32:
            border = d[7::8].mean()
            inner = np.delete(d, np.s_[7::8]).mean()
            ratios.append((border + 1e-3) / (inner + 1e-3))
    return {
        "megapixels": w * h / 1e6,
        "laplacian_var": float(lap.var()),
        "mean_luma": float(yn.mean()),
        "clip_high": float((y >= 252).mean()),
        "clip_low": float((y <= 3).mean()),
        "luma_std": float(yn.std()),
        "noise_sigma": sigma,
        "block_ratio": float(max(ratios) if ratios else 1.0),
        "aspect": max(w, h) / max(1, min(w, h)),
    }


def map_measures(raw: dict[str, float]) -> dict[str, float]:
    """Raw values to scores in [0, 1] (see the module table)."""
    v = raw["laplacian_var"]
    exposure = 1.0 - 1.2 * abs(raw["mean_luma"] - 0.5) - 1.5 * raw["clip_high"] - 0.8 * raw["clip_low"]
    return {
        "resolution": float(np.clip(1.0 + math.log2(max(raw["megapixels"], 1e-6) / 0.25) / 4.0, 0.0, 1.0)),
        "sharpness": v / (v + 150.0),
        "exposure": float(np.clip(exposure, 0.0, 1.0)),
        "contrast": raw["luma_std"] / (raw["luma_std"] + 0.08),
        "noise": math.exp(-raw["noise_sigma"] / 4.0),
        "blockiness": float(np.clip(math.exp(-3.0 * (raw["block_ratio"] - 1.0)), 0.0, 1.0)),
        "aspect": 1.0 if raw["aspect"] <= 2 else 2.0 / raw["aspect"],
    }


def combine(scores: dict[str, float]) -> float:
    """Weighted geometric mean of the mapped scores (floor 0.01 so one zero does not erase the rest)."""
    tot = sum(WEIGHTS.values())
    return float(math.exp(sum(w * math.log(max(scores[k], 0.01)) for k, w in WEIGHTS.items()) / tot))


def technical(rgb: np.ndarray) -> tuple[float, dict[str, float]]:
    """(technical score in [0, 1], per-measure scores) for an RGB uint8 array."""
    scores = map_measures(raw_measures(rgb))
    return combine(scores), scores

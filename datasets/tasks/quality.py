"""Pluggable quality scorers for generated targets (styled generation, style transfer).

``default_scorer()`` uses ``mining.quality.technical.technical`` (the mining stage's score) when present;
otherwise the built-in technical score below. Any ``module:function`` taking a PIL image and
returning a float in [0, 1] can be named instead (``--quality-scorer``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np
from PIL import Image

Scorer = Callable[[Image.Image], float]


def technical_quality(img: Image.Image) -> float:
    """Sharpness, contrast and colourfulness mapped to [0, 1] (mean of three saturating terms).

    A washed-out, flat or blurred stylisation scores low; a crisp, contrasty, colourful one high.
    """
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lap = (-4 * gray[1:-1, 1:-1] + gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:])
    sharp = float(np.log1p(lap.var()) / np.log1p(2000.0))
    contrast = float(gray.std() / 64.0)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    colorful = float((np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())) / 100.0)
    return float(np.mean([min(1.0, sharp), min(1.0, contrast), min(1.0, colorful)]))


def load_scorer(spec: str | None) -> tuple[Scorer, str]:
    """A scorer from ``module:function`` (None/"default" = default_scorer); returns (fn, name)."""
    if not spec or spec == "default":
        return default_scorer(), default_scorer_name()
    mod, _, fn = spec.partition(":")
    return getattr(importlib.import_module(mod), fn), spec


def _mining_scorer() -> Scorer | None:
    """``mining.quality.technical.technical`` (the mining stage's technical score) when present."""
    try:
        mod = importlib.import_module("mining.quality.technical")
    except Exception:  # noqa: BLE001 - absent or broken: fall back
        return None
    fn = getattr(mod, "technical", None)
    if not callable(fn):
        return None
    return _MiningTechnical()


class _MiningTechnical:
    """Picklable adapter: PIL image -> mining.quality.technical.technical(rgb)[0]."""

    def __call__(self, img: Image.Image) -> float:
        from mining.quality.technical import technical

        return float(technical(np.asarray(img.convert("RGB")))[0])


def default_scorer() -> Scorer:
    return _mining_scorer() or technical_quality


def default_scorer_name() -> str:
    return (
        "mining.quality.technical:technical"
        if _mining_scorer()
        else "datasets.tasks.quality:technical_quality"
    )

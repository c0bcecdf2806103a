"""The quality scorer: technical measures, BRISQUE, the learned head and their blend, side by side.

``QualityScorer().score(images)`` returns one dict per PIL RGB image with ``quality`` (the blend,
in [0, 1]) and its parts ``quality_technical``, ``quality_brisque``, ``quality_learned``.
The head and the blend come from ``mining/weights/quality_head.npz`` (``make train-quality-head``);
they are never trained here.

Blend: ``quality = clip(b + sum_i w_i * part_i) * gates`` where the parts are [learned, brisque,
technical, and six technical measures (not resolution)], ``w >= 0`` fitted on the BIQ2021 val
split. The gates are 1 for ordinary photos and act only at the extremes, so they never reorder
normal images: a clipping gate ``(1 - max(0, clip_high - c0) / (1 - c0)) ** g`` (``clip_high``:
fraction of blown-out highlights, luma >= 252), an extreme-measure gate ``prod_k min(1, m_k /
floor_k) ** e`` over the mapped measures in ``gate_measures`` (sharpness, noise, blockiness,
exposure), and the fixed resolution gate ``resolution ** 0.5`` (1 at >= 0.25 Mpx). BIQ2021 has
few over-exposed, tiny or synthetic-degraded photos, so the gate parameters are stored priors
chosen on COCO train2017 degradations (``mining.quality.train``). An optional fixed technical
share ``s`` (``(1 - s) * blend + s * technical``; 0 in the committed weights) is kept for older
weight files.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from mining.quality import technical as tech
from mining.quality.ridge import signed_power

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "quality_head.npz"
# resolution is left out of the blend: it is the multiplicative gate below
BLEND_INPUTS = ("learned", "brisque", "technical") + tuple(f"m_{n}" for n in tech.NAMES if n != "resolution")
RESOLUTION_GAMMA = 0.5


def final_quality(blend: np.ndarray, technical: np.ndarray, resolution: np.ndarray, clip_high: np.ndarray,
                  share: float = 0.0, clip_gamma: float = 0.0, clip_floor: float = 0.0,
                  measures: dict[str, np.ndarray] | None = None, floors: dict[str, float] | None = None,
                  gate_gamma: float = 0.0) -> np.ndarray:
    """``((1 - share) * blend + share * technical)`` times the clipping gate
    ``(1 - max(0, clip_high - clip_floor) / (1 - clip_floor)) ** clip_gamma``, the extreme-measure gate
    ``prod_k min(1, measures[k] / floors[k]) ** gate_gamma`` and ``resolution ** 0.5``; in [0, 1]."""
    q = np.clip((1 - share) * blend + share * np.asarray(technical, dtype=np.float64), 0.0, 1.0)
    excess = np.clip((np.asarray(clip_high, dtype=np.float64) - clip_floor) / (1.0 - clip_floor), 0.0, 1.0)
    q = q * (1.0 - excess) ** clip_gamma
    for k, floor in (floors or {}).items():
        m = np.asarray((measures or {})[k], dtype=np.float64)
        q = q * np.clip(np.where(np.isnan(m), 1.0, m) / floor, 0.0, 1.0) ** gate_gamma
    return q * np.asarray(resolution, dtype=np.float64) ** RESOLUTION_GAMMA


def blend_matrix(parts: dict[str, np.ndarray], fill: float = 0.5) -> np.ndarray:
    """(N, len(BLEND_INPUTS)) from a dict of per-image arrays; a missing part (NaN) becomes ``fill``
    (the head stores BRISQUE's val-split mean there, used when BRISQUE is disabled or fails)."""
    cols = []
    for name in BLEND_INPUTS:
        v = np.asarray(parts[name], dtype=np.float64)
        cols.append(np.where(np.isnan(v), fill, v))
    return np.stack(cols, 1)


class LearnedHead:
    """Ridge regressor on standardised :mod:`mining.quality.deep` features, mixed with the fine-tuned
    predictor (:mod:`mining.quality.finetune`, weight ``tuned_weight``), plus the blend."""

    def __init__(self, path: str | Path | None = None):
        path = Path(path or DEFAULT_WEIGHTS)
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: run `make train-quality-head`")
        self.path = path
        z = np.load(path, allow_pickle=False)
        self.mu, self.sd = z["mu"].astype(np.float64), z["sd"].astype(np.float64)
        self.w, self.b = z["w"].astype(np.float64), float(z["b"])
        self.power = float(z["power"]) if "power" in z else 1.0
        self.blend_w, self.blend_b = z["blend_w"].astype(np.float64), float(z["blend_b"])
        self.feature_version = str(z["feature_version"])
        self.fill = float(z["brisque_fill"]) if "brisque_fill" in z else 0.5
        self.share = float(z["technical_share"]) if "technical_share" in z else 0.35
        self.clip_gamma = float(z["clip_gamma"]) if "clip_gamma" in z else 0.0
        self.clip_floor = float(z["clip_floor"]) if "clip_floor" in z else 0.0
        self.floors = (
            dict(zip(map(str, z["gate_measures"]), map(float, z["gate_floors"])))
            if "gate_floors" in z
            else {}
        )
        self.gate_gamma = float(z["gate_gamma"]) if "gate_gamma" in z else 0.0
        self.tuned_weight = float(z["tuned_weight"]) if "tuned_weight" in z else 0.0
        self.tuned_file = path.parent / str(z["tuned_file"]) if "tuned_file" in z else None
        self.tuned_sha1 = str(z["tuned_sha1"]) if "tuned_sha1" in z else ""

    def final(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        """The combined ``quality`` from every part (``parts`` as returned by :meth:`QualityScorer.parts`)."""
        return final_quality(
            self.blend(parts),
            parts["technical"],
            parts["m_resolution"],
            parts["clip_high"],
            self.share,
            self.clip_gamma,
            self.clip_floor,
            {k: parts[f"m_{k}"] for k in self.floors},
            self.floors,
            self.gate_gamma,
        )

    def predict(self, feats: np.ndarray | None, tuned: np.ndarray | None = None) -> np.ndarray:
        """``(1 - t) * ridge(feats) + t * tuned`` clipped to [0, 1] (``t = tuned_weight``; feats may
        be None at t = 1)."""
        t = self.tuned_weight
        ridge = 0.0 if t >= 1 else ((signed_power(feats, self.power) - self.mu) / self.sd) @ self.w + self.b
        return np.clip((1 - t) * ridge + (t * tuned if t > 0 else 0.0), 0.0, 1.0)

    def blend(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        return np.clip(blend_matrix(parts, self.fill) @ self.blend_w + self.blend_b, 0.0, 1.0)


@functools.lru_cache(maxsize=4)
def get_scorer(weights: str | None = None, use_brisque: bool = True) -> QualityScorer:
    """A process-wide :class:`QualityScorer` per (weights, use_brisque): models load once per worker."""
    return QualityScorer(weights, use_brisque=use_brisque)


class QualityScorer:
    """Scores PIL RGB images; loads the network and weights once (use one per worker)."""

    def __init__(
        self, weights: str | Path | None = None, use_brisque: bool = True, threads: int | None = None
    ):
        from mining.quality.deep import FEATURE_VERSION, QualityFeatures

        self.head = LearnedHead(weights)
        if self.head.feature_version != FEATURE_VERSION:
            raise ValueError(f"head trained on {self.head.feature_version}, extractor is {FEATURE_VERSION}")
        self.features = QualityFeatures(threads=threads) if self.head.tuned_weight < 1 else None
        self.tuned = None
        if self.head.tuned_weight > 0:
            from mining.quality.finetune import TunedQuality, file_sha1

            if file_sha1(self.head.tuned_file) != self.head.tuned_sha1:
                raise ValueError(
                    f"{self.head.tuned_file} is not the fine-tune delta the head was fitted with"
                )
            self.tuned = TunedQuality(self.head.tuned_file, threads=threads)
        self.brisque = None
        if use_brisque:
            from mining.quality.brisque_score import Brisque

            self.brisque = Brisque()

    def parts(self, images: list) -> dict[str, np.ndarray]:
        """Every part for every image, as arrays (BRISQUE is NaN when disabled or failing)."""
        n = len(images)
        names = ("learned", "brisque", "technical", "clip_high") + tuple(f"m_{k}" for k in tech.NAMES)
        out: dict[str, np.ndarray] = {k: np.full(n, np.nan) for k in names}
        if n:
            feats = self.features(images) if self.features is not None else None
            out["learned"] = self.head.predict(feats, self.tuned(images) if self.tuned is not None else None)
        else:
            out["learned"] = np.zeros(0)
        for i, im in enumerate(images):
            rgb = np.asarray(im.convert("RGB"))
            raw = tech.raw_measures(rgb)
            measures = tech.map_measures(raw)
            out["technical"][i] = tech.combine(measures)
            out["clip_high"][i] = raw["clip_high"]
            for k, v in measures.items():
                out[f"m_{k}"][i] = v
            if self.brisque is not None:
                try:
                    out["brisque"][i] = self.brisque.score(rgb)
                except Exception:  # noqa: BLE001 - a degenerate image (flat) has no BRISQUE fit
                    out["brisque"][i] = np.nan
        return out

    def score(self, images: list) -> list[dict[str, float | None]]:
        if not images:
            return []
        p = self.parts(images)
        q = self.head.final(p)
        return [
            {
                "quality": float(q[i]),
                "quality_technical": float(p["technical"][i]),
                "quality_brisque": None if np.isnan(p["brisque"][i]) else float(p["brisque"][i]),
                "quality_learned": float(p["learned"][i]),
            }
            for i in range(len(images))
        ]

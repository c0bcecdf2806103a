"""Per-embedder thresholds measured on the user's own images, read by the clustering stage.

    python -m clustering.calibrate --input pairs.csv --output calib.json [--embedder openclip:...]

Every embedder puts copies and distinct photos at its own cosines (an ImageNet-pooled
EfficientNet puts unrelated photos at ~0.5, a CLIP model at ~0.2-0.3), so fixed cosines are
not portable. ``calibrate`` embeds up to ``--max-images`` of the user's images, makes planted
copies of a sample of them with ``clustering/variants.py`` (re-encode, resize, crop, flip,
colour shift) and measures three distributions:

* ``copy``: cosine between an image and its planted copy;
* ``unrelated``: cosine between random pairs of the (distinct) originals;
* ``nearest``: each original's cosine to its nearest other original (the closest distinct
  neighbour; includes genuine near-duplicates in the user's data, hence a high quantile only).

Thresholds written (``Calibration``):

* ``member_floor`` = the 95th percentile of ``unrelated``: a cluster member must be closer to the
  seed than 95% of unrelated pairs (the 99th removed every COCO dev cluster) (``clustering/build.py``
  coherence); ``unrelated_median`` anchors the coherence scale;
* ``cos_alone`` (cosine decides alone) = above every ``nearest`` value up to its 99.5th percentile
  and at most the copies' median; ``cos_threshold`` (cosine + thumbnail corroboration) = the
  copies' 5th percentile, capped below ``cos_alone``; ``copy_min_cos`` / ``phash_min_cos`` (the
  looser cosine that backs a thumbnail or pHash match) = the copies' minimum minus a margin,
  capped at ``member_floor``.

The file is JSON (never a pickle); ``load`` validates it. The shipped calibration of the
offline embedder is ``clustering/calibrations/offline.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields

import numpy as np

SHIPPED = os.path.join(os.path.dirname(__file__), "calibrations")


@dataclass(frozen=True)
class Calibration:
    embedder: str
    source: str  # what it was measured on
    member_floor: float
    unrelated_median: float
    cos_threshold: float
    cos_alone: float
    copy_min_cos: float
    phash_min_cos: float
    stats: dict = field(default_factory=dict)  # quantiles of each distribution, counts

    def dedup_overrides(self) -> dict[str, float]:
        return {"cos_threshold": self.cos_threshold, "cos_alone": self.cos_alone,
                "copy_min_cos": self.copy_min_cos, "phash_min_cos": self.phash_min_cos}


def quantiles(v: np.ndarray) -> dict[str, float]:
    v = np.asarray(v, dtype=np.float64)
    if not len(v):
        return {}
    qs = {
        "min": 0.0,
        "q01": 0.01,
        "q05": 0.05,
        "q50": 0.5,
        "q95": 0.95,
        "q99": 0.99,
        "q995": 0.995,
        "max": 1.0,
    }
    return {k: round(float(np.quantile(v, q)), 6) for k, q in qs.items()} | {"n": int(len(v))}


def thresholds(copy: np.ndarray, unrelated: np.ndarray, nearest: np.ndarray) -> dict[str, float]:
    """The rules of the module doc, from the three measured distributions."""
    cq, uq, nq = quantiles(copy), quantiles(unrelated), quantiles(nearest)
    member_floor = uq["q95"]
    cos_alone = min(max(nq["q995"] + 0.005, cq["q50"]), 0.999)
    cos_threshold = min(cq["q05"], cos_alone - 0.005)
    loose = min(cq["min"] - 0.05, member_floor)
    return {"member_floor": round(member_floor, 4), "unrelated_median": round(uq["q50"], 4),
            "cos_threshold": round(cos_threshold, 4), "cos_alone": round(cos_alone, 4),
            "copy_min_cos": round(loose, 4), "phash_min_cos": round(loose, 4)}


def measure(images, embedder, seed: int = 0, copies_per_kind: int = 40, pairs: int = 20000,
            x: np.ndarray | None = None) -> dict:
    """Distributions on ``images`` (decoded PIL images, distinct originals) for ``embedder``
    (``x``: their vectors when already embedded)."""
    import io

    from PIL import Image

    from clustering.variants import KINDS, make_variant

    rng = np.random.default_rng(seed)
    x = embedder.embed_images(images) if x is None else np.asarray(x, np.float32)
    n = len(x)
    if n < 10:
        raise ValueError(f"calibration needs at least 10 decodable images, got {n}")
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    nearest = sims.max(1)
    a, b = rng.integers(0, n, size=(2, pairs))
    ok = a != b
    unrelated = sims[a[ok], b[ok]]
    copy_sims, kinds = [], []
    for kind in KINDS:
        pick = rng.choice(n, size=min(copies_per_kind, n), replace=False)
        variants = []
        for i in pick:
            buf = io.BytesIO()
            images[i].save(buf, "JPEG", quality=95)
            variants.append(Image.open(io.BytesIO(make_variant(buf.getvalue(), kind, rng))).convert("RGB"))
        v = embedder.embed_images(variants)
        copy_sims.append(np.sum(v * x[pick], axis=1))
        kinds.append(kind)
    copy = np.concatenate(copy_sims)
    stats = {"copy": quantiles(copy), "unrelated": quantiles(unrelated), "nearest": quantiles(nearest),
             "copy_by_kind": {k: quantiles(c) for k, c in zip(kinds, copy_sims)}, "images": n}
    return {"thresholds": thresholds(copy, unrelated, nearest), "stats": stats}


def save(cal: Calibration, path: str) -> None:
    from core import storage

    storage.atomic_write_bytes(path, json.dumps(asdict(cal), indent=2, sort_keys=True).encode())


def load(path: str) -> Calibration:
    """A calibration file (JSON); a one-line ValueError when it is not one."""
    from core import storage

    try:
        d = json.loads(storage.read_bytes(path).decode("utf-8"))
        names = {f.name for f in fields(Calibration)}
        cal = Calibration(**{k: d[k] for k in names if k in d})
        for k in (
            "member_floor",
            "unrelated_median",
            "cos_threshold",
            "cos_alone",
            "copy_min_cos",
            "phash_min_cos",
        ):
            if not isinstance(getattr(cal, k), (int, float)) or not -1.0 <= getattr(cal, k) <= 1.0:
                raise ValueError(f"{k} must be a number in [-1, 1]")
        return cal
    except (OSError, TypeError, KeyError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"not a calibration file: {path} ({exc})") from exc


def shipped_path(embedder_spec: str, faces: bool = True) -> str | None:
    """The calibration shipped for an embedder spec (only ``offline`` has them: with and without its
    face part)."""
    name = ("offline" if faces else "offline-nofaces") if embedder_spec in ("offline", "", None) else None
    path = os.path.join(SHIPPED, f"{name}.json") if name else None
    return path if path and os.path.exists(path) else None


def resolve(spec: str | None, embedder_spec: str, faces: bool = True) -> Calibration | None:
    """``spec``: a calibration file, 'none' (historical fixed thresholds), or None/'auto' (the shipped one
    for this embedder, else none)."""
    if spec in (None, "", "auto"):
        path = shipped_path(embedder_spec, faces)
        if not path:
            return None
        cal = load(path)
        from clustering.embedders import OfflineEmbedder

        now = OfflineEmbedder(faces=faces).name
        if cal.embedder != now:  # pooling, whitening or the face part changed since it was measured
            import sys

            print(f"calibration: shipped {path} is for {cal.embedder}, not {now}; "
                  "using the historical thresholds", file=sys.stderr)
            return None
        return cal
    if spec == "none":
        return None
    return load(spec)

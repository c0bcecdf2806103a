"""BIQ2021 access for training and evaluating the quality scorer: deterministic split + feature cache.

The split is by sha1 of the file name (not the row order): 80% train, 10% val, 10% test. Features
are extracted once and cached under ``out/quality_cache/`` (gitignored), one file per image, so an
interrupted extraction resumes where it stopped.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

SPLITS = (("train", 0.80), ("val", 0.90), ("test", 1.0))  # cumulative upper bounds of the hash
DEFAULT_CACHE = "out/quality_cache"


def split_of(name: str) -> str:
    """'train' / 'val' / 'test' from the sha1 of the file name (stable across machines)."""
    u = int(hashlib.sha1(name.encode("utf-8")).hexdigest()[:8], 16) / 0x100000000
    return next(s for s, hi in SPLITS if u < hi)


def load_biq(root: str | Path) -> list[dict]:
    """Rows of ``metadata.csv``: file (absolute path), name, mos (float), subset, split."""
    root = Path(root)
    with open(root / "metadata.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [
        {
            "file": str(root / r["file"]),
            "name": r["file"],
            "mos": float(r["mos"]),
            "subset": r.get("subset", ""),
            "split": split_of(r["file"]),
        }
        for r in rows
    ]


def cached_matrix(
    rows: list[dict], tag: str, fn: Callable[[list[str]], np.ndarray], cache_dir: str = DEFAULT_CACHE,
    chunk: int = 16, desc: str = "",
) -> np.ndarray:
    """``fn(paths) -> (n, d)`` over every row, cached per image under ``cache_dir/tag/<sha1 of name>.npy``."""
    from tqdm import tqdm

    folder = Path(cache_dir) / tag
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / (hashlib.sha1(r["name"].encode("utf-8")).hexdigest()[:16] + ".npy") for r in rows]
    todo = [i for i, p in enumerate(paths) if not p.exists()]
    for start in tqdm(range(0, len(todo), chunk), desc=desc or tag, unit="chunk"):
        idx = todo[start : start + chunk]
        arr = np.asarray(fn([rows[i]["file"] for i in idx]), dtype=np.float32)
        for i, vec in zip(idx, arr):
            tmp = paths[i].with_suffix(f".tmp-{os.getpid()}.npy")
            np.save(tmp, vec)
            os.replace(tmp, paths[i])
    return np.stack([np.load(p) for p in paths]) if paths else np.zeros((0, 0), np.float32)


def extraction_order(rows: list[dict]) -> list[dict]:
    """Held-out rows first (val, test), then train in name-hash order (the order ``--max-train`` takes
    them in): an interrupted extraction still evaluates and trains on an unbiased subset."""
    rank = {"val": 0, "test": 1, "train": 2}
    return sorted(rows, key=lambda r: (rank[r["split"]], hash_key(r["name"])))


def hash_key(name: str) -> bytes:
    return hashlib.sha1(name.encode("utf-8")).digest()


def deep_features(rows: list[dict], cache_dir: str = DEFAULT_CACHE, threads: int | None = None,
                  loader: Callable | None = None) -> np.ndarray:
    """Cached :class:`QualityFeatures` for every row (``loader(path) -> PIL RGB``; default: open the file).
    The network loads only when some row is not cached yet."""
    from PIL import Image

    from mining.quality.deep import FEATURE_VERSION, QualityFeatures

    load = loader or (lambda p: Image.open(p).convert("RGB"))
    qf = []

    def fn(paths):
        if not qf:
            qf.append(QualityFeatures(threads=threads))
        return qf[0]([load(p) for p in paths])

    cached_matrix(extraction_order(rows), FEATURE_VERSION, fn, cache_dir, desc="deep features")
    return cached_matrix(rows, FEATURE_VERSION, fn, cache_dir)


if __name__ == "__main__":  # extraction only: python -m mining.quality.biq ROOT
    import sys

    r = load_biq(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/biq2021")
    print(deep_features(r, threads=2).shape)

"""HED against the official BSDS500 ground truth: per-annotator boundaries from ``groundTruth/*.mat``.

The BSDS500 distribution (``BSR/BSDS500/data``) holds ``images/{train,val,test}/*.jpg`` and
``groundTruth/{split}/*.mat``, each a cell array with one struct per annotator (``Segmentation``,
``Boundaries``). With those maps the standard protocol runs exactly as published: each annotator's
boundaries are matched one-to-one on their own, a predicted pixel is correct when it matches in any
annotator's map, and recall sums matched pixels over annotators (``ods.evaluate_image`` with one map
per annotator). This is the evaluation to run on the test split for the published HED ODS 0.788.

    python -m datasets.control ods --images BSR/BSDS500/data/images/test \\
        --gt BSR/BSDS500/data/groundTruth/test [--edges DIR] [--output fused|merged] [--n 0]
"""

from __future__ import annotations

import io
import json
from pathlib import PurePosixPath

import numpy as np
from PIL import Image
from tqdm import tqdm

from core import storage
from datasets.control import ods


def load_boundaries(mat_path: str) -> list[np.ndarray]:
    """The annotators' boundary maps (bool HxW, one per annotator) of one BSDS500 ``.mat`` file."""
    from scipy.io import loadmat

    mat = loadmat(io.BytesIO(storage.read_bytes(mat_path)))
    cells = mat["groundTruth"].ravel()
    maps = []
    for cell in cells:
        s = cell[0, 0] if cell.dtype == object else cell
        if "Boundaries" in s.dtype.names:
            maps.append(np.asarray(s["Boundaries"]).astype(bool) if s["Boundaries"].dtype != object
                        else np.asarray(s["Boundaries"][0, 0]).astype(bool))
        else:  # segmentation only: boundaries from label changes
            seg = s["Segmentation"] if s["Segmentation"].dtype != object else s["Segmentation"][0, 0]
            maps.append(ods.seg_to_boundary(np.asarray(seg)))
    if not maps:
        raise ValueError(f"{mat_path}: no annotator in groundTruth")
    return maps


def _score(item: tuple) -> ods.ImageCounts:
    """Worker: (edge map, .mat path, thresholds) -> counts against every annotator separately."""
    from datasets.control.edges import nms

    edge, mat_path, n_thr = item
    return ods.evaluate_image(nms(edge), load_boundaries(mat_path), n_thresholds=n_thr)


def _edge_map(stem: str, image_path: str, edges_dir: str | None, det) -> np.ndarray:
    if edges_dir:
        for ext, load in ((".npy", lambda b: np.load(io.BytesIO(b))),
                          (".png", lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("L")) / 255.0)):
            p = storage.join(edges_dir, stem + ext)
            if storage.exists(p):
                return np.asarray(load(storage.read_bytes(p)), np.float32)
    return det().edges(Image.open(io.BytesIO(storage.read_bytes(image_path))).convert("RGB"))


def evaluate_dir(images: str, gt: str, edges: str | None = None, output: str = "fused", n: int = 0,
                 n_thresholds: int = ods.N_THRESHOLDS, workers: int = 2, weights: str | None = None) -> dict:
    """ODS / OIS / AP of HED (or precomputed maps in ``edges``) on every image with a ``.mat`` in ``gt``.

    Precomputed maps are ``{stem}.npy`` (float in [0, 1]) or ``{stem}.png`` (255 = 1.0), for example
    the output of ``python -m datasets.control edges``; images without one are run through HED.
    """
    mats = sorted(p for p in storage.list_files(gt, "*.mat"))
    if n > 0:
        mats = mats[:n]
    if not mats:
        raise SystemExit(f"no .mat ground truth in {gt}")
    holder: dict = {}

    def det():
        if "hed" not in holder:
            from datasets.control.hed import HEDDetector

            holder["hed"] = HEDDetector(weights=weights, output=output)
        return holder["hed"]

    items, missing = [], []
    for mat in tqdm(mats, desc=f"HED {output}", unit="img"):
        stem = PurePosixPath(mat).stem
        image = storage.join(images, stem + ".jpg")
        if not edges and not storage.exists(image):
            missing.append(stem)
            continue
        items.append((_edge_map(stem, image, edges, det), mat, n_thresholds))
    result = ods.summarize(ods.evaluate_many(_score, items, workers=workers, desc="ods"))
    result.pop("pr_curve", None)
    result.update({"protocol": "official: per-annotator one-to-one matching (groundTruth .mat)",
                   "output": output if not edges else f"precomputed ({edges})", "missing_images": missing})
    return result


def main(a) -> dict:
    res = evaluate_dir(a.images, a.gt, a.edges, a.output, a.n, a.thresholds, a.workers, a.weights)
    print(json.dumps(res, indent=1))
    return res

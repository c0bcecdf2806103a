"""HED edges vs BSDS500 val human boundaries: ODS / OIS / AP (BSDS protocol, see datasets/control/ods.py).

    python -m bench.control_hed_ods                     # default: 20 val images, fused, gt=weighted
    python -m bench.control_hed_ods --n 0 --output fused merged --gt weighted hybrid segments  # full run

Predictions are cached (float16 .npy per image) so reruns only evaluate. Images are scored in
parallel (``--workers``); a serial vs parallel timing on a few images is printed side by side.
HED's ODS is printed against the published 0.788 (BSDS500 test, late merging); ``--baseline``
adds a Sobel gradient-magnitude baseline.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from core import storage
from datasets.control import ods
from datasets.control.edges import nms

REPO = Path(__file__).resolve().parents[1]
BSDS = Path(os.environ.get("SHARED_DATA", REPO.parent / "shared" / "data")) / "bsds500"
PUBLISHED_HED_ODS = 0.788


def load_rows(split: str, n: int) -> list[dict]:
    with open(BSDS / "metadata.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == split]
    return rows[:n] if n > 0 else rows


GT_MODES = ("weighted", "hybrid", "segments", "levels")


def fraction_map(row: dict) -> np.ndarray:
    """Fraction of annotators marking each pixel (``edges/`` PNG, 255 = all)."""
    return np.asarray(Image.open(BSDS / row["edge"]).convert("L"), np.float32) / 255.0


def reference(row: dict, mode: str) -> dict:
    """Keyword arguments of ``ods.evaluate_image`` for one image and one human reference
    (see docs/control.md).

    ``weighted`` (default): predictions matched to the union boundary (fraction > 0); recall weights
    each union pixel by its annotator fraction. ``hybrid``: recall on annotator 0, precision against
    the union. ``segments``: annotator 0 only. ``levels``: n maps "drawn by >= k of n annotators".
    """
    if mode == "weighted":
        frac = fraction_map(row)
        return {"gts": [frac > 0], "gt_weights": [frac]}
    if mode in ("segments", "hybrid"):
        seg = [ods.seg_to_boundary(np.asarray(Image.open(BSDS / row["segment"])))]
        return {"gts": seg, "precision_gts": [fraction_map(row) > 0] if mode == "hybrid" else None}
    if mode == "levels":
        return {"gts": ods.level_boundaries(fraction_map(row), int(row["n_annotators"]))}
    raise ValueError(f"unknown reference {mode!r}")


def score_one(item: tuple) -> ods.ImageCounts:
    """Worker: (edge map, metadata row, reference, thresholds) -> counts (NMS + GT loading run here)."""
    edge, row, mode, n_thr = item
    return ods.evaluate_image(nms(edge), n_thresholds=n_thr, **reference(row, mode))


def sobel_edges(path: Path) -> np.ndarray:
    g = ndimage.gaussian_filter(np.asarray(Image.open(path).convert("L"), np.float32) / 255.0, 1.5)
    mag = np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1))
    return (mag / max(float(mag.max()), 1e-6)).astype(np.float32)


def cache_dir(cache: str, output: str) -> str:
    """Cache folder of one HED output: ``cache`` for fused, ``cache + "_merged"`` for merged."""
    return cache if output == "fused" else f"{cache}_{output}"


def cached_hed(rows: list[dict], cache: str, output: str = "fused") -> tuple[list[np.ndarray], float]:
    """HED maps for ``rows`` (computed once, cached); returns (maps, seconds spent computing)."""
    cache = cache_dir(cache, output)
    det, maps, spent = None, [], 0.0
    for row in tqdm(rows, desc=f"HED {output}", unit="img"):
        path = storage.join(cache, Path(row["file"]).stem + ".npy")
        if storage.exists(path):
            maps.append(np.load(io.BytesIO(storage.read_bytes(path))).astype(np.float32))
            continue
        if det is None:
            from datasets.control.hed import HEDDetector  # torch only when something is uncached

            det = HEDDetector(output=output)
        t0 = time.perf_counter()
        e = det.edges(Image.open(BSDS / row["file"]))
        spent += time.perf_counter() - t0
        buf = io.BytesIO()
        np.save(buf, e.astype(np.float16))
        storage.atomic_write_bytes(path, buf.getvalue())
        maps.append(e)
    return maps, spent


def score(
    maps: list[np.ndarray], rows: list[dict], mode: str, n_thr: int, desc: str, workers: int = 2
) -> dict:
    items = [(m, r, mode, n_thr) for m, r in zip(maps, rows)]
    return ods.summarize(ods.evaluate_many(score_one, items, workers=workers, desc=desc))


def speed_check(maps: list[np.ndarray], rows: list[dict], mode: str, n_thr: int, workers: int) -> None:
    """Times the same images serially and with ``workers`` processes; checks identical counts."""
    t0 = time.perf_counter()
    serial = ods.evaluate_many(score_one, [(m, r, mode, n_thr) for m, r in zip(maps, rows)], 1, "serial")
    t1 = time.perf_counter()
    par = ods.evaluate_many(score_one, [(m, r, mode, n_thr) for m, r in zip(maps, rows)], workers, "parallel")
    t2 = time.perf_counter()
    same = all(np.array_equal(getattr(a, f), getattr(b, f)) for a, b in zip(serial, par)
               for f in ("cnt_p", "sum_p", "cnt_r", "sum_r"))
    print(
        f"speed gt={mode} {len(rows)} images: serial {t1 - t0:.1f}s ({(t1 - t0) / len(rows):.2f} s/img), "
        f"{workers} workers {t2 - t1:.1f}s; speed-up x{(t1 - t0) / max(t2 - t1, 1e-9):.2f}; "
        f"identical counts: {same}"
    )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument(
        "--n", type=int, default=20, help="number of images (0 = all 100 val images: the full run)"
    )
    ap.add_argument("--split", default="val", help="BSDS500 split in metadata.csv")
    ap.add_argument("--gt", nargs="+", default=["hybrid"], choices=GT_MODES,
                    help="human references to score against (see docs/control.md)")
    ap.add_argument("--output", nargs="+", default=["fused"], choices=["fused", "merged"],
                    help="HED outputs to score (merged = late merging of fused + 5 side outputs)")
    ap.add_argument("--thresholds", type=int, default=ods.N_THRESHOLDS, help="number of thresholds")
    ap.add_argument("--workers", type=int, default=2, help="evaluation processes (1 = serial)")
    ap.add_argument("--speed-check", type=int, default=4,
                    help="time this many images serially vs with --workers side by side (0 = skip)")
    ap.add_argument("--cache", default=str(REPO / "out" / "control" / "hed_bsds_val"),
                    help="HED prediction cache (fused; merged maps go to <cache>_merged)")
    ap.add_argument("--baseline", action="store_true", help="also score a Sobel gradient baseline")
    ap.add_argument("--json", default="", help="also write the summaries here")
    args = ap.parse_args(argv)
    if not (BSDS / "metadata.csv").exists():
        print(f"skipped: {BSDS} is absent")
        return {}
    rows = load_rows(args.split, args.n)
    result: dict = {}
    for output in args.output:
        hed, spent = cached_hed(rows, args.cache, output)
        if spent:
            print(f"HED {output} inference: {spent:.1f}s for the uncached images")
        if args.speed_check and output == args.output[0]:
            k = min(args.speed_check, len(rows))
            speed_check(hed[:k], rows[:k], args.gt[0], args.thresholds, args.workers)
        for mode in args.gt:
            tag = f"HED-{output:6s} gt={mode:8s}"
            r = score(hed, rows, mode, args.thresholds, f"eval HED {output}/{mode}", args.workers)
            line = {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items() if k != "pr_curve"}
            print(f"{tag} {json.dumps(line)}")
            print(f"{tag} ODS / published HED ODS {PUBLISHED_HED_ODS}: {r['ods'] / PUBLISHED_HED_ODS:.3f}"
                  f"  (difference {r['ods'] - PUBLISHED_HED_ODS:+.3f})")
            result[f"hed_{output}_{mode}"] = r
    if args.baseline:
        sobel = [sobel_edges(BSDS / x["file"]) for x in rows]
        for mode in args.gt:
            b = score(sobel, rows, mode, args.thresholds, f"eval Sobel/{mode}", args.workers)
            print(f"Sobel           gt={mode:8s} ODS {b['ods']:.4f} OIS {b['ois']:.4f} AP {b['ap']:.4f}")
            result[f"sobel_{mode}"] = b
    if args.json:
        storage.atomic_write_bytes(args.json, json.dumps(result, indent=1).encode())
    return result


if __name__ == "__main__":
    main()

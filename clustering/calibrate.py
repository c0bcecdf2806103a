"""Calibrate the clustering thresholds for one embedder on your own images.

    python -m clustering.calibrate --input pairs.csv --output calib.json [--embedder openclip:M:T]
    python -m pipelines.build_clusters --input pairs.csv --output out --calibration calib.json

``--input`` is anything the readers accept (CSV/Parquet with path or image bytes, an image
folder, img2dataset output). Up to ``--max-images`` decodable images (a deterministic sample)
are embedded with planted copies of some of them; see ``clustering/calibration.py`` for what
is measured and which thresholds are written. Prints the file's content.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def decoded_images(input: str, max_images: int, max_side: int = 512) -> list:
    """Decodable images of ``input``, each shrunk to ``max_side`` on load (bounded memory)."""
    from core.decode import decode_record
    from mining.readers.dispatch import read_any

    images = []
    for rec in read_any(input):
        if len(images) >= max_images:
            break
        dec = decode_record(rec)
        if isinstance(dec, dict):
            continue
        im = dec.image
        im.thumbnail((max_side, max_side))
        images.append(im)
    return images


def main(argv: list[str] | None = None) -> int:
    from clustering.calibration import Calibration, measure, save
    from clustering.embedders import make_embedder

    ap = argparse.ArgumentParser(prog="python -m clustering.calibrate", description=__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--input", required=True, help="your images (anything a reader accepts)")
    ap.add_argument("--output", required=True, help="calibration JSON to write")
    ap.add_argument("--embedder", default="offline", help="offline | openclip:MODEL:PRETRAINED_OR_CHECKPOINT")
    ap.add_argument("--max-images", type=int, default=400, help="images embedded (the first decodable ones)")
    ap.add_argument("--copies-per-kind", type=int, default=40, help="planted copies per variant kind")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        images = decoded_images(args.input, args.max_images)
        emb = make_embedder(args.embedder)
        m = measure(images, emb, seed=args.seed, copies_per_kind=args.copies_per_kind)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 2
    cal = Calibration(embedder=emb.name, source=f"{args.input} ({len(images)} images, seed {args.seed})",
                      stats=m["stats"], **m["thresholds"])
    save(cal, args.output)
    print(json.dumps({k: v for k, v in cal.__dict__.items() if k != "stats"} | {"copy": m["stats"]["copy"],
                      "unrelated": m["stats"]["unrelated"], "nearest": m["stats"]["nearest"]}, indent=2,
                     default=lambda o: float(o) if isinstance(o, np.floating) else str(o)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

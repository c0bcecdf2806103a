"""Calibrate the clustering thresholds for one embedder on your own images.

    python -m clustering.calibrate --input pairs.csv --output calib.json [--embedder openclip:M:T]
    python -m pipelines.build_clusters --input pairs.csv --output out --calibration calib.json

``--input`` is anything the readers accept (CSV/Parquet with path or image bytes, an image
folder, img2dataset output). Up to ``--max-images`` decodable images (a deterministic sample)
are embedded with planted copies of some of them; see ``clustering/calibration.py`` for what
is measured and which thresholds are written. Prints the file's content.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

import numpy as np

from clustering.config import faces_knob
from core import cli
from core import config as cfgsys
from core.config import knob


@dataclass(frozen=True)
class CalibrateOptions:
    """What ``python -m clustering.calibrate`` measures (flags, ``--config`` YAML, ``--set``)."""

    embedder: str = field(
        default="offline", metadata=knob("offline | openclip:MODEL:PRETRAINED_OR_CHECKPOINT")
    )
    faces: bool = faces_knob()
    max_images: int = field(default=400, metadata=knob("images embedded (the first decodable ones)", min=1))
    copies_per_kind: int = field(default=40, metadata=knob("planted copies per variant kind", min=1))
    seed: int = field(default=0, metadata=knob("seed of the image sample and the planted copies"))


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

    ap = cfgsys.parser_for("python -m clustering.calibrate", __doc__)
    ap.add_argument("--input", required=True, help="your images (anything a reader accepts)")
    ap.add_argument("--output", required=True, help="calibration JSON to write")
    cfgsys.add_flags(ap, CalibrateOptions, "calibration options")
    cfgsys.add_config_args(ap)
    args, opts, _ = cfgsys.parse(
        ap, CalibrateOptions, argv
    )  # flag mistakes: ConfigError, one line via cli.run
    try:
        images = decoded_images(args.input, opts.max_images)
        emb = make_embedder(opts.embedder, faces=opts.faces)
        m = measure(images, emb, seed=opts.seed, copies_per_kind=opts.copies_per_kind)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 2
    cal = Calibration(embedder=emb.name, source=f"{args.input} ({len(images)} images, seed {opts.seed})",
                      stats=m["stats"], **m["thresholds"])
    save(cal, args.output)
    print(json.dumps({k: v for k, v in cal.__dict__.items() if k != "stats"} | {"copy": m["stats"]["copy"],
                      "unrelated": m["stats"]["unrelated"], "nearest": m["stats"]["nearest"]}, indent=2,
                     default=lambda o: float(o) if isinstance(o, np.floating) else str(o)))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))

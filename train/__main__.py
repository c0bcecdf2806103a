"""Train the base or super-resolution model on WebDataset shards.

    python -m train --config train/configs/base_stage1.yaml --shards out/demo/cluster_shards --output out/train1
    torchrun --nproc_per_node 2 -m train --config ... (DDP; one process per GPU, or gloo on CPU)

Rerunning with the same --output resumes exactly from the latest checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import nullcontext

import yaml


def parse_overrides(items: list[str]) -> dict:
    """``a.b=value`` strings (value parsed as YAML) -> nested dict."""
    out: dict = {}
    for item in items:
        key, _, val = item.partition("=")
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(val)
    return out


def main(argv=None) -> int:
    from core import storage
    from train.checkpoint import CheckpointError
    from train.trainer import Trainer, TrainingDiverged, load_config

    ap = argparse.ArgumentParser(prog="python -m train", description=__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--config", default="train/configs/base_stage1.yaml",
                    help="YAML config (path, or a name in train/configs: base_stage1, base_stage2, sr, tiny)")
    ap.add_argument("--shards", required=True,
                    help="shards: folder, glob, brace pattern or comma-separated list of .tar paths")
    ap.add_argument("--output", required=True, help="run folder (checkpoints/, samples/, tb/, log.csv)")
    ap.add_argument("--steps", type=int, default=None, help="override train.steps")
    ap.add_argument("--init", default=None, help="override train.init_from (stage-1 checkpoint for stage 2)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. --set data.batch_size=16 --set model.base_channels=64")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    a = ap.parse_args(argv)
    over = parse_overrides(a.set)
    if a.steps is not None:
        over.setdefault("train", {})["steps"] = a.steps
    if a.init:
        over.setdefault("train", {})["init_from"] = a.init
    try:
        # one lock per run folder: DDP ranks > 0 share rank 0's
        lock = storage.OutputLock(a.output) if os.environ.get("RANK", "0") == "0" else nullcontext()
        with lock:
            trainer = Trainer(load_config(a.config, over), a.shards, a.output, progress=not a.no_progress)
            try:
                summary = trainer.train()
                if trainer.rank == 0:
                    summary["samples_png"] = summary["samples_png"] or trainer.write_samples()
                    print(json.dumps(summary, indent=1, default=str))
            finally:
                trainer.close()
    except (CheckpointError, TrainingDiverged, storage.OutputLocked) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

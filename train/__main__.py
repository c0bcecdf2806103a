"""Train the base or super-resolution model on WebDataset shards.

    python -m train --config train/configs/base_stage1.yaml --shards out/demo/cluster_shards \\
        --output out/train1
    python -m train --config tiny --set data.batch_size=16 --model-base-channels 64 --steps 500 ...
    torchrun --nproc_per_node 2 -m train --config ... (DDP; one process per GPU, or gloo on CPU)

Every option of the YAML is also a flag (``--SECTION-KEY``; ``--steps`` and ``--init`` for
train.steps and train.init_from) and a ``--set SECTION.KEY=VALUE`` path: defaults < YAML < --set <
flags. ``--print-config`` prints the resolved config. Rerunning with the same --output resumes
exactly from the latest checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import nullcontext

from core import cli
from core import config as cfgsys
from train.config import TrainRunConfig, nested


def parse_overrides(items: list[str]) -> dict:
    """``a.b=value`` strings (value parsed as YAML) -> nested dict; unknown paths are ConfigErrors."""
    return nested(cfgsys.values_from_sets(TrainRunConfig, items))


def build_parser() -> cfgsys.Parser:
    ap = cfgsys.parser_for("python -m train", __doc__)
    ap.add_argument(
        "--config",
        default="train/configs/base_stage1.yaml",
        help="YAML config: a path, or a name in train/configs (base_stage1, base_stage2, base128_stage1, "
        "base128_stage2, sr, sr128, tiny, tiny_sr) (default: train/configs/base_stage1.yaml)",
    )
    ap.add_argument(
        "--shards",
        default=None,
        help="shards: folder, glob, brace pattern or comma-separated list of .tar paths (required)",
    )
    ap.add_argument(
        "--output", default=None, help="run folder (checkpoints/, samples/, tb/, log.csv) (required)"
    )
    ap.add_argument("--set", dest="config_set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. --set data.batch_size=16 --set model.base_channels=64")
    ap.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    cfgsys.add_flags(ap, TrainRunConfig, "config options (default: the YAML's value, else the one shown)")
    return ap


def resolve(argv: list[str] | None) -> tuple:
    """(namespace, config dict): the YAML < ``--set`` < explicit flags, checked against the schema."""
    from train.trainer import deep_merge, load_config

    ap = build_parser()
    ns, extra = ap.parse_known_args(argv)
    cfgsys.check_extra_args(extra, ap, beam=False)
    flags = {
        leaf.path: getattr(ns, leaf.dest) for leaf in cfgsys.leaves(TrainRunConfig) if hasattr(ns, leaf.dest)
    }
    over = deep_merge(parse_overrides(ns.config_set), nested(flags))
    return ns, load_config(ns.config, over)


def main(argv=None) -> int:
    from core import storage
    from train.checkpoint import CheckpointError
    from train.trainer import Trainer, TrainingDiverged

    a, cfg = resolve(argv)
    if a.print_config:
        print(json.dumps(cfg, indent=1))
        return 0
    missing = [f for f, v in (("--shards", a.shards), ("--output", a.output)) if not v]
    cli.require(not missing, f"the following arguments are required: {', '.join(missing)}")
    try:
        # one lock per run folder: DDP ranks > 0 share rank 0's
        lock = storage.OutputLock(a.output) if os.environ.get("RANK", "0") == "0" else nullcontext()
        with lock:
            trainer = Trainer(cfg, a.shards, a.output, progress=not a.no_progress)
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
    raise SystemExit(cli.run(main))

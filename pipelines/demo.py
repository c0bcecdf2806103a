"""The demo: generate the embedded corpus and run every stage on it, offline.

    python -m pipelines.demo --output out/demo [--n 500] [--seed 0] [--train-steps 40] [--runner fnapi]
    python -m pipelines.demo --output out/demo-real --input coco/metadata.csv,flickr8k/metadata.csv \
        --faces-dir celeba_faces --style-dir styledrop/images      # `make demo-real`

The demo is the list ``STEPS``: each :class:`Step` names a stage, the module it needs and how it
runs on the run folder (``core.contracts.RunLayout``); ``--input`` replaces the generated corpus
with real image-text tables.

Stages run in order; each writes under ``OUTPUT/<stage>/`` and returns a summary (records read,
kept, rejected by reason, output paths). A stage whose module is not installed is reported as
absent rather than silently skipped. Ends with a table of every stage and where its outputs are.

Training follows the paper: stage 1 (retrieval-augmented, on the cluster shards) trains the tiny
base model, stage 2 (instruction tuning on the task shards) starts from stage 1's weights
(``train.init_from``), then the tiny super-resolution model (32 -> 64) trains a few steps; each
writes a sample grid under ``OUTPUT/train/<stage>/samples/``. The demo cascade's largest model
size is 64 px, so task control maps are computed at 64 px (``--control-side``) and stored images
are shrunk to 128 px (``--max-side``).
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import config as cfgsys
from core.config import knob
from core.contracts import RunLayout


@dataclass(frozen=True)
class DemoConfig:
    """Every knob of ``python -m pipelines.demo`` (flags, YAML and ``--set`` keys come from here)."""

    input: tuple[str, ...] | None = field(default=None, metadata=knob(
        "real image-text tables (CSV with file/path + caption columns, comma-separated) instead of the "
        "generated corpus: `make demo-real` passes COCO and Flickr8k from ../shared/data"))
    n: int = field(default=500, metadata=knob("image-text pairs in the generated corpus", min=1))
    seed: int = field(default=0, metadata=knob("seed for the corpus, task synthesis and training"))
    train_steps: int = field(
        default=40, metadata=knob("stage-1 base-model steps on the cluster shards", min=0)
    )
    stage2_steps: int = field(default=20, metadata=knob("stage-2 base-model steps on the task shards", min=1))
    sr_steps: int = field(default=10, metadata=knob("super-resolution model steps (0 = skip)", min=0))
    control_side: int = field(default=64, metadata=knob(
        "control-map size: the demo cascade's largest model (tiny SR, 64 px)", min=8))
    max_side: int = field(default=128, metadata=knob("longer side of images stored in task shards", min=8))
    task_samples: int | None = field(default=None, metadata=knob(
        "task samples in total (none: one per captioned mined pair)", min=1))
    faces_dir: str | None = field(default=None, metadata=knob(
        "faces grouped by person (e.g. ../shared/data/celeba_faces)"))
    runner: str = field(default="fnapi", metadata=knob(
        "Beam runner: fnapi, direct-mp (multi-processing) or portable"))
    tasks: tuple[str, ...] | None = field(default=None, metadata=knob(
        "comma-separated task names to synthesise (none: the mixture's)"))
    style_dir: str | None = field(default=None, metadata=knob(
        "style images (none: art-domain pairs kept by mining)"))
    stop_after: str | None = field(default=None, metadata=knob(
        "stop after this stage", choices=("corpus", "read", "mine", "cluster", "tasks", "train", "report")))


@dataclass(frozen=True)
class DemoRun:
    """One demo run: its config and run folder (``core.contracts.RunLayout``)."""

    cfg: DemoConfig
    out: Path

    @property
    def layout(self) -> RunLayout:
        return RunLayout(str(self.out))


@dataclass(frozen=True)
class Step:
    """One stage of the demo: its name, the module it needs, and how it runs on a :class:`DemoRun`."""

    name: str
    module: str
    run: Callable[[DemoRun], dict[str, Any]]


def _available(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return False
        raise


def corpus_step(r: DemoRun) -> dict[str, Any]:
    """The generated corpus, or (``input``) the given real tables combined into one pairs table."""
    corpus = r.out / "corpus"
    if r.cfg.input:
        return combine_tables(r.cfg.input, corpus / "pairs.csv")
    from mining.demo_corpus import generate

    return generate(str(corpus), n=r.cfg.n, seed=r.cfg.seed)


def combine_tables(tables: tuple[str, ...], out: Path) -> dict[str, Any]:
    """``path,caption`` rows from each table (its ``file``/``path`` column resolved against the
    table's folder), in the given order: one input for the reader, any number of real sets."""
    from core import storage

    rows = []
    for t in tables:
        base = Path(t).resolve().parent
        with open(t, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                rel = row.get("file") or row.get("path")
                if rel:
                    rows.append({"path": str(base / rel), "caption": row.get("caption", "")})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["path", "caption"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    storage.atomic_write_bytes(str(out), buf.getvalue().encode())
    return {"stage": "corpus", "read": len(rows), "kept": len(rows), "rejected": {},
            "outputs": {"pairs": str(out)}, "inputs": list(tables)}


def read_step(r: DemoRun) -> dict[str, Any]:
    from mining.readers import write_records

    return write_records(str(r.out / "corpus" / "pairs.csv"), r.layout.records)


def mine_step(r: DemoRun) -> dict[str, Any]:
    from pipelines.mine import run

    return run(r.layout.records, r.layout.mined, runner=r.cfg.runner)


def cluster_step(r: DemoRun) -> dict[str, Any]:
    from pipelines.build_clusters import run

    return run(r.layout.records, r.layout.clusters, mined=r.layout.mined, runner=r.cfg.runner)


def tasks_step(r: DemoRun) -> dict[str, Any]:
    from pipelines.build_tasks import run

    c = r.cfg
    style_dir = c.style_dir or _demo_styles(Path(r.layout.mined), r.out / "styles")
    return run(
        str(r.out),
        r.layout.tasks,
        seed=c.seed,
        style_dir=style_dir,
        tasks=list(c.tasks) if c.tasks else None,
        faces_dir=c.faces_dir,
        control_side=c.control_side,
        max_side=c.max_side,
        max_samples=c.task_samples,
        runner=c.runner,
    )


def train_step(r: DemoRun) -> dict[str, Any]:
    return train_stages(Path(RunLayout.shards(r.layout.clusters)), Path(RunLayout.shards(r.layout.tasks)),
                        Path(r.layout.train), r.cfg)


def report_step(r: DemoRun) -> dict[str, Any]:
    from pipelines.report import build_report

    return build_report(str(r.out), r.layout.report)


# The demo is this list: each stage in pipeline order, run on the same run folder.
STEPS: tuple[Step, ...] = (
    Step("corpus", "mining.demo_corpus", corpus_step),
    Step("read", "mining.readers", read_step),
    Step("mine", "pipelines.mine", mine_step),
    Step("cluster", "pipelines.build_clusters", cluster_step),
    Step("tasks", "pipelines.build_tasks", tasks_step),
    Step("train", "train", train_step),
    Step("report", "pipelines.report", report_step),
)


def train_stages(cluster_shards: Path, task_shards: Path, train: Path, args: DemoConfig) -> dict[str, Any]:
    """Stage 1 on cluster shards, stage 2 on task shards from stage 1's weights, then the SR model.

    A missing shard folder skips its stage with the reason (stage 2 then starts from scratch).
    """
    from core import storage
    from train import demo_run

    out: dict[str, Any] = {"outputs": {}}
    have = {
        p: p.is_dir() and bool(storage.list_files(str(p), "*.tar")) for p in (cluster_shards, task_shards)
    }
    s1 = None
    if have[cluster_shards]:
        s1 = demo_run(
            str(cluster_shards), str(train / "stage1_retrieval"), steps=args.train_steps, seed=args.seed
        )
        out["stage1"] = {k: s1[k] for k in ("steps", "final_loss", "checkpoint", "samples_png")}
        out["outputs"]["stage1_grid"] = s1["samples_png"]
    else:
        out["stage1"] = {"skipped": f"no cluster shards in {cluster_shards}"}
    shards2 = task_shards if have[task_shards] else cluster_shards
    over = {"train": {"init_from": s1["checkpoint"]}} if s1 else {}
    s2 = demo_run(
        str(shards2), str(train / "stage2_tasks"), steps=args.stage2_steps, seed=args.seed, overrides=over
    )
    out["stage2"] = {k: s2[k] for k in ("steps", "final_loss", "checkpoint", "samples_png")}
    out["stage2"]["init_from"] = s1["checkpoint"] if s1 else None
    out["outputs"]["stage2_grid"] = s2["samples_png"]
    if args.sr_steps > 0:
        s3 = demo_run(
            str(shards2), str(train / "stage3_sr"), steps=args.sr_steps, seed=args.seed, config="tiny_sr"
        )
        out["sr"] = {k: s3[k] for k in ("steps", "final_loss", "checkpoint", "samples_png")}
        out["outputs"]["sr_grid"] = s3["samples_png"]
    out["final_loss"] = s2["final_loss"]
    out["note"] = (
        f"stage1 loss {out['stage1'].get('final_loss', float('nan')):.4f} -> stage2 loss "
        f"{s2['final_loss']:.4f}" + (f" -> sr loss {out['sr']['final_loss']:.4f}" if "sr" in out else "")
    )
    return out


def _demo_styles(mined: Path, styles: Path, limit: int = 8) -> str | None:
    """Style images for the style tasks: the first ``limit`` art-domain pairs that mining kept."""
    from core import storage

    kept = mined / "kept"
    if not kept.is_dir():
        return None
    n = 0
    for row in storage.iter_rows(str(kept), columns=["key", "domain", "image"]):
        if row["domain"] == "art" and row["image"]:
            storage.atomic_write_bytes(str(styles / f"{row['key']}.jpg"), row["image"])
            n += 1
            if n == limit:
                break
    return str(styles) if n else None


def _fmt_rejected(rej: Any) -> str:
    if not rej:
        return "0"
    if isinstance(rej, dict):
        total = sum(rej.values())
        parts = ", ".join(f"{k}={v}" for k, v in sorted(rej.items(), key=lambda kv: -kv[1]))
        return f"{total} ({parts})"
    return str(rej)


def print_summary(results: list[dict[str, Any]]) -> None:
    print("\n" + "=" * 100)
    print(
        f"{'stage':<9} {'status':<8} {'read':>7} {'kept':>7}  {'seconds':>7} {'cpu s':>7}  "
        "rejected (by reason)"
    )
    print("-" * 100)
    for r in results:
        s = r.get("summary") or {}
        print(
            f"{r['stage']:<9} {r['status']:<8} {s.get('read', ''):>7} {s.get('kept', ''):>7}  "
            f"{r.get('seconds', 0):>7.1f} {r.get('cpu_seconds', 0):>7.1f}  {_fmt_rejected(s.get('rejected'))}"
        )
        for extra in ("clusters_kept", "clusters_too_small", "clusters_weak", "cross_domain_duplicates",
                      "duplicates_removed", "final_loss", "note"):
            if extra in s:
                print(f"{'':<18}{extra}: {s[extra]}")
        if r["status"] != "ok":
            print(f"{'':<18}{r.get('why', '')}")
    print("-" * 100)
    print("outputs:")
    for r in results:
        for name, path in ((r.get("summary") or {}).get("outputs") or {}).items():
            print(f"  {r['stage']}.{name}: {path}")
    print("=" * 100)


def main(argv: list[str] | None = None) -> int:
    p = cfgsys.parser_for("python -m pipelines.demo", __doc__)
    p.add_argument(
        "--output", default="out/demo", help="folder for every stage's outputs (default: out/demo)"
    )
    cfgsys.add_flags(p, DemoConfig, "demo options")
    cfgsys.add_config_args(p)
    try:
        a, cfg, _ = cfgsys.parse(p, DemoConfig, argv)
    except cfgsys.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    from core import storage

    try:
        with storage.OutputLock(str(out)):  # one demo per folder; cleans temp files of killed runs
            return _run_stages(DemoRun(cfg, out))
    except storage.OutputLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children: less disturbed by other load than wall time."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _run_stages(r: DemoRun) -> int:
    out = r.out
    results: list[dict[str, Any]] = []
    failed = False
    for step in STEPS:
        name, module = step.name, step.module
        if failed:
            results.append({"stage": name, "status": "skipped", "why": "an earlier stage failed"})
            continue
        if not _available(module):
            results.append({"stage": name, "status": "absent", "why": f"{module} is not built yet"})
            continue
        print(f"\n>>> stage {name}", flush=True)
        t0, c0 = time.perf_counter(), _cpu_seconds()
        try:
            summary = step.run(r)
            results.append(
                {
                    "stage": name,
                    "status": "ok",
                    "summary": summary,
                    "seconds": time.perf_counter() - t0,
                    "cpu_seconds": round(_cpu_seconds() - c0, 1),
                }
            )
        except Exception as exc:  # noqa: BLE001 - reported in the summary, demo exits non-zero
            import traceback

            traceback.print_exc()
            results.append(
                {"stage": name, "status": "failed", "why": repr(exc), "seconds": time.perf_counter() - t0}
            )
            failed = True
        # Written after every stage, so the report stage already sees the stages before it.
        (out / "demo_summary.json").write_text(json.dumps(results, indent=2, default=str))
        if r.cfg.stop_after == name:
            break
    (out / "demo_summary.json").write_text(json.dumps(results, indent=2, default=str))
    print_summary(results)
    print(f"summary: {out / 'demo_summary.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

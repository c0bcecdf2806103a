"""The demo: generate the embedded corpus and run every stage on it, offline.

    python -m pipelines.demo --output out/demo [--n 1000] [--seed 0] [--train-steps 150] [--runner fnapi]

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

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _available(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return False
        raise


def _stages(args: argparse.Namespace, out: Path) -> list[tuple[str, str, Callable[[], dict[str, Any]]]]:
    """(name, module, thunk) for every stage, in pipeline order."""
    corpus, records, mined = out / "corpus", out / "records", out / "mined"
    clusters, tasks, train = out / "clusters", out / "tasks", out / "train"
    beam = {"runner": args.runner}

    def corpus_stage():
        from mining.demo_corpus import generate

        return generate(str(corpus), n=args.n, seed=args.seed)

    def read_stage():
        from mining.readers import write_records

        return write_records(str(corpus / "pairs.csv"), str(records))

    def mine_stage():
        from pipelines.mine import run

        return run(str(records), str(mined), **beam)

    def cluster_stage():
        from pipelines.build_clusters import run

        return run(str(records), str(clusters), mined=str(mined), **beam)

    def task_stage():
        from pipelines.build_tasks import run

        style_dir = args.style_dir or _demo_styles(mined, out / "styles")
        chosen = args.tasks.split(",") if args.tasks else None
        return run(str(out), str(tasks), seed=args.seed, style_dir=style_dir, tasks=chosen,
                   faces_dir=args.faces_dir, control_side=args.control_side, max_side=args.max_side,
                   max_samples=args.task_samples, **beam)

    def train_stage():
        return train_stages(clusters / "shards", tasks / "shards", train, args)

    def report_stage():
        from pipelines.report import build_report

        return build_report(str(out), str(out / "report"))

    return [
        ("corpus", "mining.demo_corpus", corpus_stage),
        ("read", "mining.readers", read_stage),
        ("mine", "pipelines.mine", mine_stage),
        ("cluster", "pipelines.build_clusters", cluster_stage),
        ("tasks", "pipelines.build_tasks", task_stage),
        ("train", "train", train_stage),
        ("report", "pipelines.report", report_stage),
    ]


def train_stages(cluster_shards: Path, task_shards: Path, train: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Stage 1 on cluster shards, stage 2 on task shards from stage 1's weights, then the SR model.

    A missing shard folder skips its stage with the reason (stage 2 then starts from scratch).
    """
    from core import storage
    from train import demo_run

    out: dict[str, Any] = {"outputs": {}}
    have = {p: p.is_dir() and bool(storage.list_files(str(p), "*.tar")) for p in (cluster_shards, task_shards)}
    s1 = None
    if have[cluster_shards]:
        s1 = demo_run(str(cluster_shards), str(train / "stage1_retrieval"), steps=args.train_steps, seed=args.seed)
        out["stage1"] = {k: s1[k] for k in ("steps", "final_loss", "checkpoint", "samples_png")}
        out["outputs"]["stage1_grid"] = s1["samples_png"]
    else:
        out["stage1"] = {"skipped": f"no cluster shards in {cluster_shards}"}
    shards2 = task_shards if have[task_shards] else cluster_shards
    over = {"train": {"init_from": s1["checkpoint"]}} if s1 else {}
    s2 = demo_run(str(shards2), str(train / "stage2_tasks"), steps=args.stage2_steps, seed=args.seed, overrides=over)
    out["stage2"] = {k: s2[k] for k in ("steps", "final_loss", "checkpoint", "samples_png")}
    out["stage2"]["init_from"] = s1["checkpoint"] if s1 else None
    out["outputs"]["stage2_grid"] = s2["samples_png"]
    if args.sr_steps > 0:
        s3 = demo_run(str(shards2), str(train / "stage3_sr"), steps=args.sr_steps, seed=args.seed, config="tiny_sr")
        out["sr"] = {k: s3[k] for k in ("steps", "final_loss", "checkpoint", "samples_png")}
        out["outputs"]["sr_grid"] = s3["samples_png"]
    out["final_loss"] = s2["final_loss"]
    out["note"] = (f"stage1 loss {out['stage1'].get('final_loss', float('nan')):.4f} -> stage2 loss "
                   f"{s2['final_loss']:.4f}" + (f" -> sr loss {out['sr']['final_loss']:.4f}" if "sr" in out else ""))
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
    print(f"{'stage':<9} {'status':<8} {'read':>7} {'kept':>7}  {'seconds':>7}  rejected (by reason)")
    print("-" * 100)
    for r in results:
        s = r.get("summary") or {}
        print(
            f"{r['stage']:<9} {r['status']:<8} {s.get('read', ''):>7} {s.get('kept', ''):>7}  "
            f"{r.get('seconds', 0):>7.1f}  {_fmt_rejected(s.get('rejected'))}"
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
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output", default="out/demo", help="folder for every stage's outputs")
    p.add_argument("--n", type=int, default=1000, help="image-text pairs in the generated corpus")
    p.add_argument("--seed", type=int, default=0, help="seed for the corpus, task synthesis and training")
    p.add_argument("--train-steps", type=int, default=120, help="stage-1 base-model steps on the cluster shards")
    p.add_argument("--stage2-steps", type=int, default=60, help="stage-2 base-model steps on the task shards")
    p.add_argument("--sr-steps", type=int, default=30, help="super-resolution model steps (0 = skip)")
    p.add_argument("--control-side", type=int, default=64,
                   help="control-map size: the demo cascade's largest model (tiny SR, 64 px)")
    p.add_argument("--max-side", type=int, default=128, help="longer side of images stored in task shards")
    p.add_argument("--task-samples", type=int, default=None,
                   help="task samples in total (default: one per captioned mined pair)")
    p.add_argument("--faces-dir", default=None, help="faces grouped by person (e.g. ../shared/data/celeba_faces)")
    p.add_argument("--runner", default="fnapi", help="Beam runner: fnapi, direct-mp (multi-processing) or portable")
    p.add_argument("--tasks", default=None, help="comma-separated task names to synthesise (default: the mixture's)")
    p.add_argument("--style-dir", default=None, help="style images (default: art-domain pairs kept by mining)")
    p.add_argument("--stop-after", default=None, help="stop after this stage (corpus, read, mine, cluster, tasks, train)")
    args = p.parse_args(argv)

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    from core import storage

    try:
        with storage.OutputLock(str(out)):  # one demo per folder; cleans temp files of killed runs
            return _run_stages(args, out)
    except storage.OutputLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run_stages(args: argparse.Namespace, out: Path) -> int:
    results: list[dict[str, Any]] = []
    failed = False
    for name, module, thunk in _stages(args, out):
        if failed:
            results.append({"stage": name, "status": "skipped", "why": "an earlier stage failed"})
            continue
        if not _available(module):
            results.append({"stage": name, "status": "absent", "why": f"{module} is not built yet"})
            continue
        print(f"\n>>> stage {name}", flush=True)
        t0 = time.perf_counter()
        try:
            summary = thunk()
            results.append({"stage": name, "status": "ok", "summary": summary, "seconds": time.perf_counter() - t0})
        except Exception as exc:  # noqa: BLE001 - reported in the summary, demo exits non-zero
            import traceback

            traceback.print_exc()
            results.append({"stage": name, "status": "failed", "why": repr(exc), "seconds": time.perf_counter() - t0})
            failed = True
        # Written after every stage, so the report stage already sees the stages before it.
        (out / "demo_summary.json").write_text(json.dumps(results, indent=2, default=str))
        if args.stop_after == name:
            break
    (out / "demo_summary.json").write_text(json.dumps(results, indent=2, default=str))
    print_summary(results)
    print(f"summary: {out / 'demo_summary.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

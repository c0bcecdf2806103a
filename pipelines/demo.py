"""The demo: generate the embedded corpus and run every stage on it, offline.

    python -m pipelines.demo --output out/demo [--n 1000] [--seed 0] [--train-steps 200] [--runner fnapi]

Stages run in order; each writes under ``OUTPUT/<stage>/`` and returns a summary (records read,
kept, rejected by reason, output paths). A stage whose module is not installed is reported as
absent rather than silently skipped. Ends with a table of every stage and where its outputs are.
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
        return run(str(out), str(tasks), seed=args.seed, style_dir=style_dir, tasks=chosen, **beam)

    def train_stage():
        from train import demo_run

        shards = tasks / "shards" if (tasks / "shards").exists() else clusters / "shards"
        return demo_run(str(shards), str(train), steps=args.train_steps, seed=args.seed)

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


def _demo_styles(mined: Path, styles: Path, limit: int = 8) -> str | None:
    """Style images for the style tasks: the first ``limit`` art-domain pairs that mining kept."""
    from mining import storage

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
    p.add_argument("--train-steps", type=int, default=150, help="base-model training steps on the demo shards")
    p.add_argument("--runner", default="fnapi", help="Beam runner: fnapi, direct-mp (multi-processing) or portable")
    p.add_argument("--tasks", default=None, help="comma-separated task names to synthesise (default: the mixture's)")
    p.add_argument("--style-dir", default=None, help="style images (default: art-domain pairs kept by mining)")
    p.add_argument("--stop-after", default=None, help="stop after this stage (corpus, read, mine, cluster, tasks, train)")
    args = p.parse_args(argv)

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    from mining import storage

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

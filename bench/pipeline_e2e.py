"""End-to-end benchmark table: every stage's records/s through Beam vs the same work called directly,
and WebDataset shard write/read speed vs the disk's sequential speed, all measured in one run.

    python -m bench.pipeline_e2e [--n 100] [--rounds 1] [--io-mb 256] [--tasks t2i,...] [--work DIR]

1. Generates the demo corpus (``mining.demo_corpus``) and reads it into record shards
   (``mining.readers.write_records``: the read stage has no Beam wrapper, so no overhead figure).
2. For mine, cluster and tasks: runs ``pipelines/<stage>.run(...)`` on FnApiRunner, then the same
   stage done by calling the pure functions the pipeline wraps in one process (same decode, scores,
   embeddings, dedup, clusters, samples and the same files written, summary included), on the same
   input. Overhead = pipeline seconds / direct seconds (issue 7 target: <= 1.3x). Models cached per
   process (mining scorer + domain classifier, EfficientNet/MiniLM features) are warmed up before
   either side is timed; models built per run (task tools: HED, Magenta) are loaded on both sides.
   The outputs of both sides are compared (``same output``). Wall and CPU seconds (this process, all
   threads: FnApiRunner runs in process) are both reported: CPU time is less disturbed by other load.
   ``--rounds N`` alternates which side goes first and keeps each side's fastest run (CPU: of that run).
3. Shard I/O: replicates the task samples up to ``--io-mb`` MB, writes WebDataset shards with
   ``datasets.shards.write_shard`` and reads them back with ``webdataset``; writes and reads the same
   number of bytes as one plain file (8 MiB chunks). Reads are timed twice: page-cached, and after
   ``posix_fadvise(DONTNEED)`` on the fsync'ed files (evicts their clean pages without root).
4. Prints both Markdown tables and writes them as JSON to ``--json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from core import storage

CHUNK = 8 << 20


# ----------------------------------------------------------------------------------------- mine
def mine_direct(records: str, output: str) -> dict[str, Any]:
    """``pipelines.mine`` without Beam: the same ``MineStage`` through ``core.stage.run_local``, one
    input file at a time, written by the same ``mining.run.write_outputs`` (same files, summary)."""
    from core.stage import run_local
    from mining import run as mr
    from mining.config import MiningConfig
    from mining.stage import MineStage

    t0 = time.time()
    cfg = MiningConfig()
    stage = MineStage(cfg)
    for path in mr.input_files(records):
        kept, rejects = run_local(stage, storage.iter_rows(path), cfg.batch_size)
        fp = mr.unit_fingerprint(path, cfg.to_json())
        values = [("kept", r) for r in kept] + [("reject", r) for r in rejects] + [("marker", fp)]
        mr.write_outputs(output, path, values)
    return mr.summarize(records, output, {}, time.time() - t0, cfg)


# -------------------------------------------------------------------------------------- cluster
def cluster_direct(mined: str, output: str) -> dict[str, Any]:
    """``pipelines.build_clusters`` without Beam, with its defaults: ``clustering.local.cluster_local``
    runs the same clustering functions as the Beam graph (embed, exact dedup, cross-domain pass,
    k-means, kNN + dedup + 5-pair clusters, Parquet outputs, cluster shards, summary)."""
    from clustering.local import cluster_local

    return cluster_local(mined, output)


# ---------------------------------------------------------------------------------------- tasks
def tasks_direct(
    input: str,
    output: str,
    style_dir: str | None,
    seed: int = 0,
    tasks: list[str] | None = None,
) -> dict[str, Any]:
    """``pipelines.build_tasks`` without Beam: ``datasets.local.build_tasks_local`` runs the same launcher
    steps and ``TaskStage`` in this process (plan, join images by key, synthesise, shards, card)."""
    from datasets.local import build_tasks_local

    return build_tasks_local(input, output, seed=seed, style_dir=style_dir, tasks=tasks)


# ------------------------------------------------------------------------------- output checks
def _digest(paths: list[str], columns: list[str] | None = None) -> str:
    """sha1 over files' bytes (``columns`` None) or over their Parquet rows restricted to ``columns``."""
    h = hashlib.sha1()
    for p in paths:
        if columns is None:
            h.update(storage.read_bytes(p))
        else:
            t = storage.read_parquet(p)
            h.update(json.dumps(t.select([c for c in columns if c in t.column_names]).to_pylist(),
                                sort_keys=True, default=str).encode())
    return h.hexdigest()


def same_output(stage: str, a: str, b: str) -> bool:
    """Do the pipeline (``a``) and direct (``b``) outputs of ``stage`` hold the same data?"""
    def rel(root: str, sub: str, pat: str) -> list[str]:
        return (
            storage.list_files(storage.join(root, sub), pat)
            if storage.exists(storage.join(root, sub))
            else []
        )

    if stage == "mine":
        return all(
            _digest(rel(a, s, "*.parquet")) == _digest(rel(b, s, "*.parquet")) for s in ("kept", "rejects")
        )
    if stage == "cluster":
        cols = {"clusters.parquet": None, "duplicates.parquet": None}
        same = all(
            _digest([storage.join(a, f)], c) == _digest([storage.join(b, f)], c) for f, c in cols.items()
        )
        return same and _digest(rel(a, "shards", "*.tar")) == _digest(rel(b, "shards", "*.tar"))
    if stage == "tasks":
        return _digest(rel(a, "shards", "*.tar")) == _digest(rel(b, "shards", "*.tar"))
    return True


# -------------------------------------------------------------------------------------- shard I/O
def _drop_cache(paths: list[str]) -> None:
    """Evict the (clean, fsync'ed) pages of ``paths`` from the page cache; no root needed."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _fsync(paths: list[str]) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_shards(paths: list[str]) -> tuple[int, int]:
    from datasets.shards import iter_raw

    n = nbytes = 0
    for raw in iter_raw(paths):
        n += 1
        nbytes += sum(len(v) for k, v in raw.items() if isinstance(v, bytes))
    return n, nbytes


def _read_plain(path: str) -> int:
    n = 0
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(CHUNK):
            n += len(chunk)
    return n


def shard_io(task_shards: str, work: Path, target_mb: float, shard_mb: float) -> list[dict[str, Any]]:
    """Shard write/read MB/s with the project's writer + webdataset vs plain sequential file I/O."""
    from datasets.shards import iter_samples, list_shards, shard_path, tar_bytes, write_shard

    base = list(iter_samples(list_shards(task_shards)))
    if not base:
        raise RuntimeError(f"no task samples under {task_shards} for the shard I/O benchmark")
    per = len(tar_bytes(base)) / len(base)
    total = max(len(base), int(target_mb * 1e6 / per))
    per_shard = max(1, int(shard_mb * 1e6 / per))
    samples = [
        dataclasses.replace(base[i % len(base)], meta=dict(base[i % len(base)].meta, replica=i // len(base)))
        for i in range(total)
    ]
    folder = work / "io_shards"
    shutil.rmtree(folder, ignore_errors=True)
    paths = [shard_path(str(folder), i) for i in range(math.ceil(total / per_shard))]
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        write_shard(p, samples[i * per_shard:(i + 1) * per_shard])
    t_write = time.perf_counter() - t0
    _fsync(paths)
    t_write_sync = time.perf_counter() - t0
    nbytes = sum(os.path.getsize(p) for p in paths)
    del samples
    t0 = time.perf_counter()
    n_read, _ = _read_shards(paths)
    t_read_cached = time.perf_counter() - t0
    _drop_cache(paths)
    t0 = time.perf_counter()
    _read_shards(paths)
    t_read_cold = time.perf_counter() - t0
    if n_read != total:
        raise AssertionError(f"read {n_read} samples back, wrote {total}")

    plain = str(work / "io_plain.bin")
    block = os.urandom(CHUNK)  # incompressible, like JPEG bytes
    t0 = time.perf_counter()
    with open(plain, "wb", buffering=0) as fh:
        left = nbytes
        while left > 0:
            left -= fh.write(block[:min(left, CHUNK)])
        p_write = time.perf_counter() - t0
        os.fsync(fh.fileno())
    p_write_sync = time.perf_counter() - t0
    t0 = time.perf_counter()
    _read_plain(plain)
    p_read_cached = time.perf_counter() - t0
    _drop_cache([plain])
    t0 = time.perf_counter()
    _read_plain(plain)
    p_read_cold = time.perf_counter() - t0
    os.remove(plain)
    shutil.rmtree(folder, ignore_errors=True)
    mb = nbytes / 1e6

    def row(op: str, shard_s: float, plain_s: float) -> dict[str, Any]:
        return {"op": op, "MB": round(mb, 1), "shards": len(paths), "samples": total,
                "shard_s": round(shard_s, 3), "plain_s": round(plain_s, 3),
                "shard_MBps": round(mb / shard_s, 1), "disk_MBps": round(mb / plain_s, 1),
                "ratio": round(plain_s / shard_s, 3)}

    return [row("write (page cache)", t_write, p_write), row("write + fsync", t_write_sync, p_write_sync),
            row("read, page-cached", t_read_cached, p_read_cached),
            row("read, evicted (fadvise)", t_read_cold, p_read_cold)]


# ------------------------------------------------------------------------------------------ main
def _warm_up(records: str) -> None:
    """Load the per-process cached models (mining scorer/classifier, offline embedder features) once."""
    from clustering.embedders import make_embedder
    from core.decode import Decoded, decode_record
    from mining.config import MiningConfig
    from mining.stage import load_models

    rows = [r for r in storage.iter_rows(records) if not r.get("read_error")][:2]
    images = [d.image for d in map(decode_record, rows) if isinstance(d, Decoded)]
    cfg = MiningConfig.from_dict({})
    scorer, classifier = load_models(cfg)
    scorer.score(images)
    classifier.probs(images, [r["caption"] for r in rows[:len(images)]])
    emb = make_embedder("offline")
    emb.embed_images(images)
    emb.embed_texts(["warm up"])


def markdown(stages: list[dict[str, Any]], io_rows: list[dict[str, Any]]) -> str:
    lines = ["| stage | records | direct s | pipeline s | records/s direct | records/s pipeline | overhead x "
             "| overhead x (CPU s) | same output |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in stages:
        na = s.get("pipeline_s") is None
        pipe_s, pipe_rps, over, over_cpu = ("n/a",) * 4 if na else (
            f"{s['pipeline_s']:.2f}", f"{s['pipeline_rps']:.1f}", f"{s['overhead']:.2f}",
            f"{s['overhead_cpu']:.2f} ({s['pipeline_cpu_s']:.1f} / {s['direct_cpu_s']:.1f})")
        lines.append(
            f"| {s['stage']} | {s['records']} | {s['direct_s']:.2f} | {pipe_s} | {s['direct_rps']:.1f} | "
            f"{pipe_rps} | {over} | {over_cpu} | {s['same_output']} |"
        )
    if io_rows:
        lines += [
            "",
            "| shard I/O | MB | shards | shard s | plain file s | shard MB/s | disk MB/s | shard / disk |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in io_rows:
            lines.append(
                f"| {r['op']} | {r['MB']} | {r['shards']} | {r['shard_s']:.2f} | {r['plain_s']:.2f} | "
                f"{r['shard_MBps']} | {r['disk_MBps']} | {r['ratio']:.2f} |"
            )
    return "\n".join(lines)


def _timed(fn, *a, **k) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process: all its threads, FnApiRunner's included)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*a, **k)
    return out, time.perf_counter() - t0, time.process_time() - c0


def run(n: int = 100, seed: int = 0, work: str = "out/bench/pipeline_e2e", io_mb: float = 256.0,
        shard_mb: float = 32.0, target: float = 1.3, tasks: list[str] | None = None, rounds: int = 1
        ) -> dict[str, Any]:
    """Run every measurement; returns {"stages": [...], "io": [...], "markdown": str}."""
    from mining.demo_corpus import generate
    from mining.readers import write_records
    from pipelines.build_clusters import run as cluster_pipeline
    from pipelines.build_tasks import run as tasks_pipeline
    from pipelines.demo import _demo_styles
    from pipelines.mine import run as mine_pipeline

    root = Path(work).resolve()
    shutil.rmtree(root / "pipe", ignore_errors=True)
    shutil.rmtree(root / "direct", ignore_errors=True)
    pipe, direct = root / "pipe", root / "direct"
    corpus = root / "corpus"
    gen, t_gen, _ = _timed(generate, str(corpus), n=n, seed=seed)
    print(
        f"corpus: {gen['rows']} pairs in {t_gen:.1f}s{' (reused)' if gen.get('skipped') else ''}", flush=True
    )
    read, t_read, c_read = _timed(write_records, str(corpus / "pairs.csv"), str(pipe / "records"))
    records = str(pipe / "records")
    stages = [{"stage": "read", "records": read["read"], "direct_s": t_read, "pipeline_s": None,
               "direct_cpu_s": c_read,
               "note": "mining.readers.write_records (no Beam wrapper)"}]
    _warm_up(records)
    mined = str(pipe / "mined")

    def measure(name, pipeline_thunk, direct_thunk, out_a, out_b):
        sides = {"pipeline": (pipeline_thunk, out_a), "direct": (direct_thunk, out_b)}
        best: dict[str, tuple[float, float]] = {}
        summaries: dict[str, dict] = {}
        for r in range(rounds):  # alternate which side goes first; keep each side's fastest round
            for side in (("pipeline", "direct") if r % 2 == 0 else ("direct", "pipeline")):
                thunk, out = sides[side]
                shutil.rmtree(out, ignore_errors=True)  # else finished shards would be skipped
                print(f"{name}: {side} (round {r + 1}/{rounds}) ...", flush=True)
                summaries[side], wall, cpu = _timed(thunk)
                print(f"{name}: {side} {wall:.1f}s wall, {cpu:.1f}s CPU", flush=True)
                best[side] = min(best.get(side, (wall, cpu)), (wall, cpu))
        s_pipe, s_dir = summaries["pipeline"], summaries["direct"]
        if s_pipe["read"] != s_dir["read"] or s_pipe["kept"] != s_dir["kept"]:
            print(f"WARNING {name}: read/kept differ: pipeline {s_pipe['read']}/{s_pipe['kept']}, "
                  f"direct {s_dir['read']}/{s_dir['kept']}")
        stages.append({"stage": name, "records": s_pipe["read"], "kept": s_pipe["kept"],
                       "direct_s": best["direct"][0], "pipeline_s": best["pipeline"][0],
                       "direct_cpu_s": best["direct"][1], "pipeline_cpu_s": best["pipeline"][1],
                       "same_output": same_output(name, out_a, out_b)})

    measure("mine", lambda: mine_pipeline(records, mined, runner="fnapi"),
            lambda: mine_direct(records, str(direct / "mined")), mined, str(direct / "mined"))
    clusters = str(pipe / "clusters")
    measure("cluster", lambda: cluster_pipeline(records, clusters, mined=mined, runner="fnapi"),
            lambda: cluster_direct(mined, str(direct / "clusters")), clusters, str(direct / "clusters"))
    style_dir = _demo_styles(Path(mined), root / "styles")
    measure("tasks", lambda: tasks_pipeline(str(pipe), str(pipe / "tasks"), seed=seed, style_dir=style_dir,
                                            tasks=tasks),
            lambda: tasks_direct(str(pipe), str(direct / "tasks"), style_dir, seed=seed, tasks=tasks),
            str(pipe / "tasks"), str(direct / "tasks"))
    for s in stages:
        s["direct_rps"] = s["records"] / s["direct_s"]
        if s["pipeline_s"] is not None:
            s["pipeline_rps"] = s["records"] / s["pipeline_s"]
            s["overhead"] = s["pipeline_s"] / s["direct_s"]
            s["overhead_cpu"] = s["pipeline_cpu_s"] / s["direct_cpu_s"]
            s["meets_target"] = s["overhead"] <= target
        else:
            s["same_output"] = "n/a"
    from datasets.shards import list_shards

    if io_mb > 0 and not list_shards(str(pipe / "tasks" / "shards")):
        raise SystemExit(
            f"the task stage wrote no shards (mining kept {stages[1].get('kept')} of {n} records): "
            "use a larger --n for the shard I/O test, or --io-mb 0"
        )
    io_rows = shard_io(str(pipe / "tasks" / "shards"), root, io_mb, shard_mb) if io_mb > 0 else []
    return {"n": n, "seed": seed, "tasks": tasks or "mixture", "rounds": rounds, "target_overhead": target,
            "corpus_s": t_gen, "stages": stages, "io": io_rows,
            "markdown": markdown(stages, io_rows)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="image-text pairs in the generated demo corpus")
    ap.add_argument("--seed", type=int, default=0, help="corpus and task-synthesis seed")
    ap.add_argument(
        "--work", default="out/bench/pipeline_e2e", help="working folder (corpus, pipe/, direct/, shards)"
    )
    ap.add_argument(
        "--io-mb", type=float, default=256.0, help="MB of WebDataset shards for the I/O test (0: skip)"
    )
    ap.add_argument("--shard-mb", type=float, default=32.0, help="approximate MB per shard in the I/O test")
    ap.add_argument("--target", type=float, default=1.3, help="overhead target (pipeline / direct)")
    ap.add_argument(
        "--tasks", default=None, help="comma-separated task subset for both sides; None: the mixture's tasks"
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="timed runs per side and stage, alternating which side goes first; the fastest is kept",
    )
    ap.add_argument(
        "--json", default="out/bench/pipeline_e2e.json", help="where the results are written as JSON"
    )
    args = ap.parse_args(argv)
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "NO_ALBUMENTATIONS_UPDATE"):
        os.environ.setdefault(k, "1")
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    res = run(args.n, args.seed, args.work, args.io_mb, args.shard_mb, args.target,
              args.tasks.split(",") if args.tasks else None, args.rounds)
    print("\n" + res["markdown"])
    over = [f"{s['stage']} {s['overhead']:.2f}x" for s in res["stages"] if s.get("meets_target") is False]
    print(
        f"\noverhead target <= {args.target}x: "
        + ("met by every stage" if not over else "missed by " + ", ".join(over))
    )
    storage.atomic_write_bytes(
        str(Path(args.json).resolve()), json.dumps(res, indent=2, default=str).encode()
    )
    print(f"json: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Peak memory of task planning: the one-process planner (what the launcher held before planning moved
into the graph) against the graph planner's pieces, side by side, each step in its own process.

    nice -n 10 .venv/bin/python -m bench.task_plan_memory --rows 200000 1000000 --work /tmp/planmem

Synthetic mined rows (light columns only: key, url, caption, quality, domain; no image bytes), in
files of ``--rows-per-file``. Steps:

- ``launcher``: ``datasets.build.load_light_rows`` + ``make_plan`` over all rows (the old launcher);
- ``counts``: one combiner's work in pass 1: every row's candidates (``plan_parts.row_candidates``)
  streamed into the (task, rank bucket) counter (what ``CombineGlobally`` accumulates), then the
  launcher's ``plan_counts`` + ``cuts`` on it;
- ``file``: one worker's share of a pass: one mined file's light rows and their candidates;
- ``bucket``: the largest sort: one task's cut bucket at 1B candidates of that task (15,258 jobs).

Prints each peak above the interpreter's own (MiB) and the seconds.

    nice -n 10 .venv/bin/python -m bench.task_plan_memory --stage --rows 100000 --work /tmp/planmem

``--stage``: the whole tasks stage on the same rows (each with one tiny JPEG), ``--tasks t2i,control_mask``
and ``--max-samples 64``, so planning over every row dominates: the local path (one-process planner)
against ``pipelines.build_tasks.run`` on FnApiRunner (graph planner), each in its own process; prints
peak RSS, wall and CPU seconds, and whether every output file but the summary is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _peak_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def write_rows(work: str, n: int, per_file: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = os.path.join(work, f"rows-{n}", "mined", "kept")
    os.makedirs(folder, exist_ok=True)
    files = []
    for s in range(0, n, per_file):
        path = os.path.join(folder, f"part-{s // per_file:05d}.parquet")
        files.append(path)
        if os.path.exists(path):
            continue
        idx = range(s, min(n, s + per_file))
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (120, 90, 60)).save(buf, "JPEG")
        table = pa.table({
            "image": [buf.getvalue() for _ in idx],
            "key": [f"{i:012x}" for i in idx],
            "url": [f"https://example.com/img/{i}.jpg" for i in idx],
            "caption": [f"a photo of object number {i} on a wooden table" for i in idx],
            "quality": [0.5 + (i % 50) / 100 for i in idx],
            "domain": ["products" for _ in idx],
        })
        pq.write_table(table, path + ".tmp")
        os.replace(path + ".tmp", path)
    return files


def step(args) -> None:
    from datasets import build
    from datasets import plan_parts as P
    from datasets.mixture import load_config, plan_counts
    from datasets.tasks.base import Job, PlanInputs

    files = sorted(os.path.join(args.folder, f) for f in os.listdir(args.folder))
    base = _peak_mib()
    t0 = time.perf_counter()
    config = load_config(None)
    styles = [{"key": "s1", "path": "s1.jpg", "style": "watercolor"}]
    info: dict = {}
    if args.step == "launcher":
        rows = build.load_light_rows(files)
        plan = build.make_plan(PlanInputs(rows=rows, styles=styles), config, 0, None)
        info = {"jobs": len(plan.jobs)}
    elif args.step in ("counts", "file"):
        from collections import Counter

        counter: Counter = Counter()
        pairs = 0
        for f in files if args.step == "counts" else files[:1]:
            rows = list(build.iter_light_rows(f)) if args.step == "file" else build.iter_light_rows(f)
            for r in rows:
                pairs += 1
                for j in P.row_candidates(r["key"], r, 0, styles, False, None):
                    counter[(j.task, P.bucket(P.job_rank(0, j)))] += 1
        hist: dict = {}
        for (t, b), n in counter.items():
            hist.setdefault(t, {})[b] = n
        plan = plan_counts({t: sum(h.values()) for t, h in hist.items()}, config, None, {}, pairs)
        info = {"cuts": len(P.cuts(plan.counts, hist)), "counter_keys": len(counter)}
    elif args.step == "bucket":
        n = max(1, 10**9 // (16 ** P.BUCKET_HEX))  # at 1B candidates of one task, whatever --rows is
        jobs = [Job("t2i", f"{i:012x}", values={"caption": f"a photo of object number {i}"})
                for i in range(n)]
        info = {"bucket_jobs": len(P.smallest(0, jobs, n // 2))}
    print(json.dumps({"peak_mib": round(_peak_mib() - base, 1), "seconds": round(time.perf_counter() - t0, 1),
                      **info}))


def stage_step(args) -> None:
    import resource

    from datasets.local import build_tasks_local
    from pipelines.build_tasks import run

    run_dir = os.path.dirname(os.path.dirname(args.folder))
    opts = dict(seed=0, max_samples=64, tasks=["t2i", "control_mask"], max_side=64)
    t0 = time.perf_counter()
    fn = build_tasks_local if args.step == "stage-local" else run
    s = fn(run_dir, args.out, **opts)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"peak_mib": round(_peak_mib(), 1), "wall_s": round(time.perf_counter() - t0, 1),
                      "cpu_s": round(ru.ru_utime + ru.ru_stime, 1), "read": s["read"], "kept": s["kept"],
                      "samples": sum(s["samples"].values())}))


def stage_bench(args) -> None:
    import hashlib

    def digests(folder):
        out = {}
        for dp, _, fs in os.walk(folder):
            for f in fs:
                rel = os.path.relpath(os.path.join(dp, f), folder)
                if rel != "summary.json" and not rel.startswith("plan.parts"):
                    out[rel] = hashlib.sha256(open(os.path.join(dp, f), "rb").read()).hexdigest()
        return out

    for n in args.rows:
        folder = os.path.dirname(write_rows(args.work, n, args.rows_per_file)[0])
        res, outs = {}, {}
        for name in ("stage-local", "stage-graph"):
            outs[name] = os.path.join(args.work, f"out-{name}-{n}")
            subprocess.run(["rm", "-rf", outs[name]], check=True)
            cmd = [sys.executable, "-m", "bench.task_plan_memory", "--step", name, "--folder", folder,
                   "--rows", str(n), "--out", outs[name]]
            r = subprocess.run(cmd, capture_output=True, text=True, check=True)
            res[name] = json.loads(r.stdout.strip().splitlines()[-1])
            print(n, name, res[name], file=sys.stderr, flush=True)
        same = digests(outs["stage-local"]) == digests(outs["stage-graph"])
        print(f"| {n:,} | local (one-process planner) | {res['stage-local']['peak_mib']:,.0f} MiB | "
              f"{res['stage-local']['wall_s']} s | {res['stage-local']['cpu_s']} s |")
        print(f"| {n:,} | FnApiRunner (graph planner) | {res['stage-graph']['peak_mib']:,.0f} MiB | "
              f"{res['stage-graph']['wall_s']} s | {res['stage-graph']['cpu_s']} s | same bytes: {same}")


def bench(args) -> list[dict]:
    out = []
    for n in args.rows:
        files = write_rows(args.work, n, args.rows_per_file)
        folder = os.path.dirname(files[0])
        row = {"rows": n, "files": len(files)}
        for name in ("launcher", "counts", "file", "bucket"):
            cmd = [sys.executable, "-m", "bench.task_plan_memory", "--step", name, "--folder", folder,
                   "--rows", str(n)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row[name] = json.loads(res.stdout.strip().splitlines()[-1])
            print(n, name, row[name], file=sys.stderr, flush=True)
        out.append(row)
    print("| rows | files | one-process planner (old launcher) | pass-1 counter + allocation "
          "| one file's rows | one cut bucket sort (1B) |")
    print("|---|---|---|---|---|---|")
    for r in out:
        cells = [f"{r[k]['peak_mib']:,.1f} MiB, {r[k]['seconds']} s"
                 for k in ("launcher", "counts", "file", "bucket")]
        print(f"| {r['rows']:,} | {r['files']} | " + " | ".join(cells) + " |")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[200000])
    ap.add_argument("--rows-per-file", type=int, default=50000)
    ap.add_argument("--work", default="/tmp/task_plan_memory")
    ap.add_argument("--step", default=None,
                    choices=("launcher", "counts", "file", "bucket", "stage-local", "stage-graph"))
    ap.add_argument("--folder", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--stage", action="store_true", help="the whole tasks stage, local vs graph planner")
    args = ap.parse_args(argv)
    if args.step:
        args.rows = args.rows[0]
        (stage_step if args.step.startswith("stage") else step)(args)
    elif args.stage:
        stage_bench(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()

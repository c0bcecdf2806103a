"""Peak memory per stage of ``python -m pipelines.build_clusters`` (read, mine, cluster), and of the
clustering logic alone on synthetic embeddings at larger n.

    nice -n 10 .venv/bin/python -m bench.clustering_memory photos --csv PAIRS.csv --work out/bench/mem
    nice -n 10 .venv/bin/python -m bench.clustering_memory synthetic --n 1000 [--dim 1280]
    nice -n 10 .venv/bin/python -m bench.clustering_memory tables --rows 200000 1000000 --work /tmp/mem

``photos``: each stage runs in its own process (``/usr/bin/time``-free: ``resource`` of the child),
so every peak is that stage's alone. ``synthetic``: the points a Beam worker holds (embedding,
32x32 thumbnail, hashes), global k-means groups of ``--target-group``, then ``cluster_group`` per
group, in one process; prints the peak RSS and the bytes per point. ``tables``: synthetic
``clusters.parquet`` rows, side by side, each step in its own process: the old gather-and-write (one
worker holds every row: ``ToList`` + ``steps.write_rows``), one part worker of the sharded write (its
part's rows: ``core.tables.write_part``), and the launcher's k-way merge of all parts
(``core.tables.merge``); prints each peak above the interpreter's own and whether the merged file has
the old file's bytes (or, beyond one row group, its rows).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def photos(args) -> dict:
    py = sys.executable
    w = args.work.rstrip("/")
    stages = {
        "read": [py, "-m", "mining.readers", "--input", args.csv, "--output", f"{w}/records"],
        "mine": [py, "-m", "pipelines.mine", "--input", f"{w}/records", "--output", f"{w}/mined"],
        "cluster": [py, "-m", "pipelines.build_clusters", "--mined", f"{w}/mined",
                    "--output", f"{w}/clusters"],
    }
    out = {}
    for name, cmd in stages.items():
        # one process per stage: ru_maxrss of RUSAGE_CHILDREN is the max over children, so run each in a
        # fresh interpreter that reports its own child's peak
        code = ("import resource,subprocess,sys,json;r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,"
                "stderr=subprocess.DEVNULL).returncode;print(json.dumps([resource.getrusage("
                "resource.RUSAGE_CHILDREN).ru_maxrss/1024,r]))")
        t0 = time.perf_counter()
        res = subprocess.run([py, "-c", code, *cmd], capture_output=True, text=True)
        peak, rc = json.loads(res.stdout.strip().splitlines()[-1])
        out[name] = {"peak_mib": round(peak, 1), "seconds": round(time.perf_counter() - t0, 1), "rc": rc}
        print(name, out[name], flush=True)
    return out


def synthetic(args) -> dict:
    import numpy as np

    from clustering.build import ClusterConfig, cluster_group
    from clustering.kmeans import assign, num_centroids, train_centroids

    rng = np.random.default_rng(0)
    n, d = args.n, args.dim
    centres = rng.standard_normal((max(1, n // 5), d)).astype(np.float32)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    pts = []
    for i in range(n):
        v = centres[i // 5] + 0.6 * rng.standard_normal(d).astype(np.float32)
        pts.append(
            {
                "key": f"k{i:08d}",
                "url": f"u{i}",
                "domain": "all",
                "quality": None,
                "caption_hash": None,
                "phash": int(rng.integers(-(2**62), 2**62)),
                "phash_flip": int(rng.integers(-(2**62), 2**62)),
                "thumb": rng.integers(0, 255, 3072, dtype=np.uint8).tobytes(),
                "embedding": (v / np.linalg.norm(v)).astype(np.float32),
            }
        )
    held = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    x = np.stack([p["embedding"] for p in pts])
    k = num_centroids(n, args.target_group)
    labels = (
        np.zeros(n, np.int64)
        if k == 1
        else assign(x, train_centroids(x[rng.choice(n, min(n, 64 * k), replace=False)], k))
    )
    del x
    t0 = time.perf_counter()
    kept = 0
    cfg = ClusterConfig(reciprocal=5)
    for g in range(k):
        members = [pts[i] for i in np.nonzero(labels == g)[0]]
        clusters, _, _ = cluster_group(members, None, cfg)
        kept += len(clusters)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out = {"n": n, "dim": d, "groups": k, "clusters": kept, "baseline_mib": round(base, 1),
           "points_held_mib": round(held - base, 1), "bytes_per_point": round((held - base) * 2**20 / n),
           "peak_mib": round(peak, 1), "cluster_seconds": round(time.perf_counter() - t0, 1)}
    print("RESULT", json.dumps(out), flush=True)
    return out


def _cluster_row(i: int) -> dict:
    """A synthetic clusters.parquet row: 5 member keys and URLs, similarities, an id in hash order."""
    import hashlib

    h = hashlib.sha1(str(i).encode()).hexdigest()
    keys = [h[j * 4:j * 4 + 20] for j in range(5)]
    return {"cluster_id": f"all-{h[:16]}", "domain": "all", "keys": keys,
            "urls": [f"https://images.example.com/photos/{k}.jpg" for k in keys],
            "similarities": [1.0, 0.9, 0.85, 0.8, 0.75], "coherence": 0.5, "coherent": True}


def _peak_mib() -> float:
    """This process image's peak RSS (VmHWM: reset by exec, unlike ru_maxrss, which a child started by
    subprocess inherits from its parent's size at fork)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def tables_step(args) -> None:
    """One measured step in this process (``tables`` runs each in a fresh interpreter)."""
    from clustering import steps
    from core import tables
    from core.contracts import CLUSTER_SCHEMA

    n, work = args.n, args.work.rstrip("/")
    count = tables.part_count(n, args.rows_per_shard)
    path = f"{work}/new/clusters.parquet"
    base = _peak_mib()
    if args.step == "gather":  # ToList onto one worker, then the old writer
        steps.write_rows([_cluster_row(i) for i in range(n)], f"{work}/old/clusters.parquet", CLUSTER_SCHEMA,
                         "cluster_id")
    elif args.step == "parts":  # not measured: every part, for the merge
        buckets: list[list[dict]] = [[] for _ in range(count)]
        for i in range(n):
            r = _cluster_row(i)
            buckets[tables.part_index(r["cluster_id"], count)].append(r)
        for j, rows in enumerate(buckets):
            tables.write_part(rows, path, j, count, CLUSTER_SCHEMA)
    elif args.step == "part":  # one part worker: the GroupByKey's rows of part 0, sorted and written
        rows = [r for r in map(_cluster_row, range(n)) if tables.part_index(r["cluster_id"], count) == 0]
        tables.write_part(rows, f"{work}/one/clusters.parquet", 0, count, CLUSTER_SCHEMA)
    else:
        tables.merge(path, CLUSTER_SCHEMA, args.row_group_rows)
    print("RESULT", json.dumps({"step": args.step, "held_mib": round(_peak_mib() - base, 1),
                                "peak_mib": round(_peak_mib(), 1), "parts": count}), flush=True)


def tables_bench(args) -> list[dict]:
    import pyarrow.parquet as pq

    out = []
    for n in args.rows:
        work = f"{args.work.rstrip('/')}/n{n}"
        got = {}
        for step in ("gather", "parts", "part", "merge"):
            cmd = [sys.executable, "-m", "bench.clustering_memory", "tables-step", "--step", step,
                   "--n", str(n), "--work", work, "--rows-per-shard", str(args.rows_per_shard),
                   "--row-group-rows", str(args.row_group_rows)]
            t0 = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")][-1]
            got[step] = dict(json.loads(line[7:]), seconds=round(time.perf_counter() - t0, 1))
        old, new = f"{work}/old/clusters.parquet", f"{work}/new/clusters.parquet"
        same_bytes = open(old, "rb").read() == open(new, "rb").read()
        row = {"rows": n, "parts": got["merge"]["parts"], "gather_mib": got["gather"]["held_mib"],
               "part_worker_mib": got["part"]["held_mib"], "merge_mib": got["merge"]["held_mib"],
               "gather_over_part": round(got["gather"]["held_mib"] / max(got["part"]["held_mib"], 0.1), 1),
               "gather_over_merge": round(got["gather"]["held_mib"] / max(got["merge"]["held_mib"], 0.1), 1),
               "same_bytes": same_bytes,
               "same_rows": same_bytes or pq.read_table(old).equals(pq.read_table(new)),
               "seconds": {k: v["seconds"] for k, v in got.items()}}
        print("RESULT", json.dumps(row), flush=True)
        out.append(row)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.clustering_memory", description=__doc__)
    sub = ap.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("photos")
    a.add_argument("--csv", required=True)
    a.add_argument("--work", required=True)
    b = sub.add_parser("synthetic")
    b.add_argument("--n", type=int, default=1000)
    b.add_argument("--dim", type=int, default=1280)
    b.add_argument("--target-group", type=int, default=4000)
    t = sub.add_parser("tables")
    t.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    t.add_argument("--work", required=True)
    ts = sub.add_parser("tables-step")
    ts.add_argument("--step", choices=("gather", "parts", "part", "merge"), required=True)
    ts.add_argument("--n", type=int, required=True)
    ts.add_argument("--work", required=True)
    for p in (t, ts):
        p.add_argument("--rows-per-shard", type=int, default=200_000)
        p.add_argument("--row-group-rows", type=int, default=131072)
    args = ap.parse_args(argv)
    modes = {"photos": photos, "synthetic": synthetic, "tables": tables_bench, "tables-step": tables_step}
    return modes[args.mode](args)


if __name__ == "__main__":
    main()

"""Peak memory per stage of ``python -m pipelines.build_clusters`` (read, mine, cluster), and of the
clustering logic alone on synthetic embeddings at larger n.

    nice -n 10 .venv/bin/python -m bench.clustering_memory photos --csv PAIRS.csv --work out/bench/mem
    nice -n 10 .venv/bin/python -m bench.clustering_memory synthetic --n 1000 [--dim 1280]

``photos``: each stage runs in its own process (``/usr/bin/time``-free: ``resource`` of the child),
so every peak is that stage's alone. ``synthetic``: the points a Beam worker holds (embedding,
32x32 thumbnail, hashes), global k-means groups of ``--target-group``, then ``cluster_group`` per
group, in one process; prints the peak RSS and the bytes per point.
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
    args = ap.parse_args(argv)
    return photos(args) if args.mode == "photos" else synthetic(args)


if __name__ == "__main__":
    main()

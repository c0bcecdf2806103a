"""Clustering + dedup at scale on synthetic clustered vectors, beside a FLOP bound and a
SemDeDup-style reference.

    python -m bench.clustering_scale --n 1000000     (default 200000 under `make bench`)

Ours: faiss k-means on a sample, bf16 assignment with exact re-check, then per group
``clustering.knn.close_pairs`` (second-level k-means lists with a provable spill margin, bf16
tiles, exact float32 re-check of every pair near the threshold, top-10 neighbours from the
same tiles) and the SemDeDup order rule; groups run in ``--workers`` forked processes, one torch thread each.
Reference (SemDeDup as published, plain float32): same k-means, exact float32 assignment, then
per k-means cluster the full normalised similarity matrix (numpy, default BLAS threads), upper
triangle, column max >= threshold = duplicate (an item goes when any earlier item is that close).
Both rank points by index, so they must keep the same set. Prints times, the FLOP bound
(the reference's FLOPs / GEMM speeds measured in this run), our own FLOPs, peak RSS, the
kept-set difference and the top-10 neighbour recall against exact search on sampled groups.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time

import numpy as np
from tqdm import tqdm

from clustering.kmeans import assign, num_centroids, sample_size, train_centroids
from clustering.knn import bf16_available, close_pairs, earlier_duplicates, knn


def synth(n: int, d: int, dup_frac: float, seed: int, chunk: int = 100_000) -> np.ndarray:
    """Unit vectors around n/500 topics (within-topic cosine ~0.5); ``dup_frac`` are near-copies
    (cos > 0.99)."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((max(1, n // 500), d)).astype(np.float32)
    x = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        t = rng.integers(0, len(topics), e - s)
        x[s:e] = topics[t] + rng.standard_normal((e - s, d), dtype=np.float32)
        x[s:e] /= np.linalg.norm(x[s:e], axis=1, keepdims=True)  # per chunk: no n x d temporary
    m = int(n * dup_frac)
    dst = np.sort(rng.choice(np.arange(1, n), m, replace=False))
    src = (rng.random(m) * dst).astype(np.int64)  # an earlier point (may itself be a copy)
    for s in range(0, m, chunk):
        sl = slice(s, s + chunk)
        y = x[src[sl]] + 0.05 * rng.standard_normal((len(dst[sl]), d), dtype=np.float32) / np.sqrt(d)
        x[dst[sl]] = y / np.linalg.norm(y, axis=1, keepdims=True)
    return x


def gemm_speed(dtype: str, size: int = 4096, d: int = 512, reps: int = 3) -> float:
    """Measured GFLOP/s of a (size,d)x(d,size) matrix multiply (fp32: best of numpy and torch)."""
    import torch

    a = torch.randn(size, d, generator=torch.Generator().manual_seed(0))
    cands = [a.to(torch.bfloat16)] if dtype == "bf16" else [a, a.numpy()]
    best = 0.0
    for m in cands:
        m @ m.T
        t = time.perf_counter()
        for _ in range(reps):
            m @ m.T
        best = max(best, 2 * size * size * d * reps / (time.perf_counter() - t) / 1e9)
    return best


def groups_of(labels: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(labels, kind="stable")
    cuts = np.flatnonzero(np.diff(labels[order])) + 1
    return np.split(order, cuts)


def dedup_group(x: np.ndarray, g: np.ndarray, thr: float, k: int, seed: int) -> tuple:
    """Our dedup of one group (rows ``g`` ascending = rank order): (removed rows, kNN idx, work, lists)."""
    cp = close_pairs(x[g], thr, k=min(k, len(g) - 1), seed=seed)
    dup_of = earlier_duplicates(len(g), cp.pair_i, cp.pair_j, cp.pair_sim)
    return g[dup_of >= 0], cp.idx, cp.work, cp.lists


_X: np.ndarray | None = None  # the vectors, set before forking the group workers


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _group_job(job: tuple) -> tuple:
    return dedup_group(_X, *job)


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the forked group workers)."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def ours(x: np.ndarray, k: int, thr: float, seed: int, niter: int, workers: int = 2,
         neighbours: int = 10) -> tuple[np.ndarray, dict]:
    import torch

    c0, t0 = cpu_seconds(), time.perf_counter()
    rng = np.random.default_rng(seed)
    s = min(len(x), sample_size(k))
    cent = train_centroids(x[np.sort(rng.choice(len(x), s, replace=False))], k, seed, niter)
    t1 = time.perf_counter()
    labels = assign(x, cent)
    t2 = time.perf_counter()
    kept = np.ones(len(x), dtype=bool)
    groups = sorted(
        (g for g in groups_of(labels) if len(g) >= 2), key=len, reverse=True
    )  # largest first: balance
    jobs = [(g, thr, neighbours, seed) for g in groups]
    bar = dict(total=len(groups), desc="ours: groups", mininterval=5, disable=len(groups) < 20)
    if workers > 1 and len(groups) > 1:  # forked workers read x copy-on-write; one torch thread each
        global _X
        _X = x
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_one_thread)
        try:
            res = list(tqdm(pool.imap(_group_job, jobs, chunksize=2), **bar))
            pool.close()
        finally:
            pool.terminate()
            pool.join()
            _X = None
    else:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small tiles scale badly over threads
        try:
            res = [dedup_group(x, *j) for j in tqdm(jobs, **bar)]
        finally:
            torch.set_num_threads(threads)
    flops = 0.0
    for g, (removed, _, work, _) in zip(groups, res):
        kept[removed] = False
        flops += 2.0 * work * len(g) ** 2 * x.shape[1]
    t3 = time.perf_counter()
    return kept, {"train": t1 - t0, "assign": t2 - t1, "knn_dedup": t3 - t2, "total": t3 - t0,
                  "cpu": cpu_seconds() - c0, "labels": labels,
                  "groups": groups, "neighbours": [r[1] for r in res], "pair_flops": flops,
                  "full_matrix_groups": sum(r[3] == 0 for r in res)}


def reference(x: np.ndarray, k: int, thr: float, seed: int, niter: int) -> tuple[np.ndarray, dict]:
    c0, t0 = cpu_seconds(), time.perf_counter()
    rng = np.random.default_rng(seed)
    s = min(len(x), sample_size(k))
    cent = train_centroids(x[np.sort(rng.choice(len(x), s, replace=False))], k, seed, niter)
    t1 = time.perf_counter()
    labels = assign(x, cent, use_bf16=False)
    t2 = time.perf_counter()
    kept = np.ones(len(x), dtype=bool)
    for g in groups_of(labels):
        xg = x[g]  # g is ascending = rank order
        sim = xg @ xg.T
        tri = np.triu(sim, 1)
        kept[g[tri.max(0) >= thr]] = False
    t3 = time.perf_counter()
    return kept, {"train": t1 - t0, "assign": t2 - t1, "pairwise": t3 - t2, "total": t3 - t0,
                  "cpu": cpu_seconds() - c0, "labels": labels}


def peak_gib() -> float:
    """Peak resident memory (GiB) since the last ``reset_peak()`` (Linux VmHWM), else since start."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_peak() -> bool:
    """Restart the peak-RSS count at the current RSS (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def knn_quality(x: np.ndarray, groups: list[np.ndarray], found: list[np.ndarray], n_groups: int) -> dict:
    """Recall@k of our neighbour lists against exact search (faiss flat) on the first ``n_groups`` groups,
    and the mean exact cosine of our neighbours over that of the true ones."""
    rec, ratio = [], []
    for g, idx in list(zip(groups, found))[:n_groups]:
        xg = x[g]
        es, ei = knn(xg, idx.shape[1], "flat")
        rec.append(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(ei, idx)]))
        ours_sim = np.einsum("id,ikd->ik", xg, xg[np.maximum(idx, 0)])
        ratio.append(float(ours_sim.mean() / es.mean()))
    return {"recall_at_k": round(float(np.mean(rec)), 4) if rec else None,
            "sim_ratio": round(float(np.mean(ratio)), 5) if ratio else None, "groups_checked": len(rec)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        prog="python -m bench.clustering_scale", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--n", type=int, default=200_000, help="vectors (1000000 for the full run)")
    ap.add_argument("--d", type=int, default=512, help="dimension")
    ap.add_argument("--dup-frac", type=float, default=0.1, help="fraction of planted near-copies")
    ap.add_argument("--threshold", type=float, default=0.95, help="duplicate cosine threshold")
    ap.add_argument("--target-group", type=int, default=4000, help="points per centroid")
    ap.add_argument("--niter", type=int, default=10, help="k-means iterations")
    ap.add_argument("--seed", type=int, default=0, help="data and k-means seed")
    ap.add_argument(
        "--workers",
        type=int,
        default=2,
        help="forked processes deduplicating groups in parallel (ours; 1 = in process)",
    )
    ap.add_argument("--neighbours", type=int, default=10, help="neighbours per point returned by ours")
    ap.add_argument(
        "--recall-groups",
        type=int,
        default=3,
        help="groups whose neighbours are checked against exact search",
    )
    ap.add_argument("--skip-reference", action="store_true", help="time ours only")
    args = ap.parse_args(argv)
    import faiss
    import torch

    torch.set_num_threads(2)
    faiss.omp_set_num_threads(2)
    t = time.perf_counter()
    x = synth(args.n, args.d, args.dup_frac, args.seed)
    print(
        f"data: n={args.n} d={args.d} generated in {time.perf_counter() - t:.1f}s, peak {peak_gib():.2f} GiB",
        flush=True,
    )
    k = num_centroids(args.n, args.target_group)
    fp32, bf16 = gemm_speed("fp32"), (gemm_speed("bf16") if bf16_available() else None)
    ours(x[: min(len(x), 8000)], 2, args.threshold, args.seed, 2, args.workers, args.neighbours)  # warm-up
    reference(x[: min(len(x), 8000)], 2, args.threshold, args.seed, 2)  # (library and thread-pool start-up)
    base = peak_gib()  # data generation + GEMM probes
    reset_peak()  # from here: the step itself (the input vectors stay resident and count)
    kept, tm = ours(x, k, args.threshold, args.seed, args.niter, args.workers, args.neighbours)
    peak_ours = peak_gib()
    sizes = np.bincount(tm["labels"], minlength=k).astype(np.float64)
    s = min(args.n, sample_size(k))
    flops = {"train": 2.0 * s * k * args.d * args.niter, "assign": 2.0 * args.n * k * args.d,
             "pairwise": 2.0 * float((sizes**2).sum()) * args.d}
    fast = bf16 or fp32
    bound = (flops["train"] / fp32 + (flops["assign"] + flops["pairwise"]) / fast) / 1e9
    bound32 = sum(flops.values()) / fp32 / 1e9
    m_sub = [
        max(round(len(g) / 128), 1) for g in tm["groups"]
    ]  # second-level k-means (upper estimate: largest m)
    sub = sum(2.0 * args.d * m * (7 * min(len(g), 64 * m) + len(g)) for g, m in zip(tm["groups"], m_sub))
    own = (flops["train"] / fp32 + (flops["assign"] + sub + tm["pair_flops"]) / fast) / 1e9
    res = {
        "n": args.n,
        "k": k,
        "gemm_fp32_gflops": round(fp32, 1),
        "gemm_bf16_gflops": round(bf16, 1) if bf16 else None,
        "ours_s": {
            a: round(b, 2) for a, b in tm.items() if a in ("train", "assign", "knn_dedup", "total", "cpu")
        },
        "flop_bound_s": round(bound, 2),
        "flop_bound_fp32_s": round(bound32, 2),
        "ours_over_bound": round(tm["total"] / bound, 2),
        "ours_over_bound_fp32": round(tm["total"] / bound32, 2),
        "pair_flops_fraction": round(tm["pair_flops"] / flops["pairwise"], 3),
        "own_flop_bound_s": round(own, 2),
        "ours_over_own_bound": round(tm["total"] / own, 2),
        "full_matrix_groups": tm["full_matrix_groups"],
        "peak_gib_ours": round(peak_ours, 2),
        "peak_gib_data_gen": round(base, 2),
        "peak_gib_worker_max": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2),
        "input_gib": round(x.nbytes / 2**30, 2),
        "kept": int(kept.sum()),
        "removed": int((~kept).sum()),
    }
    res["knn"] = knn_quality(x, tm["groups"], tm["neighbours"], args.recall_groups)
    del tm["neighbours"]
    if args.neighbours:  # the same step without the top-k lists: the reference's output exactly
        reset_peak()
        kept0, t0 = ours(x, k, args.threshold, args.seed, args.niter, args.workers, 0)
        res["ours_no_knn_s"] = {
            a: round(b, 2) for a, b in t0.items() if a in ("train", "assign", "knn_dedup", "total", "cpu")
        }
        res["peak_gib_ours_no_knn"] = round(peak_gib(), 2)
        assert (kept0 == kept).all(), "kept set depends on the neighbour lists"
    print(res, flush=True)
    if not args.skip_reference:
        reset_peak()
        kept_ref, tr = reference(x, k, args.threshold, args.seed, args.niter)
        res.update(
            {
                "reference_s": {a: round(b, 2) for a, b in tr.items() if a != "labels"},
                "speedup_vs_reference": round(tr["total"] / tm["total"], 2),
                "cpu_time_ratio": round(tr["cpu"] / tm["cpu"], 2),
                "speedup_vs_reference_no_knn": round(tr["total"] / t0["total"], 2)
                if args.neighbours
                else None,
                "speedup_dedup_only": round(
                    (tr["assign"] + tr["pairwise"]) / (tm["assign"] + tm["knn_dedup"]), 2
                ),
                "same_partition": bool((tr["labels"] == tm["labels"]).all()),
                "kept_set_diff": int((kept_ref != kept).sum()),
                "peak_gib_reference": round(peak_gib(), 2),
            }
        )
    print("RESULT", res, flush=True)
    return res


if __name__ == "__main__":
    main()

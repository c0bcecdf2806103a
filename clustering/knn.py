"""Exact and approximate k-nearest-neighbour search inside one group (inner product on unit vectors).

Methods: ``flat`` (faiss IndexFlatIP, exact), ``ivf`` (faiss IndexIVFFlat, for very large
groups), ``bf16`` (bf16 matrix multiply as a prefilter, candidates re-scored exactly in
float32: same neighbours as ``flat`` except for near-ties, several times faster on CPUs with
bf16 units). ``auto`` picks by group size and hardware.

``close_pairs`` (the scale path): every pair above a similarity threshold, exactly, from
second-level k-means lists with a provable spill margin instead of the full matrix, plus top-k
neighbours from the same tiles; ``earlier_duplicates`` applies SemDeDup's order rule to them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import faiss
import numpy as np

from clustering.gpu import faiss_on_gpu, torch_device


@functools.cache
def bf16_available() -> bool:
    """True when this CPU has native bf16 dot products (AVX512-BF16 / AMX) or a CUDA GPU is present."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    if torch.cuda.is_available():
        return True
    return cpu_bf16_available()


@functools.cache
def cpu_bf16_available() -> bool:
    """True when this CPU has native bf16 dot products (paths that keep their tensors on the CPU)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def knn(
    x: np.ndarray,
    k: int,
    method: str = "auto",
    ivf_threshold: int = 100_000,
    nprobe: int = 32,
    extra: int = 4,
    block: int = 2048,
    rescore_above: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other rows of each row: (sims (n,k) float32, idx (n,k) int64), best first.

    ``bf16``: with ``rescore_above`` set, only similarities at or above it (minus the bf16
    error margin) are re-scored exactly (enough for thresholded dedup); otherwise all are.

    Missing neighbours (group smaller than k+1) are idx -1, sim -inf.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if method == "auto":
        if n > ivf_threshold:
            method = "ivf"
        elif n >= 2048 and bf16_available():
            method = "bf16"
        else:
            method = "flat"
    kk = min(k + 1, n)
    if method == "flat":
        index = faiss_on_gpu(faiss.IndexFlatIP(d), n)  # a GPU index for large groups when CUDA is there
        index.add(x)
        sims, idx = index.search(x, kk)
    elif method == "ivf":
        nlist = max(1, int(np.sqrt(n)))
        quant = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        train = x if n <= 256 * nlist else x[np.sort(rng.choice(n, 256 * nlist, replace=False))]
        index.cp.min_points_per_centroid = 1
        index.train(train)
        index.add(x)
        index.nprobe = nprobe
        sims, idx = index.search(x, kk)
    elif method == "bf16":
        sims, idx = _knn_bf16(x, kk, extra, block, rescore_above)
    else:
        raise ValueError(f"unknown knn method {method!r}")
    return _drop_self(sims, idx, k)


BF16_MARGIN = 0.02  # bound on |bf16 dot - float32 dot| for unit vectors (8-bit mantissa, fp32 accumulation)


def _knn_bf16(x: np.ndarray, kk: int, extra: int, block: int, rescore_above: float | None
              ) -> tuple[np.ndarray, np.ndarray]:
    import torch

    n = len(x)
    kc = min(n, kk + extra)
    xt = torch.from_numpy(x).to(torch_device())  # GPU tensors when CUDA is present
    xb = xt.to(torch.bfloat16)
    sims = np.empty((n, kk), dtype=np.float32)
    idx = np.empty((n, kk), dtype=np.int64)
    for s in range(0, n, block):
        e = min(n, s + block)
        approx = xb[s:e] @ xb.T
        top = torch.topk(approx, kc, dim=1, sorted=False)  # (b, kc)
        cand = top.indices
        if rescore_above is None:
            exact = torch.einsum("bd,bkd->bk", xt[s:e], xt[cand])  # float32 re-score
        else:
            exact = top.values.float()
            r, c = torch.nonzero(exact >= rescore_above - BF16_MARGIN, as_tuple=True)
            if len(r):
                exact[r, c] = (xt[s + r] * xt[cand[r, c]]).sum(1)
        order = torch.argsort(exact, dim=1, descending=True, stable=True)[:, :kk]
        sims[s:e] = torch.gather(exact, 1, order).cpu().numpy()
        idx[s:e] = torch.gather(cand, 1, order).cpu().numpy()
    return sims, idx


def _drop_self(sims: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(idx)
    rows = np.arange(n)[:, None]
    keep = (idx != rows) & (idx >= 0)
    out_s = np.full((n, k), -np.inf, dtype=np.float32)
    out_i = np.full((n, k), -1, dtype=np.int64)
    # stable compaction: the first k kept entries of each row
    pos = np.cumsum(keep, axis=1) - 1
    sel = keep & (pos < k)
    r, c = np.nonzero(sel)
    out_s[r, pos[r, c]] = sims[r, c]
    out_i[r, pos[r, c]] = idx[r, c]
    return out_s, out_i


# --- thresholded pairs (exact) + kNN from the same tiles: the scale path -----------------------

@dataclass
class ClosePairs:
    """Every pair of one group with similarity >= a threshold (exact), plus kNN from the same tiles.

    pair_i < pair_j (row order = rank order); pair_sim float32. ``sims``/``idx`` (n, k) best first
    (None when k=0); ``work``: computed similarities / n^2 (1.0 = the full matrix); ``lists``:
    sub-cluster lists used (0 = full matrix path).
    """

    pair_i: np.ndarray
    pair_j: np.ndarray
    pair_sim: np.ndarray
    sims: np.ndarray | None
    idx: np.ndarray | None
    work: float
    lists: int


LIST_COST = 50_000  # fixed cost of one list (python, small ops, sub-k-means), in similarity entries
SUB_SIZES = (512, 256, 128)  # rows per sub-centroid tried when ``sub_size`` is None


def close_pairs(x: np.ndarray, threshold: float, k: int = 0, sub_size: int | None = None, seed: int = 0,
                niter: int = 5, max_work: float = 0.75, use_bf16: bool | None = None) -> ClosePairs:
    """All pairs with ``x_i . x_j >= threshold`` (exact float32), without the full n x n matrix.

    Rows are split by a second-level spherical k-means (about ``sub_size`` rows per sub-centroid;
    None: each of ``SUB_SIZES`` is tried and the one with the least estimated cost, measured on a
    1024-row sample as sum(list sizes^2) + LIST_COST per list, is used: one fixed size is fragile,
    splitting a topic spills as badly as merging two).
    A row joins the list of every sub-centroid ``c`` with ``x.c >= max_c' x.c' - delta``, where
    ``delta = sqrt(2 M^2 - 2 threshold)`` bounds ``|x - y|`` for a close pair (M = largest row norm).
    For a close pair (x, y), with ``z`` their midpoint and ``c`` the best sub-centroid of z,
    ``x.c >= z.c - |x - z| >= z.c_x - delta/2 >= x.c_x - delta`` (and the same for y), so both
    are in the list of ``c``: all-pairs inside every list finds every close pair. When the lists
    would cost more than ``max_work`` of the full matrix (low thresholds, unstructured data),
    the full matrix is computed in row blocks instead. Same result either way.

    ``use_bf16`` (default: when the CPU has bf16 units): tiles are multiplied in bf16 and every
    pair at or above ``threshold - BF16_MARGIN`` is re-scored exactly in float32, so the pairs
    are the float32 ones. ``k`` > 0 also returns each row's ``k`` best neighbours among the rows
    of its home list (IVF-style, nprobe 1 + spill: approximate; similarities exact near the
    threshold, bf16-rounded below it). Uses torch's current thread count.
    """
    import torch

    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    k = min(k, max(n - 1, 0))
    if use_bf16 is None:
        use_bf16 = cpu_bf16_available()  # its tiles stay on the CPU: CPU bf16 units only
    xt = torch.from_numpy(x)
    xb = xt.to(torch.bfloat16) if use_bf16 else None
    ms = sorted({int(round(n / max(sz, 1))) for sz in ((sub_size,) if sub_size else SUB_SIZES)} - {0, 1})
    if ms:
        norm_max = float(xt.norm(dim=1).max())
        delta = float(np.sqrt(max(0.0, 2 * norm_max**2 - 2 * threshold))) + 1e-4
        cent = _best_sub_centroids(xt, ms, delta, seed, niter)
        m = len(cent)
        if xb is not None:  # bf16 scores: widen the margin by twice their error bound
            scores = (xb @ cent.to(torch.bfloat16).T).float()
            delta += 2 * BF16_MARGIN * norm_max
        else:
            scores = xt @ cent.T
        member = scores >= scores.max(1, keepdim=True).values - delta
        sizes = member.sum(0).double()
        work = float((sizes**2).sum()) / (n * n)
        if work <= max_work:
            home = scores.argmax(1)
            out = _Collector(n, k)
            for c in range(m):
                rows = torch.nonzero(member[:, c]).flatten()  # ascending: rank order
                if len(rows) >= 2:
                    krows = torch.nonzero(home[rows] == c).flatten() if k else None
                    _tile(xt, xb, rows, rows, threshold, k, krows, krows, out)
            return out.result(work, m)
    out = _Collector(n, k)
    block = max(64, min(2048, (1 << 26) // max(n, 1)))
    for s0 in range(0, n, block):
        rows = torch.arange(s0, min(n, s0 + block))
        cols = torch.arange(0 if k else s0, n)  # the upper triangle is enough without kNN
        local = torch.arange(len(rows))
        _tile(xt, xb, rows, cols, threshold, k, local if k else None, rows - int(cols[0]), out)
    return out.result(1.0 if k else (n + 1) / (2 * n), 0)


def _best_sub_centroids(xt, ms: list[int], delta: float, seed: int, niter: int, per_centroid: int = 64,
                        probe: int = 2):
    """Sub-centroids for the cheapest of the candidate counts ``ms``: each count runs ``probe``
    Lloyd iterations, its cost is estimated on the sample, and only the winner runs the rest."""
    if len(ms) == 1:
        return next(_sub_kmeans(xt, ms, seed, niter, per_centroid))[0]
    best, best_cost = None, np.inf
    for cent, xs, scores in _sub_kmeans(xt, ms, seed, min(probe, niter), per_centroid):
        sizes = (scores >= scores.max(1, keepdim=True).values - delta).sum(0).double() * (len(xt) / len(xs))
        cost = float((sizes**2).sum()) + LIST_COST * len(cent)
        if cost < best_cost:
            best, best_cost, best_xs = cent, cost, xs
    return _lloyd(best_xs, best, niter - min(probe, niter))


def _sub_kmeans(x, ms: list[int], seed: int, niter: int, per_centroid: int):
    """(centroids, sample, bf16 sample scores) for each m in ``ms``: one sample and one farthest-first
    order (sized for the largest m; smaller m use its prefix); scores in bf16 (only the caller's
    final membership scores must be exact). Farthest-first, not random or k-means++ seeding: those
    often put two centroids in one topic and one between two topics, which inflates the spill;
    farthest-first spreads them (outliers only cost speed, never correctness)."""
    import torch

    rng = np.random.default_rng(seed)
    n, mx = len(x), max(ms)
    xs = (
        x
        if n <= per_centroid * mx
        else x[torch.from_numpy(np.sort(rng.choice(n, per_centroid * mx, replace=False)))]
    )
    lowp = torch.bfloat16 if bf16_available() else torch.float32  # emulated bf16 is ~10x slower than fp32
    xb = xs.to(lowp)
    seeds = xs[
        torch.from_numpy(np.sort(rng.permutation(len(xs))[: 16 * mx]))
    ]  # farthest-first on a subsample
    pick = [int(rng.integers(len(seeds)))]
    near = seeds @ seeds[pick[0]]
    for _ in range(1, mx):
        pick.append(int(near.argmin()))
        near = torch.maximum(near, seeds @ seeds[pick[-1]])
    for m in ms:
        cent = _lloyd(xs, seeds[torch.tensor(pick[:m])].clone(), niter, xb)
        yield cent, xs, (xb @ cent.to(lowp).T).float()


def _lloyd(xs, cent, niter: int, xb=None):
    """``niter`` spherical Lloyd iterations on sample ``xs`` (bf16 scores) from ``cent``; unit rows out."""
    import torch

    if niter > 0 and xb is None:
        xb = xs.to(torch.bfloat16 if bf16_available() else torch.float32)
    for _ in range(niter):
        lab = (xb @ cent.to(xb.dtype).T).argmax(1)
        onehot = torch.zeros(len(cent), len(xs), dtype=xb.dtype)
        onehot[lab, torch.arange(len(xs))] = 1
        sums = (onehot @ xb).float()  # bf16 sums: centroids only steer speed, never correctness
        nz = torch.bincount(lab, minlength=len(cent)) > 0
        cent[nz] = sums[nz] / sums[nz].norm(dim=1, keepdim=True).clamp_min(1e-12)
    return cent / cent.norm(dim=1, keepdim=True).clamp_min(1e-12)


class _Collector:
    """Pairs and kNN lists gathered tile by tile."""

    def __init__(self, n: int, k: int):
        self.n, self.k = n, k
        self.pi, self.pj, self.ps = [], [], []
        self.sims = np.full((n, k), -np.inf, dtype=np.float32) if k else None
        self.idx = np.full((n, k), -1, dtype=np.int64) if k else None

    def result(self, work: float, lists: int) -> ClosePairs:
        i, j, v = _unique_pairs(self.pi, self.pj, self.ps, self.n)
        return ClosePairs(i, j, v, self.sims, self.idx, work, lists)


def _tile(xt, xb, rows, cols, thr: float, k: int, krows, kself, out: _Collector) -> None:
    """Similarities rows x cols: close pairs (row id < col id) and, for ``krows`` (tile rows,
    whose own column is ``kself``), the k best columns."""
    a = xb if xb is not None else xt
    ar = a[rows]
    s = (ar @ (ar if cols is rows else a[cols]).T).float().numpy()
    rows_n, cols_n = rows.numpy(), cols.numpy()
    nc = s.shape[1]
    flat = np.flatnonzero(
        s >= (thr - BF16_MARGIN if xb is not None else thr)
    )  # numpy: faster than torch here
    r, q = flat // nc, flat % nc
    if xb is not None and len(r):
        x = xt.numpy()
        s[r, q] = np.einsum("ij,ij->i", x[rows_n[r]], x[cols_n[q]])  # exact float32 re-score
        keep = s[r, q] >= thr
        r, q = r[keep], q[keep]
    gi, gj = rows_n[r], cols_n[q]
    up = gi < gj
    out.pi.append(gi[up])
    out.pj.append(gj[up])
    out.ps.append(s[r[up], q[up]])
    if k and krows is not None and len(krows):
        kr = krows.numpy()
        sk = s[kr]
        sk[np.arange(len(kr)), kself.numpy()] = -np.inf  # not itself
        kk = min(k, nc - 1)
        ti = np.argpartition(sk, nc - kk, axis=1)[:, -kk:]
        tv = np.take_along_axis(sk, ti, 1)
        o = np.argsort(-tv, axis=1, kind="stable")  # best first
        dst = rows_n[kr]
        out.sims[dst, :kk] = np.take_along_axis(tv, o, 1)
        out.idx[dst, :kk] = cols_n[np.take_along_axis(ti, o, 1)]


def _unique_pairs(pi: list, pj: list, ps: list, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not pi:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    i, j, v = np.concatenate(pi), np.concatenate(pj), np.concatenate(ps)
    _, first = np.unique(i.astype(np.int64) * n + j, return_index=True)  # sorted by (i, j)
    return i[first].astype(np.int64), j[first].astype(np.int64), v[first].astype(np.float32)


def earlier_duplicates(n: int, pair_i: np.ndarray, pair_j: np.ndarray, pair_sim: np.ndarray) -> np.ndarray:
    """SemDeDup order rule on close pairs (i < j = i ranks better): ``dup_of`` (n,) int64, -1 = kept.

    A row is a duplicate when any better-ranked row is close to it; ``dup_of`` is the most
    similar such row (ties: the better-ranked one).
    """
    dup_of = np.full(n, -1, dtype=np.int64)
    if len(pair_j):
        o = np.lexsort((pair_i, -pair_sim, pair_j))  # by j, then most similar, then smaller i
        js = pair_j[o]
        first = np.r_[True, js[1:] != js[:-1]]
        dup_of[js[first]] = pair_i[o][first]
    return dup_of

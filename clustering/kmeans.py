"""Per-domain k-means with FAISS: how many centroids, which points train them, assignment.

Everything here is a pure function on numpy arrays so Beam steps stay thin wrappers.
"""

from __future__ import annotations

import hashlib

import faiss
import numpy as np

from clustering import gpu
from clustering.knn import bf16_available

MIN_POINTS_PER_CENTROID = 39  # faiss warns below this many training points per centroid


def num_centroids(n: int, target_group: int = 4000, override: int | None = None) -> int:
    """Centroids for ``n`` points: about ``n / target_group`` (1 for small inputs), capped so each
    has data."""
    if override:
        return max(1, min(int(override), n))
    return max(1, min(round(n / target_group), n // MIN_POINTS_PER_CENTROID))


def sample_size(k: int, per_centroid: int = 64) -> int:
    """Training points for ``k`` centroids."""
    return k * per_centroid if k > 1 else 0


def hash01(key: str, seed: int = 0) -> float:
    """Deterministic uniform number in [0, 1) from a record key and a seed (sampling, seed order)."""
    h = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def train_centroids(x: np.ndarray, k: int, seed: int = 0, niter: int = 20) -> np.ndarray:
    """Spherical k-means centroids (k, d) float32 from training vectors ``x`` (L2-normalised rows)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    k = max(1, min(k, len(x)))
    if k == 1:
        c = x.mean(0, keepdims=True)
        return (c / max(np.linalg.norm(c), 1e-12)).astype(np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, spherical=True, verbose=False,
                      max_points_per_centroid=max(256, len(x) // k + 1), gpu=gpu.kmeans_on_gpu(len(x)))
    km.train(x)
    return np.asarray(km.centroids, dtype=np.float32)


def assign(x: np.ndarray, centroids: np.ndarray, use_bf16: bool | None = None, margin: float = 0.02,
           chunk: int = 8192, threads: int | None = None) -> np.ndarray:
    """Nearest centroid (inner product) of each row of ``x`` (unit-norm rows and centroids).

    With bf16 (CPUs with bf16 matmul) scores are computed in bf16 and every row whose top two
    are within ``margin`` (> twice the bf16 error for unit vectors) is re-scored exactly in
    float32, so labels equal the float32 ones. Rows go in ``chunk``-row pieces (conversion,
    product and top-2 of a piece stay in cache), one piece per thread on ``threads`` threads
    (default: torch's thread count), each single-threaded inside.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    k = len(centroids)
    if k == 1:
        return np.zeros(len(x), dtype=np.int64)
    if use_bf16 is None:
        use_bf16 = bf16_available() and len(x) * k >= 1 << 20
    if not use_bf16:
        index = faiss.IndexFlatIP(centroids.shape[1])
        index.add(np.ascontiguousarray(centroids, dtype=np.float32))
        return index.search(x, 1)[1][:, 0].astype(np.int64)
    if gpu.cuda_available():
        return gpu.assign_bf16_cuda(x, centroids, margin)
    import torch

    ct = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))
    cbt = ct.to(torch.bfloat16).T.contiguous()
    xt = torch.from_numpy(x)
    labels = torch.empty(len(x), dtype=torch.int64)

    def piece(s: int):  # converted, multiplied and ranked while in cache
        top = torch.topk(xt[s : s + chunk].to(torch.bfloat16) @ cbt, 2, dim=1)
        labels[s : s + chunk] = top.indices[:, 0]
        return torch.nonzero(top.values[:, 0].float() - top.values[:, 1].float() < margin).flatten() + s

    threads = threads or torch.get_num_threads()
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # one chunk per thread: no intra-op sync (it spins on a loaded machine)
    try:
        if threads > 1 and len(x) > chunk:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:  # torch releases the GIL in these kernels
                unsure = list(pool.map(piece, range(0, len(x), chunk)))
        else:
            unsure = [piece(s) for s in range(0, len(x), chunk)]
        u = torch.cat(unsure)
        for s in range(0, len(u), chunk):  # rows whose top-2 gap is within the bf16 error: float32 re-score
            labels[u[s : s + chunk]] = (xt[u[s : s + chunk]] @ ct.T).argmax(1)
    finally:
        torch.set_num_threads(before)
    return labels.numpy()

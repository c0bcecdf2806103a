"""GPU paths of the clustering math, taken when a CUDA GPU is present (``core/device.py``;
``IIDATA_DEVICE=cpu`` forces the CPU, the tested default). FAISS uses its GPU indexes only when
the installed faiss has GPU support (``make setup-gpu`` swaps faiss-cpu for faiss-gpu-cu12) and the
work is large enough to repay the transfer (``GPU_MIN_POINTS``). Results on a GPU equal the CPU
ones up to float summation order: the same labels and neighbours except at exact ties, not the
same bytes.
``bench/gpu_check.py`` exercises and times each GPU path on a CUDA machine.
"""

from __future__ import annotations

import functools

import numpy as np

from core.device import cuda_available, torch_device  # noqa: F401 - re-exported for clustering

GPU_MIN_POINTS = 20_000  # below this, copying to the GPU costs more than the CPU search


@functools.cache
def faiss_gpus() -> int:
    """GPUs the installed faiss can use (0 for faiss-cpu, or when CUDA is disabled)."""
    if not cuda_available():
        return 0
    import faiss

    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


@functools.cache
def _resources():
    import faiss

    return faiss.StandardGpuResources()


def faiss_on_gpu(index, n: int):
    """``index`` moved to GPU 0 when faiss has GPU support and ``n >= GPU_MIN_POINTS``, else itself."""
    if n < GPU_MIN_POINTS or faiss_gpus() == 0:
        return index
    import faiss

    return faiss.index_cpu_to_gpu(_resources(), 0, index)


def kmeans_on_gpu(n: int) -> bool:
    """Whether ``faiss.Kmeans(gpu=True)`` should train on ``n`` points."""
    return n >= GPU_MIN_POINTS and faiss_gpus() > 0


def assign_bf16_cuda(x: np.ndarray, centroids: np.ndarray, margin: float, chunk: int = 65_536) -> np.ndarray:
    """Nearest centroid by a bf16 product on the GPU; rows whose top two are within ``margin``
    are re-scored in float32 (so labels equal the float32 ones, as in the CPU bf16 path)."""
    import torch

    ct = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32)).cuda()
    cbt = ct.to(torch.bfloat16).T.contiguous()
    labels = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), chunk):
        xt = torch.from_numpy(np.ascontiguousarray(x[s : s + chunk], dtype=np.float32)).cuda()
        top = torch.topk(xt.to(torch.bfloat16) @ cbt, 2, dim=1)
        lab = top.indices[:, 0]
        unsure = torch.nonzero(top.values[:, 0].float() - top.values[:, 1].float() < margin).flatten()
        if len(unsure):
            lab[unsure] = (xt[unsure] @ ct.T).argmax(1)
        labels[s : s + chunk] = lab.cpu().numpy()
    return labels

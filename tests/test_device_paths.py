"""Device choice: CUDA when present, the CPU otherwise or with IIDATA_DEVICE=cpu; the CPU paths that
the GPU edits touched still give the exact answers; the GPU check skips cleanly without CUDA."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from clustering import gpu, kmeans, knn
from core import device


@pytest.fixture
def fresh_device_cache():
    for f in (device.cuda_available, gpu.faiss_gpus):
        f.cache_clear()
    yield
    for f in (device.cuda_available, gpu.faiss_gpus):
        f.cache_clear()


def test_cuda_is_chosen_when_present_unless_disabled(monkeypatch, fresh_device_cache):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv(device.DEVICE_ENV, raising=False)
    assert device.torch_device() == "cuda"
    device.cuda_available.cache_clear()
    monkeypatch.setenv(device.DEVICE_ENV, "cpu")
    assert device.torch_device() == "cpu" and gpu.faiss_gpus() == 0


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the CPU default; bench/gpu_check.py covers CUDA"
)
def test_cpu_default_paths_are_exact(fresh_device_cache, capsys):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(32)
    assert gpu.faiss_on_gpu(index, 10**7) is index and not gpu.kmeans_on_gpu(10**7)
    s_flat, i_flat = knn.knn(x, 5, method="flat")
    s_b, i_b = knn.knn(x, 5, method="bf16")  # bf16 prefilter + float32 re-score, CPU tensors
    assert np.mean(i_flat == i_b) > 0.99 and np.abs(s_flat - s_b).max() < 1e-5
    cents = kmeans.train_centroids(x, 16, seed=0, niter=5)
    assert np.array_equal(kmeans.assign(x, cents, use_bf16=False), kmeans.assign(x, cents, use_bf16=True))
    from bench.gpu_check import main

    assert main([]) == 0 and "SKIP" in capsys.readouterr().out

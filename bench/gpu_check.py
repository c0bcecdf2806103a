"""Exercise and time every GPU path against its CPU path, side by side (a few minutes on one GPU).

    python -m bench.gpu_check [--n 200000] [--images 256]

Paths: faiss GPU flat kNN and GPU k-means (``clustering/gpu.py``, needs faiss-gpu: ``make
setup-gpu``), the bf16 kNN and the bf16 centroid assignment on GPU tensors, the offline
EfficientNet-Lite0 and MiniLM models, the quality trunk (torch on CUDA against onnxruntime on the
CPU), HED, and open_clip (a random ViT-B-32: no CLIP weights exist offline). Each line prints the
CPU and GPU seconds, their ratio and how well the outputs agree. Without CUDA it prints one SKIP
line and exits 0: nothing was measured.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable

import numpy as np


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(n: int, d: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = _unit(k, d, seed + 1)
    x = c[rng.integers(0, k, n)] + 0.35 * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _timed(fn: Callable, sync: bool = False):
    import torch

    t = time.perf_counter()
    out = fn()
    if sync:
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def _row(name: str, cpu_s: float, gpu_s: float, agree: str) -> None:
    print(f"{name:<34} {cpu_s:>9.3f} {gpu_s:>9.3f} {cpu_s / max(gpu_s, 1e-9):>8.1f}x  {agree}", flush=True)


def check_faiss(n: int) -> None:
    import faiss

    from clustering import gpu

    if gpu.faiss_gpus() == 0:
        print("faiss GPU: SKIP (faiss-cpu installed; `make setup-gpu` installs faiss-gpu-cu12)")
        return
    x = _clustered(n, 512, 256, 0)
    q = x[:10_000]
    cpu = faiss.IndexFlatIP(512)
    cpu.add(x)
    (_, ic), tc = _timed(lambda: cpu.search(q, 11))
    g = gpu.faiss_on_gpu(faiss.IndexFlatIP(512), n)
    g.add(x)
    (_, ig), tg = _timed(lambda: g.search(q, 11))
    _row(f"faiss flat kNN ({n}x512, 10k q)", tc, tg, f"top-11 ids equal {np.mean(ic == ig):.4f}")
    for use_gpu, label in ((False, "cpu"), (True, "gpu")):
        km = faiss.Kmeans(512, 256, niter=10, seed=0, spherical=True, gpu=use_gpu, verbose=False)
        _, t = _timed(lambda km=km: km.train(x))
        if label == "cpu":
            tk_cpu, c_cpu = t, km.centroids.copy()
        else:
            tk_gpu, c_gpu = t, km.centroids.copy()
    lab = lambda c: (x[:20_000] @ c.T).argmax(1)  # noqa: E731
    inertia = lambda c: float(np.mean(np.max(x[:20_000] @ c.T, 1)))  # noqa: E731
    _row(f"faiss k-means ({n}x512, k=256)", tk_cpu, tk_gpu,
         f"mean best cosine cpu {inertia(c_cpu):.4f} gpu {inertia(c_gpu):.4f} (labels differ by init only: "
         f"{np.mean(lab(c_cpu) == lab(c_gpu)):.3f} equal)")


def check_bf16(n: int) -> None:
    import torch

    from clustering import kmeans, knn

    x = _clustered(min(n, 50_000), 512, 64, 1)
    (s_flat, i_flat), tc = _timed(lambda: knn.knn(x, 10, method="flat"))
    (s_b, i_b), tg = _timed(lambda: knn.knn(x, 10, method="bf16"), sync=True)
    assert torch.cuda.is_available()
    _row(f"bf16 kNN on GPU ({len(x)}x512)", tc, tg,
         f"ids equal {np.mean(i_flat == i_b):.4f}, max |sim diff| {np.abs(s_flat - s_b).max():.2e}")
    xa = _clustered(n, 512, 64, 2)
    cents = kmeans.train_centroids(xa[:20_000], 1024, seed=0, niter=5)
    la, tc = _timed(lambda: kmeans.assign(xa, cents, use_bf16=False))
    lb, tg = _timed(lambda: kmeans.assign(xa, cents, use_bf16=True), sync=True)
    _row(f"bf16 assign on GPU ({n}x512, k=1024)", tc, tg, f"labels equal {np.mean(la == lb):.5f}")


def _images(n: int):
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (256, 320, 3), dtype=np.uint8)) for _ in range(n)]


def check_models(n_images: int) -> None:
    import torch

    from core import features

    images = _images(n_images)
    feats = features.ImageFeatures(batch_size=64)
    cpu_model = copy.deepcopy(feats.model).cpu()
    g, tg = _timed(lambda: feats.embed(images), sync=True)
    feats.model = cpu_model
    c, tc = _timed(lambda: feats.embed(images[: max(16, n_images // 8)]))
    tc *= len(images) / max(16, n_images // 8)
    _row(f"EfficientNet-Lite0 ({n_images} img)", tc, tg,
         f"min cosine cpu/gpu {np.min(np.sum(c * g[: len(c)], 1)):.5f} (cpu time extrapolated)")

    texts = [f"a photo of thing number {i} on a table" for i in range(2048)]
    tf = features.TextFeatures(batch_size=256)
    g, tg = _timed(lambda: tf.embed(texts), sync=True)
    tf.model = copy.deepcopy(tf.model).to("cpu")
    c, tc = _timed(lambda: tf.embed(texts))
    _row("MiniLM (2048 captions)", tc, tg, f"min cosine {np.min(np.sum(c * g, 1)):.5f}")

    from mining.quality.deep import QualityFeatures

    qg = QualityFeatures(batch_size=32)  # torch on CUDA
    qc = QualityFeatures(batch_size=32, backend="onnx")
    sub = images[: max(16, n_images // 4)]
    g, tg = _timed(lambda: qg(sub), sync=True)
    c, tc = _timed(lambda: qc(sub))
    rel = np.abs(c - g).max() / max(np.abs(c).max(), 1e-9)
    _row(f"quality trunk ({len(sub)} img, {qg.backend})", tc, tg, f"max rel diff vs onnx cpu {rel:.2e}")

    from datasets.control.hed import HEDDetector

    hed_g, hed_c = HEDDetector(device="cuda"), HEDDetector(device="cpu")
    sub = images[:16]
    g, tg = _timed(lambda: hed_g.edges_batch(sub), sync=True)
    c, tc = _timed(lambda: hed_c.edges_batch(sub))
    diff = max(float(np.abs(a.astype(np.float32) - b.astype(np.float32)).max()) for a, b in zip(c, g))
    _row("HED (16 img)", tc, tg, f"max |edge diff| {diff:.3g}")

    from clustering.openclip_embedder import OpenClipEmbedder

    og = OpenClipEmbedder("ViT-B-32", None, device="cuda", batch_size=64)
    oc = OpenClipEmbedder("ViT-B-32", None, device="cpu", batch_size=64)
    torch.manual_seed(0)
    oc.model.load_state_dict({k: v.float().cpu() for k, v in og.model.state_dict().items()})
    sub = images[:64]
    g, tg = _timed(lambda: og.embed_images(sub), sync=True)
    c, tc = _timed(lambda: oc.embed_images(sub))
    _row(
        "open_clip ViT-B-32 random (64 img)",
        tc,
        tg,
        f"min cosine fp16 gpu / fp32 cpu {np.min(np.sum(c * g, 1)):.4f}",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="vectors for the faiss / bf16 paths")
    ap.add_argument("--images", type=int, default=256, help="images for the model paths")
    args = ap.parse_args(argv)
    from core.device import cuda_available

    if not cuda_available():
        print("SKIP: no CUDA GPU here (torch.cuda.is_available() is False, or IIDATA_DEVICE=cpu): "
              "the GPU check was not run and nothing was measured")
        return 0
    import torch

    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    print(f"{'path':<34} {'cpu s':>9} {'gpu s':>9} {'cpu/gpu':>9}  agreement")
    failed = 0
    for check, arg in ((check_faiss, args.n), (check_bf16, args.n), (check_models, args.images)):
        try:
            check(arg)
        except Exception as exc:  # noqa: BLE001 - report each path, keep going
            failed += 1
            print(f"{check.__name__}: FAILED {type(exc).__name__}: {exc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

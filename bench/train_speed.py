"""Training throughput, side by side in one run.

1. Base UNet training samples/s: ours vs imagen-pytorch's ``Unet`` at the same parameter count (imagen's
   ``dim`` is searched to match ours), resolution and batch; text-only conditioning for both (imagen's
   Unet has no context path); ours with 3 context pairs is printed for information. Rounds alternate
   A/B and the median is reported, both with the same torch thread count.
2. Shard loader samples/s (decode, crop, resize, context selection) vs the samples/s the trainer
   consumes with the same model; real COCO images from ../shared/data when present, else toy images.

    python -m bench.train_speed [--size 64] [--batch 8] [--rounds 3] [--steps 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import torch

from model.build import build_diffusion, build_unet
from model.unet import count_parameters

OURS = {"base_channels": 32, "channel_mults": [1, 2, 3, 4], "num_res_blocks": 2, "attn_resolutions": [16, 8],
        "heads": 4, "cond_dim": 128, "max_context": 3}
TEXT_DIM, TEXT_LEN = 384, 16


@contextlib.contextmanager
def _offline_t5_default():
    """imagen-pytorch reads google/t5-v1_1-base's config at import for a default argument; offline, answer
    that one lookup with T5's published width (768). We always pass text_embed_dim explicitly."""
    from transformers import T5Config

    orig = T5Config.from_pretrained
    T5Config.from_pretrained = classmethod(lambda cls, name, *a, **k: T5Config(d_model=768))
    try:
        yield
    finally:
        T5Config.from_pretrained = orig


def _import_imagen_unet():
    """imagen_pytorch/__init__ imports its trainer, which needs HF ``datasets`` -- shadowed by our own
    ``datasets/`` package. Register the package without running __init__ and import only the model module."""
    import importlib.util
    import sys
    import types

    if "imagen_pytorch" not in sys.modules:
        spec = importlib.util.find_spec("imagen_pytorch")
        if spec is None:
            raise SystemExit(
                "imagen-pytorch is not installed: pip install --no-deps imagen-pytorch==2.1.0 "
                "(see docs/model.md)"
            )
        pkg = types.ModuleType("imagen_pytorch")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["imagen_pytorch"] = pkg
    with _offline_t5_default():
        from imagen_pytorch.imagen_pytorch import Unet
    return Unet


def imagen_unet(dim: int):
    Unet = _import_imagen_unet()
    return Unet(dim=dim, text_embed_dim=TEXT_DIM, dim_mults=(1, 2, 3, 4), num_resnet_blocks=2,
                layer_attns=(False, False, True, True), layer_cross_attns=(False, False, True, True),
                attn_heads=4, attn_dim_head=32, max_text_len=TEXT_LEN, channels=3)


def matched_imagen(target: int):
    best = None
    for dim in range(8, 129, 2):
        n = count_parameters(imagen_unet(dim))
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (dim, n)
        if n > target * 1.3:
            break
    return imagen_unet(best[0]), best[0]


def time_steps(step_fn, steps: int) -> float:
    step_fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step_fn()
    return (time.perf_counter() - t0) / steps


def model_bench(size: int, batch: int, rounds: int, steps: int) -> float:
    ours = build_unet({**OURS, "image_size": size}, "base", text_dim=TEXT_DIM)
    n_ours = count_parameters(ours)
    theirs, dim = matched_imagen(n_ours)
    n_theirs = count_parameters(theirs)
    diffusion = build_diffusion({})
    x = torch.rand(batch, 3, size, size) * 2 - 1
    tt, tm = torch.randn(batch, TEXT_LEN, TEXT_DIM), torch.ones(batch, TEXT_LEN, dtype=torch.bool)
    ci, ct = torch.rand(batch, 3, 3, size, size) * 2 - 1, torch.randn(batch, 3, TEXT_LEN, TEXT_DIM)
    ctm, cm = torch.ones(batch, 3, TEXT_LEN, dtype=torch.bool), torch.ones(batch, 3, dtype=torch.bool)
    opt_a = torch.optim.AdamW(ours.parameters(), lr=1e-4)
    opt_b = torch.optim.AdamW(theirs.parameters(), lr=1e-4)

    def ours_step(ctx=False):
        kw = {"ctx_images": ci, "ctx_tokens": ct, "ctx_text_mask": ctm, "ctx_mask": cm} if ctx else {}
        loss = diffusion.loss(lambda a, t: ours(a, t, tt, tm, **kw), x).mean()
        opt_a.zero_grad(set_to_none=True)
        loss.backward()
        opt_a.step()

    def theirs_step():
        t = torch.rand(batch)
        noise = torch.randn_like(x)
        xt = (1 - t).view(-1, 1, 1, 1).sqrt() * x + t.view(-1, 1, 1, 1).sqrt() * noise
        loss = torch.nn.functional.mse_loss(theirs(xt, t, text_embeds=tt, text_mask=tm), x)
        opt_b.zero_grad(set_to_none=True)
        loss.backward()
        opt_b.step()

    a, b, c = [], [], []
    for _ in range(rounds):
        a.append(time_steps(ours_step, steps))
        b.append(time_steps(theirs_step, steps))
        c.append(time_steps(lambda: ours_step(True), steps))
    sa, sb, sc = (batch / statistics.median(v) for v in (a, b, c))
    print(f"params: ours {n_ours / 1e6:.2f}M, imagen-pytorch Unet(dim={dim}) {n_theirs / 1e6:.2f}M; "
          f"{size}x{size}, batch {batch}, {torch.get_num_threads()} thread(s)")
    print(
        f"train samples/s: ours {sa:.2f} | imagen-pytorch {sb:.2f} | "
        f"ratio ours/imagen = {sa / sb:.2f}x (target >= 1.0)"
    )
    print(f"train samples/s: ours with 3 context pairs {sc:.2f} (encoder runs on 1 + 3 images; info only)")
    return sc


def write_bench_shards(folder: str, size: int, n: int = 40) -> tuple[list[str], str]:
    """Cluster shards from real COCO images when ../shared/data is present, else toy images."""
    import io
    import json

    from PIL import Image

    from tests.conftest import SHARED_DATA
    from tests.test_train_toyshards import write_cluster_shards, write_tar

    coco = SHARED_DATA / "coco_mini"
    if not coco.is_dir():
        return write_cluster_shards(folder, n_shards=2, per_shard=n // 2, size=max(size * 4, 256)), "toy"
    files = sorted(p for p in coco.rglob("*.jpg"))[: n + 4]
    samples = []
    for i in range(n):
        group = [files[(i + j) % len(files)] for j in range(5)]
        s = {"__key__": f"c{i:05d}"}
        for j, p in enumerate(group):
            buf = io.BytesIO()
            Image.open(p).convert("RGB").save(buf, format="JPEG", quality=90)
            s[f"{j}.jpg"] = buf.getvalue()
        s["json"] = json.dumps(
            {
                "cluster_id": s["__key__"],
                "domain": "photo",
                "keys": [p.stem for p in group],
                "urls": [str(p) for p in group],
                "captions": [f"photo {p.stem}" for p in group],
                "similarities": [1.0] * 5,
            }
        ).encode()
        samples.append(s)
    half = n // 2
    paths = [write_tar(f"{folder}/clusters-00000.tar", samples[:half]),
             write_tar(f"{folder}/clusters-00001.tar", samples[half:])]
    return paths, "coco_mini (real JPEGs)"


def loader_bench(size: int, batch: int, consume_sps: float) -> None:
    from train.data import DataConfig, make_loader

    with tempfile.TemporaryDirectory() as tmp:
        shards, kind = write_bench_shards(str(Path(tmp) / "shards"), size)
        cfg = DataConfig(image_size=size, max_context=3, batch_size=batch, shuffle_buffer=16, num_workers=0)
        it = iter(make_loader(shards, cfg))
        next(it)
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < 5.0:
            n += next(it)["image"].shape[0]
        sps = n / (time.perf_counter() - t0)
    print(f"loader samples/s ({kind}, 1 process, target + 3 context images each): {sps:.1f}")
    print(f"trainer consumes {consume_sps:.2f} samples/s (ours with context) -> loader/trainer = "
          f"{sps / consume_sps:.1f}x (target >= 3)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--size", type=int, default=64, help="image resolution")
    ap.add_argument("--batch", type=int, default=8, help="batch size")
    ap.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (median reported)")
    ap.add_argument("--steps", type=int, default=3, help="timed training steps per round")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads for both models")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    consume = model_bench(a.size, a.batch, a.rounds, a.steps)
    loader_bench(a.size, a.batch, consume)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

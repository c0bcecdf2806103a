"""Parameter-efficient fine-tuning of EfficientNet-Lite0 for image quality (``make train-quality-finetune``).

What is trained (everything else stays the ImageNet weights):

* LoRA adapters (rank ``--rank``) on the 1x1 expand/project convolutions of blocks ``SPLIT``..15 and on
  the head convolution: ``W + (alpha / r) * B @ A`` with ``B`` starting at zero;
* the BatchNorm affine parameters (gamma, beta) of those blocks and of the head (running statistics frozen);
* a linear head on the mean+std pooled outputs of the split input and of blocks ``SPLIT``..15 and the head
  (standardised with statistics measured on train at the start), initialised by ridge regression.

Cost on a CPU: the frozen stem and blocks 0..SPLIT-1 run once per image (the whole 512 x 512 image, its
native view) and their output (stride 8, fp16) is cached under ``out/quality_cache``; training crops and
flips that activation map. The delta (LoRA factors, BN affine, head) is saved as a small ``.npz``
(``mining/weights/quality_finetune.npz``); :func:`merged_model` folds it into the PyTorch weights at load
time, so :class:`mining.quality.deep.QualityFeatures` exports and runs the tuned network unchanged.
Model selection (epoch, ridge penalty) uses val SRCC only; test is never read here.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

SPLIT = 5  # blocks SPLIT..15 (stride 16 and 32) are adapted; 0..SPLIT-1 are frozen and cached
TAPS = tuple(
    range(SPLIT - 1, 16)
)  # pooled taps of the tuned predictor (the split input, then every tuned block)
ACT_VERSION = f"lite0-relu6-act-b{SPLIT - 1}-native512-fp16-v1"
DEFAULT_DELTA = Path(__file__).resolve().parents[1] / "weights" / "quality_finetune.npz"
RIDGE_ALPHAS = (300.0, 1000.0, 3000.0, 10000.0)


def base_model():
    """EfficientNet-Lite0 with its ImageNet weights, eval mode, its own ReLU6 activations (exportable).

    (Same network as :func:`mining.quality.deep.lite0`; up to feature v2 the frozen extractor
    swapped in swish.)"""
    from mining.quality.deep import lite0

    return lite0()


def lora_targets(m) -> dict[str, object]:
    """Name -> 1x1 conv module adapted by LoRA: expand/project convs of the tuned blocks and the head conv."""
    out = {}
    for i in range(SPLIT, 16):
        b = m._blocks[i]
        for n in ("_expand_conv", "_project_conv"):
            if hasattr(b, n):
                out[f"blocks.{i}.{n}"] = getattr(b, n)
    out["conv_head"] = m._conv_head
    return out


def bn_targets(m) -> dict[str, object]:
    """Name -> BatchNorm whose affine parameters are tuned."""
    out = {}
    for i in range(SPLIT, 16):
        b = m._blocks[i]
        for n in ("_bn0", "_bn1", "_bn2"):
            if hasattr(b, n):
                out[f"blocks.{i}.{n}"] = getattr(b, n)
    out["bn1"] = m._bn1
    return out


def _lora_wrapper():
    import torch

    class LoRAConv(torch.nn.Module):
        """A frozen 1x1 conv plus ``scale * B(A(x))`` (A: in -> r, B: r -> out, B initialised to 0)."""

        def __init__(self, conv, rank: int, alpha: float, gen):
            super().__init__()
            self.conv, self.scale = conv, alpha / rank
            cin, cout = conv.weight.shape[1], conv.weight.shape[0]
            self.a = torch.nn.Parameter(torch.randn(rank, cin, generator=gen) / cin ** 0.5)
            self.b = torch.nn.Parameter(torch.zeros(cout, rank))

        def forward(self, x):
            y = torch.einsum("rc,nchw->nrhw", self.a, x)
            return self.conv(x) + self.scale * torch.einsum("or,nrhw->nohw", self.b, y)

    return LoRAConv


def add_adapters(m, rank: int = 8, alpha: float = 8.0, seed: int = 0) -> dict:
    """Wrap the LoRA targets of ``m`` in place; freeze everything but LoRA factors and BN affine.
    Returns {name: LoRAConv}."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    lora_cls = _lora_wrapper()
    for p in m.parameters():
        p.requires_grad_(False)
    wrapped = {}
    for name, conv in lora_targets(m).items():
        w = lora_cls(conv, rank, alpha, gen)
        if name == "conv_head":
            m._conv_head = w
        else:
            i, attr = name.split(".")[1:]
            setattr(m._blocks[int(i)], attr, w)
        wrapped[name] = w
    for bn in bn_targets(m).values():
        bn.weight.requires_grad_(True)
        bn.bias.requires_grad_(True)
    return wrapped


def pooled_from_split(m, x):
    """Activation of block SPLIT-1 -> [mean, std] of it, of every later block and of the head: (N, D)."""
    import torch

    outs, h = [x], x
    for b in m._blocks[SPLIT:]:
        h = b(h)
        outs.append(h)
    outs.append(m._swish(m._bn1(m._conv_head(h))))
    return torch.cat([torch.cat([o.mean((2, 3)), o.std((2, 3))], 1) for o in outs], 1)


def delta_arrays(m, wrapped: dict, head: dict) -> dict[str, np.ndarray]:
    """The trainable state as numpy arrays (LoRA factors, BN affine, standardisation + linear head)."""
    out = {}
    for name, w in wrapped.items():
        out[f"lora_a/{name}"] = w.a.detach().numpy().astype(np.float16)
        out[f"lora_b/{name}"] = (w.scale * w.b.detach().numpy()).astype(np.float16)
    for name, bn in bn_targets(m).items():
        out[f"bn_w/{name}"] = bn.weight.detach().numpy().astype(np.float32)
        out[f"bn_b/{name}"] = bn.bias.detach().numpy().astype(np.float32)
    out.update({k: np.asarray(v, np.float32) for k, v in head.items()})
    return out


def merged_model(delta: str | Path | dict):
    """EfficientNet-Lite0 with the fine-tune delta folded into its weights (plain modules, exportable)."""
    import torch

    z = dict(np.load(delta, allow_pickle=False)) if not isinstance(delta, dict) else delta
    m = base_model()
    with torch.no_grad():
        for name, conv in lora_targets(m).items():
            dw = z[f"lora_b/{name}"].astype(np.float32) @ z[f"lora_a/{name}"].astype(np.float32)
            conv.weight += torch.from_numpy(dw)[:, :, None, None]
        for name, bn in bn_targets(m).items():
            bn.weight.copy_(torch.from_numpy(z[f"bn_w/{name}"]))
            bn.bias.copy_(torch.from_numpy(z[f"bn_b/{name}"]))
    return m


def file_sha1(path: str | Path) -> str:
    """sha1 of a file's bytes (the blend records which delta it was fitted with)."""
    import hashlib

    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def head_predict(z: dict, feats: np.ndarray) -> np.ndarray:
    """Linear head of the delta on pooled tuned features -> MOS estimate (not clipped)."""
    return ((feats - z["mu"]) / z["sd"]) @ z["w"] + float(z["b"])


class TunedQuality:
    """The fine-tuned predictor: ``__call__(images) -> (N,)`` MOS estimates from the merged network run by
    :class:`~mining.quality.deep.QualityFeatures` (onnxruntime or torch) on the native 512 view."""

    def __init__(self, delta: str | Path = DEFAULT_DELTA, threads: int | None = None, backend: str = "auto"):
        from mining.quality.deep import QualityFeatures

        self.delta = dict(np.load(delta, allow_pickle=False))
        self.features = QualityFeatures(threads=threads, backend=backend, model=merged_model(self.delta),
                                        views=(("native", 512),), taps=TAPS, stats=("mean", "std"))

    def __call__(self, images: list) -> np.ndarray:
        if not images:
            return np.zeros(0)
        return head_predict(self.delta, self.features(images))


# ---------------------------------------------------------------- training


def cache_activations(rows: list[dict], cache_dir: str, threads: int = 2) -> np.ndarray:
    """(N, 40, 64, 64) fp16 outputs of block SPLIT-1 for the native 512 view of every row, cached in one
    .npy per image set (memory-mapped on reuse)."""
    import hashlib

    import torch
    from PIL import Image
    from tqdm import tqdm

    from core.storage import atomic_write_bytes

    key = hashlib.sha1("\n".join(r["name"] for r in rows).encode()).hexdigest()[:12]
    path = Path(cache_dir) / ACT_VERSION / f"{key}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    torch.set_num_threads(threads)
    run = _trunk_runner(threads)
    out = None
    for s in tqdm(range(0, len(rows), 8), desc="cache block activations", unit="batch"):
        x = np.stack([_view512(Image.open(r["file"]).convert("RGB")) for r in rows[s: s + 8]])
        h = run(x)
        if out is None:
            out = np.zeros((len(rows),) + tuple(h.shape[1:]), np.float16)
        out[s: s + len(x)] = h.astype(np.float16)
    buf = io.BytesIO()
    np.save(buf, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(str(path), buf.getvalue())
    return out


def _view512(im) -> np.ndarray:
    """The native view (BIQ2021 images are 512 x 512); the 4 smaller ones are resized to 512 x 512
    for the cache."""
    from mining.quality.deep import view

    return view(im, "native" if im.size == (512, 512) else "full", 512)


def _trunk_runner(threads: int):
    """``f(x: (N, 3, H, W) float32) -> (N, C, H/8, W/8)`` frozen stem + blocks 0..SPLIT-1 (onnxruntime when
    available: several times faster than eager PyTorch on a CPU; else torch)."""
    import torch

    m = base_model()

    class Trunk(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = m

        def forward(self, x):
            h = self.m._swish(self.m._bn0(self.m._conv_stem(x)))
            for b in self.m._blocks[:SPLIT]:
                h = b(h)
            return h

    trunk = Trunk().eval()
    try:
        import onnx  # noqa: F401

        from mining.quality.deep import onnx_session

        sess = onnx_session(trunk, threads)
        return lambda x: sess.run(None, {"x": x})[0]
    except ImportError:
        def run(x):
            with torch.inference_mode():
                return trunk(torch.from_numpy(x)).numpy()

        return run


def _srcc(a, b) -> float:
    from scipy import stats

    return float(stats.spearmanr(a, b).statistic)


def _pooled(m, acts, batch: int = 16, crop: int = 0) -> np.ndarray:
    """Pooled features of the whole activation maps (or of their centre ``crop`` x ``crop``)."""
    import torch

    side = acts.shape[-1]
    o = (side - crop) // 2 if crop else 0
    sl = slice(o, o + crop) if crop else slice(None)
    with torch.no_grad():
        return np.concatenate(
            [
                pooled_from_split(
                    m, torch.from_numpy(np.asarray(acts[s : s + batch], np.float32))[:, :, sl, sl]
                ).numpy()
                for s in range(0, len(acts), batch)
            ]
        )


def train(
    biq: str,
    out: str,
    cache: str,
    rank: int = 8,
    epochs: int = 3,
    lr: float = 1e-3,
    head_lr: float = 1e-4,
    batch: int = 16,
    crop: int = 48,
    rank_weight: float = 1.0,
    seed: int = 0,
    threads: int = 1,
) -> dict:
    """Fine-tune on BIQ2021 train, select the epoch on val SRCC, write the delta + a .json summary."""
    import torch
    from tqdm import tqdm

    from core.storage import atomic_write_bytes
    from mining.quality.biq import load_biq
    from mining.quality.ridge import fit_head

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rows = load_biq(biq)
    tr = [r for r in rows if r["split"] == "train"]
    va = [r for r in rows if r["split"] == "val"]
    a_tr, a_va = cache_activations(tr, cache, threads), cache_activations(va, cache, threads)
    a_tr = torch.from_numpy(np.array(a_tr))  # writable in-memory copy (fp16)
    y_tr = np.array([r["mos"] for r in tr], np.float32)
    y_va = np.array([r["mos"] for r in va], np.float32)
    m = base_model()
    wrapped = add_adapters(m, rank, float(rank), seed)
    f0 = _pooled(m, a_tr, crop=crop)  # the training crop size (and cost); val is scored on whole maps
    f0_va = _pooled(m, a_va)
    h0 = fit_head(f0, y_tr, f0_va, y_va, alphas=RIDGE_ALPHAS)
    mu, sd, w0, b0, alpha = h0["mu"], h0["sd"], h0["w"], h0["b"], float(h0["alpha"])
    r0 = _srcc((f0_va - mu) / sd @ w0 + b0, y_va)
    print(f"epoch 0 (frozen, ridge alpha {alpha:g}): val SRCC {r0:.4f}")
    lin = torch.nn.Linear(len(mu), 1)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w0[None].astype(np.float32)))
        lin.bias.fill_(float(b0))
    mu_t, sd_t = torch.from_numpy(mu.astype(np.float32)), torch.from_numpy(sd.astype(np.float32))
    bb = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": bb, "lr": lr, "weight_decay": 0.0},
                             {"params": lin.parameters(), "lr": head_lr, "weight_decay": 1e-2}])
    steps = epochs * (len(tr) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, [lr, head_lr], total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(seed)
    var_y = float(y_tr.var())
    hist = [{"epoch": 0, "val_srcc": r0}]

    def head_state():
        return {
            "mu": mu,
            "sd": sd,
            "w": lin.weight.detach().numpy()[0].copy(),
            "b": np.float32(lin.bias.item()),
        }

    best = (r0, 0, delta_arrays(m, wrapped, head_state()))
    side = a_tr.shape[-1]

    def save(summary_extra: dict) -> dict:
        buf = io.BytesIO()
        np.savez_compressed(buf, **best[2], act_version=np.array(ACT_VERSION), rank=np.int64(rank))
        atomic_write_bytes(out, buf.getvalue())
        summary = {"rank": rank, "epochs": epochs, "lr": lr, "head_lr": head_lr, "batch": batch, "crop": crop,
                   "rank_weight": rank_weight, "seed": seed, "ridge_alpha_init": alpha, "best_epoch": best[1],
                   "val_srcc": best[0], "history": hist, "n": {"train": len(tr), "val": len(va)},
                   "bytes": len(buf.getvalue())} | summary_extra
        atomic_write_bytes(str(Path(out).with_suffix(".json")), json.dumps(summary, indent=2).encode())
        return summary

    for ep in range(1, epochs + 1):
        perm = rng.permutation(len(tr))
        tot = 0.0
        for s in tqdm(range(0, len(perm) - batch + 1, batch), desc=f"epoch {ep}", unit="step", leave=False):
            idx = perm[s: s + batch]
            oy, ox = rng.integers(0, side - crop + 1, 2)
            x = a_tr[idx][:, :, oy: oy + crop, ox: ox + crop].float()
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            p = lin((pooled_from_split(m, x) - mu_t) / sd_t)[:, 0]
            y = torch.from_numpy(y_tr[idx])
            pc, yc = p - p.mean(), y - y.mean()
            pearson = (pc * yc).sum() / (pc.norm() * yc.norm() + 1e-8)
            loss = ((p - y) ** 2).mean() / var_y + rank_weight * (1 - pearson)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss)
        with torch.no_grad():
            pv = lin((torch.from_numpy(_pooled(m, a_va)) - mu_t) / sd_t)[:, 0].numpy()
        r = _srcc(pv, y_va)
        hist.append({"epoch": ep, "train_loss": tot / (len(perm) // batch), "val_srcc": r})
        print(f"epoch {ep}: loss {tot / (len(perm) // batch):.4f} val SRCC {r:.4f}", flush=True)
        if r > best[0]:
            best = (r, ep, delta_arrays(m, wrapped, head_state()))
        save({"finished": ep == epochs})  # the best so far is on disk after every epoch
    return save({"finished": True})


def main(argv: list[str] | None = None) -> int:
    from mining.quality.biq import DEFAULT_CACHE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--biq", default="../shared/data/biq2021", help="BIQ2021 folder with metadata.csv")
    ap.add_argument("--out", default=str(DEFAULT_DELTA), help="delta file to write (.npz; a .json beside)")
    ap.add_argument("--cache", default=DEFAULT_CACHE, help="activation cache folder (gitignored)")
    ap.add_argument("--rank", type=int, default=8, help="LoRA rank of the adapted 1x1 convolutions")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs (the best val-SRCC epoch is kept)")
    ap.add_argument(
        "--lr", type=float, default=1e-3, help="peak learning rate of LoRA + BN affine (one-cycle)"
    )
    ap.add_argument("--head-lr", type=float, default=1e-4, help="peak learning rate of the linear head")
    ap.add_argument("--batch", type=int, default=16, help="images per step")
    ap.add_argument(
        "--crop", type=int, default=48, help="training crop of the 64x64 activation map (8 px per cell)"
    )
    ap.add_argument(
        "--rank-weight", type=float, default=1.0, help="weight of the (1 - batch Pearson) loss term"
    )
    ap.add_argument("--seed", type=int, default=0, help="random seed (adapters, crops, order)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a shared CPU more threads spin and slow down)",
    )
    a = ap.parse_args(argv)
    s = train(
        a.biq,
        a.out,
        a.cache,
        a.rank,
        a.epochs,
        a.lr,
        a.head_lr,
        a.batch,
        a.crop,
        a.rank_weight,
        a.seed,
        a.threads,
    )
    print(json.dumps(s, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

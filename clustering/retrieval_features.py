"""Instance-retrieval pooling over the EfficientNet-Lite0 trunk (the offline embedder's image vectors).

ImageNet-pooled features (global average of the head map) group images by class: two dogs
are as close as two photos of one dog. Instance retrieval pools the same trunk differently:

* ``gem``: generalised-mean pooling ``(mean x^p)^(1/p)`` (Radenovic et al.), p = 3: the
  strongest local activations (the object's parts) weigh more than the background average;
* ``rmac``: sum of L2-normalised max-pooled regions over 3 scales (Tolias et al.);
* multi-scale: the descriptors of the image squashed to several sizes (no centre crop, so
  nothing of the subject is cut off), summed and re-normalised;
* PCA-whitening (``clustering/weights/``): learned on shared distinct photos only; it
  down-weights the directions every photo shares (background, lighting) so that the
  remaining cosine measures what is particular to one subject.

The pooling, scales and whitening were chosen by ``bench/clustering_embedding.py`` on dev
data (``docs/clustering.md``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.vectors import l2_normalize


def trunk_maps(
    model, images: Sequence[Image.Image], size: int, crop: bool = False
) -> dict[str, torch.Tensor]:
    """Feature maps of the last block (320 ch) and of the head (1280 ch) for a batch."""
    from core.features import preprocess

    x = preprocess(images, size, crop=crop)
    x = model._swish(model._bn0(model._conv_stem(x)))
    for block in model._blocks:
        x = block(x, drop_connect_rate=0.0)
    block = x
    head = model._swish(model._bn1(model._conv_head(x)))
    return {"block": block, "head": head}


def gem(x: torch.Tensor, p: float = 3.0) -> torch.Tensor:
    """(N, C, H, W) -> (N, C) generalised mean; p = 1 is average pooling."""
    return x.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


def rmac(x: torch.Tensor, levels: int = 3) -> torch.Tensor:
    """R-MAC: regions of side 2*min(H,W)/(l+1) on an l x l-ish grid, max-pooled, normalised, summed."""
    n, c, h, w = x.shape
    out = F.normalize(x.amax(dim=(2, 3)), dim=1)
    for level in range(2, levels + 1):
        side = max(1, int(round(2 * min(h, w) / (level + 1))))
        ys = np.linspace(0, h - side, level).round().astype(int) if h > side else [0]
        xs = np.linspace(0, w - side, level).round().astype(int) if w > side else [0]
        for y in sorted(set(ys)):
            for x0 in sorted(set(xs)):
                out = out + F.normalize(x[:, :, y:y + side, x0:x0 + side].amax(dim=(2, 3)), dim=1)
    return out


def pooled(maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every candidate descriptor of one scale (for the dev table)."""
    return {k: f(maps) for k, f in POOLS.items()}


# Most images per trunk forward pass; a batch is cut into near-equal passes of at most this many.
# At 320 px one image's widest activation is ~10 MB (96 channels at 160 x 160); at 64 per pass the
# tensors were ~600 MB, each mapped and page-faulted afresh, and the clustering stage of the make
# demo corpus peaked at 4.0 GB (docs/benchmarks.md, "make demo and the clustering stage's time").
# Passes of 16 or more images give bit-identical vectors at 1 and 2 torch threads (10-13 differ by
# 2.4e-7): a Dask worker runs 1 thread, FnApiRunner 2, and tests/test_dask_runner.py wants the same
# bytes from both, so a batch of n >= 16 is never cut into a pass below 16.
TRUNK_BATCH = 32
WEIGHTS = os.path.join(os.path.dirname(__file__), "weights", "retrieval_whitening.npz")
POOLS = {
    "head_mean": lambda m: m["head"].mean(dim=(2, 3)),
    "head_gem": lambda m: gem(m["head"], 3.0),
    "head_max": lambda m: m["head"].amax(dim=(2, 3)),
    "head_rmac": lambda m: rmac(m["head"]),
    "block_gem": lambda m: gem(m["block"].clamp(min=0), 3.0),
    "block_mean": lambda m: m["block"].mean(dim=(2, 3)),
}


class RetrievalPooling:
    """The shipped retrieval descriptor: ``spec`` parts ('head_gem@224s', ...) each L2-normalised,
    summed, re-normalised, then whitened with ``weights`` when that file exists."""

    def __init__(self, spec: str = "head_rmac@320s", weights: str | None = WEIGHTS):
        self.parts = [(p.split("@")[0], int(p.split("@")[1][:-1]), p.split("@")[1].endswith("c"))
                      for p in spec.split("+")]
        self.mean = self.proj = None
        if weights and os.path.exists(weights):
            w = np.load(weights, allow_pickle=False)
            if str(w["spec"]) == spec:
                self.mean, self.proj = w["mean"].astype(np.float32), w["proj"].astype(np.float32)
        self.name = spec.replace("+", ",") + (f"+pcaw{self.proj.shape[1]}" if self.proj is not None else "")
        widths = sorted({1280 if k.startswith("head") else 320 for k, _, _ in self.parts}, reverse=True)
        self.widths = widths
        self.dim = int(self.proj.shape[1]) if self.proj is not None else sum(widths)

    @torch.no_grad()
    def embed(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        from core.features import _effnet

        model = _effnet()
        out = []
        passes = max(1, -(-len(images) // min(batch_size, TRUNK_BATCH)))
        step = max(1, -(-len(images) // passes))  # near-equal passes: none below 16 when 16+ images
        for s in range(0, len(images), step):
            batch = images[s : s + step]
            acc: dict[int, torch.Tensor] = {}
            maps_by_view = {}
            for (kind, size, crop) in self.parts:
                if (size, crop) not in maps_by_view:
                    maps_by_view[(size, crop)] = trunk_maps(model, batch, size, crop)
                v = F.normalize(POOLS[kind](maps_by_view[(size, crop)]), dim=1)
                acc[v.shape[1]] = v if v.shape[1] not in acc else acc[v.shape[1]] + v
            cat = torch.cat([F.normalize(acc[w], dim=1) for w in self.widths], dim=1)
            out.append(F.normalize(cat, dim=1).numpy())
        x = np.concatenate(out).astype(np.float32)
        if self.proj is not None:
            x = (x - self.mean) @ self.proj
        return l2_normalize(x)

"""Train the offline image-text projection (``make train-itm``) with a symmetric InfoNCE loss.

Data: the human captions of ``coco_mini`` and ``flickr8k_1k`` (5 per image), split by image
(:mod:`mining.itm.data`). The image map starts from the ridge regression of image vectors onto
their mean caption vector (closed form), then both sides are tuned contrastively: every step
takes every train image with one of its captions drawn at random, and the loss is the
cross-entropy of image->caption and caption->image over the batch. The configuration (text side
frozen or with a learned residual, weight decay) and the step are chosen on the val split by
mean recall@5; the test split is only read by ``--report`` (and by ``bench.itm_coco``).

    python -m mining.itm.train [--data ../shared/data] [--out mining/weights/itm_projection.npz] [--report]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core.vectors import l2_normalize
from mining.itm.data import DEFAULT_CACHE, DEFAULT_DATA, features, load_pairs
from mining.itm.model import DEFAULT_WEIGHTS, Projection, recall_at


@dataclass(frozen=True)
class FitConfig:
    text_residual: bool = True  # learn t + tA on the text side (else MiniLM's space as is)
    weight_decay: float = 1e-2  # on the projection matrices (decoupled, AdamW)
    lr: float = 1e-4  # 1e-3 overfits the ~870 train images within 50 full-batch steps
    steps: int = 200
    ridge: float = 1.0  # penalty of the closed-form initialisation
    seed: int = 0


GRID = [FitConfig(text_residual=r, lr=lr) for r in (False, True) for lr in (1e-4, 3e-4)]
EVAL_EVERY = 10


def ridge_init(img: np.ndarray, txt: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """W, b minimising ||X W + b - mean caption||^2 + lam ||W||^2 (the no-training baseline)."""
    y = l2_normalize(txt.mean(1))
    xm, ym = img.mean(0), y.mean(0)
    xc = img - xm
    w = np.linalg.solve(xc.T @ xc + lam * np.eye(img.shape[1]), xc.T @ (y - ym))
    return w.astype(np.float32), (ym - xm @ w).astype(np.float32)


def retrieval(proj: Projection, img: np.ndarray, txt: np.ndarray) -> dict[str, float]:
    """Image->text and text->image recall@1/5/10 over one pool (every image, all its captions)."""
    n, c, _ = txt.shape
    iv = proj.image(img)
    tv = proj.text(txt.reshape(n * c, -1))
    sim = iv @ tv.T
    i2t = recall_at(sim, [set(range(i * c, (i + 1) * c)) for i in range(n)])
    t2i = recall_at(sim.T, [{j // c} for j in range(n * c)])
    return {**{f"i2t_r{k}": v for k, v in i2t.items()}, **{f"t2i_r{k}": v for k, v in t2i.items()}, "pool": n}


def random_recall(n: int, c: int = 5, k: int = 5) -> dict[str, float]:
    """Expected recall@k of a random ranking: image->text (c of n*c right), text->image (1 of n)."""
    from math import comb

    i2t = 1.0 - comb(n * c - c, k) / comb(n * c, k)
    return {"i2t": i2t, "t2i": min(1.0, k / n)}


def _score(r: dict) -> float:
    return (r["i2t_r5"] + r["t2i_r5"]) / 2


def fit(img: np.ndarray, txt: np.ndarray, cfg: FitConfig, val: tuple[np.ndarray, np.ndarray] | None = None,
        log=None) -> tuple[Projection, dict]:
    """Train on (img (N,1280), txt (N,5,384)); with ``val`` keep the step with the best val recall@5."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    w0, b0 = ridge_init(img, txt, cfg.ridge)
    w = torch.nn.Parameter(torch.from_numpy(w0))
    b = torch.nn.Parameter(torch.from_numpy(b0))
    a = torch.nn.Parameter(torch.zeros(txt.shape[2], txt.shape[2]))
    t_scale = torch.nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
    params = [w, b, t_scale] + ([a] if cfg.text_residual else [])
    opt = torch.optim.AdamW(
        [
            {"params": [w] + ([a] if cfg.text_residual else []), "weight_decay": cfg.weight_decay},
            {"params": [b, t_scale], "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )
    x = torch.from_numpy(l2_normalize(img))
    t_all = torch.from_numpy(l2_normalize(txt))
    n, c = txt.shape[:2]
    labels = torch.arange(n)

    def current() -> Projection:
        return Projection(
            w.detach().numpy().copy(),
            b.detach().numpy().copy(),
            a.detach().numpy().copy() if cfg.text_residual else None,
            float(t_scale.detach().exp()),
        )

    best, best_r, best_step = current(), None, 0
    if val is not None:
        best_r = retrieval(best, *val)
    for step in range(1, cfg.steps + 1):
        pick = torch.randint(0, c, (n,), generator=gen)
        t = t_all[labels, pick]
        iv = F.normalize(x @ w + b, dim=1)
        tv = F.normalize(t + t @ a, dim=1) if cfg.text_residual else t
        logits = t_scale.exp().clamp(max=100.0) * iv @ tv.T
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        if val is not None and step % EVAL_EVERY == 0:
            r = retrieval(current(), *val)
            if _score(r) > _score(best_r):
                best, best_r, best_step = current(), r, step
            if log:
                log(
                    f"  step {step} loss {loss.item():.3f} val r5 i2t {r['i2t_r5']:.3f} t2i {r['t2i_r5']:.3f}"
                )
    if val is None:
        best, best_step = current(), cfg.steps
    del params
    return best, {"step": best_step, "val": best_r}


def split_arrays(pairs, img, txt, split: str, dataset: str | None = None):
    m = np.array([p.split == split and (dataset is None or p.dataset == dataset) for p in pairs])
    return img[m], txt[m]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding coco_mini/ and flickr8k_1k/")
    ap.add_argument("--out", default=str(DEFAULT_WEIGHTS), help="weights .npz")
    ap.add_argument("--cache", default=DEFAULT_CACHE, help="feature cache folder")
    ap.add_argument(
        "--report", action="store_true", help="also print test-split recall (never used for choices)"
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (full-batch steps are small)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    pairs = load_pairs(a.data)
    if not pairs:
        print(f"error: no coco_mini/flickr8k_1k metadata.json under {a.data}")
        return 2
    t0 = time.time()
    img, txt = features(pairs, a.cache)
    tr, va = split_arrays(pairs, img, txt, "train"), split_arrays(pairs, img, txt, "val")
    print(f"{len(pairs)} images: train {len(tr[0])}, val {len(va[0])}, "
          f"test {sum(p.split == 'test' for p in pairs)} (features {time.time() - t0:.0f} s)")
    w0, b0 = ridge_init(*tr, 1.0)
    print(f"ridge init only: val {retrieval(Projection(w0, b0, None, 1 / 0.07), *va)}")
    results = []
    for cfg in GRID:
        proj, info = fit(*tr, cfg, va)
        results.append((cfg, proj, info))
        r = info["val"]
        print(f"{asdict(cfg)}: best step {info['step']} val i2t r1 {r['i2t_r1']:.3f} r5 {r['i2t_r5']:.3f} "
              f"t2i r1 {r['t2i_r1']:.3f} r5 {r['t2i_r5']:.3f}")
    cfg, proj, info = max(results, key=lambda x: _score(x[2]["val"]))
    meta = {"config": asdict(cfg), "step": info["step"], "val": info["val"], "train_images": len(tr[0]),
            "image_features": "efficientnet-lite0 mean-pooled, L2", "text_features": "all-MiniLM-L6-v2",
            "command": "python -m mining.itm.train", "grid": [asdict(c) for c in GRID]}
    proj.save(a.out, meta)
    print(f"chosen {asdict(cfg)} step {info['step']} -> {a.out}")
    if a.report:
        for ds in ("coco_mini", "flickr8k_1k", None):
            te = split_arrays(pairs, img, txt, "test", ds)
            r = retrieval(Projection.load(a.out), *te)
            base = random_recall(len(te[0]))
            print(
                f"test {ds or 'both'} (pool {len(te[0])} images): "
                + json.dumps({k: round(v, 3) for k, v in r.items()})
                + f" | random r5: i2t {base['i2t']:.3f} t2i {base['t2i']:.3f}"
                + " | ridge init: "
                + json.dumps(
                    {k: round(v, 3) for k, v in retrieval(Projection(w0, b0, None, 14.3), *te).items()}
                )
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

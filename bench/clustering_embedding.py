"""Dev table for the offline retrieval embedding: which pooling of the EfficientNet-Lite0 trunk
retrieves the same subject (CelebA identity, COCO category, image_zoo group).

    nice -n 10 .venv/bin/python -m bench.clustering_embedding            # features cached in out/bench
    # --fit-whitening also writes the shipped PCA-whitening:
    nice -n 10 .venv/bin/python -m bench.clustering_embedding --fit-whitening

Splits (fixed by a hash of the identity / image id): ``dev`` picks the method, ``test`` is
reported once. Whitening is fitted only on Flickr8k + BIQ2021 photos (distinct images, neither
a dev nor a test set here).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("IIDATA_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
SCALES = (224, 320)


def split_of(label: str) -> str:
    return "dev" if int(hashlib.sha1(label.encode()).hexdigest()[:8], 16) % 2 == 0 else "test"


def load_sets(whiten_n: int = 75, celeba_ids: int = 30) -> dict[str, list[dict]]:
    """Rows {path, label, cats, split} per set; empty when ../shared/data is absent. CelebA: the
    first ``celeba_ids`` identities (sorted) of each split, all 6 photos."""
    sets: dict[str, list[dict]] = {}
    celeba = DATA / "celeba_faces" / "metadata.csv"
    if celeba.exists():
        rows = [{"path": str(celeba.parent / r["file"]), "label": r["identity"], "cats": {r["identity"]},
                 "split": split_of("id" + r["identity"])} for r in csv.DictReader(open(celeba))]
        keep = set()
        for sp in ("dev", "test"):
            keep |= set(sorted({r["label"] for r in rows if r["split"] == sp})[:celeba_ids])
        sets["celeba"] = [r for r in rows if r["label"] in keep]
    coco = DATA / "coco_mini" / "metadata.csv"
    if coco.exists():
        sets["coco"] = [{"path": str(coco.parent / r["file"]), "label": r["main_category"],
                         "cats": set(r["categories"].split("|")), "split": split_of("img" + r["image_id"])}
                        for r in csv.DictReader(open(coco))]
    zoo = DATA / "image_zoo"
    if zoo.exists():
        rows = []
        for p in sorted(zoo.rglob("ukbench*")):
            if "corrupt" in p.name or p.suffix in (".svg",):
                continue
            g = p.name[:12]
            rows.append({"path": str(p), "label": g, "cats": {g}, "split": "dev"})
        sets["zoo"] = rows
    wh = []
    for name in ("flickr8k_1k", "biq2021"):
        meta = DATA / name / "metadata.csv"
        if meta.exists():
            rs = list(csv.DictReader(open(meta)))[: whiten_n]
            wh += [
                {"path": str(meta.parent / r["file"]), "label": "", "cats": set(), "split": "whiten"}
                for r in rs
            ]
    if wh:
        sets["whiten"] = wh
    return sets


def open_image(path: str):
    from PIL import Image, ImageOps

    im = Image.open(path)
    im.draft("RGB", (640, 640))
    return ImageOps.exif_transpose(im).convert("RGB")


def extract(rows: list[dict], batch: int = 16) -> dict[str, np.ndarray]:
    """Candidate descriptors per row: '<pool>@<scale><c|s>' (c = centre crop, s = squashed)."""
    import torch

    from clustering.retrieval_features import pooled, trunk_maps
    from core.features import _effnet

    model = _effnet()
    out: dict[str, list[np.ndarray]] = {}
    views = [(224, True)] + [(s, False) for s in SCALES]
    with torch.no_grad():
        for s in range(0, len(rows), batch):
            ims = []
            for r in rows[s : s + batch]:
                try:
                    ims.append(open_image(r["path"]))
                except Exception:  # noqa: BLE001 - a broken file gets a zero descriptor (never retrieved)
                    from PIL import Image
                    ims.append(Image.new("RGB", (64, 64)))
            for size, crop in views:
                for k, v in pooled(trunk_maps(model, ims, size, crop)).items():
                    out.setdefault(f"{k}@{size}{'c' if crop else 's'}", []).append(
                        v.numpy().astype(np.float32)
                    )
    return {k: np.concatenate(v) for k, v in out.items()}


def cached_features(sets, cache: Path, chunk: int = 48) -> dict[str, dict[str, np.ndarray]]:
    """Descriptors per set, extracted in chunks that are cached one by one (resumable)."""
    feats = {}
    for name, rows in sets.items():
        parts = []
        for s in range(0, len(rows), chunk):
            f = cache / f"emb_{name}_{s:05d}_{min(s + chunk, len(rows)):05d}.npz"
            if not f.exists():
                print(f"extracting {name} {s}..{min(s + chunk, len(rows))} of {len(rows)}", flush=True)
                np.savez(f, **extract(rows[s : s + chunk]))
            parts.append(dict(np.load(f)))
        feats[name] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return feats


def norm(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def descriptor(f: dict[str, np.ndarray], spec: str) -> np.ndarray:
    """'head_gem@224s+head_gem@320s' -> the normalised parts summed per width (1280-d head, 320-d
    block), widths concatenated with equal weight, normalised (``RetrievalPooling`` does the same)."""
    by_dim: dict[int, np.ndarray] = {}
    for p in spec.split("+"):
        v = norm(f[p])
        by_dim[v.shape[1]] = by_dim.get(v.shape[1], 0) + v
    return norm(np.concatenate([norm(v) for _, v in sorted(by_dim.items(), reverse=True)], axis=1))


def fit_whitening(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA-whitening (mean, projection d x dim) on L2-normalised descriptors, shrunk eigenvalues."""
    mu = x.mean(0)
    xc = x - mu
    cov = xc.T @ xc / len(x)
    w, v = np.linalg.eigh(cov)
    order = np.argsort(w)[::-1][:dim]
    w, v = w[order], v[:, order]
    shrink = 0.5  # sqrt(eig)^-1 is noisy on 1-2k photos: whiten halfway (eig^-0.25)
    return mu.astype(np.float32), (v / np.power(w + 1e-6, shrink / 2 * 2 / 2)).astype(np.float32)


def apply_whitening(x: np.ndarray, mu: np.ndarray, proj: np.ndarray) -> np.ndarray:
    return norm((x - mu) @ proj)


def retrieval_scores(x: np.ndarray, rows: list[dict], split: str, k: int = 4) -> dict[str, float]:
    """Within ``split``: precision of each image's k nearest (same label), and share of the k nearest
    sharing any category (the COCO goal's measure)."""
    idx = [i for i, r in enumerate(rows) if r["split"] == split]
    if len(idx) < k + 1:
        return {}
    xs = x[idx]
    s = xs @ xs.T
    np.fill_diagonal(s, -np.inf)
    nn = np.argsort(-s, axis=1)[:, :k]
    lab = [rows[i]["label"] for i in idx]
    cats = [rows[i]["cats"] for i in idx]
    same = np.array([[lab[j] == lab[i] for j in nn[i]] for i in range(len(idx))])
    share = np.array([[bool(cats[j] & cats[i]) for j in nn[i]] for i in range(len(idx))])
    return {"p@k": float(same.mean()), "cat@k": float(share.mean())}


CANDIDATES = [
    "head_mean@224c", "head_gem@224c", "head_mean@224s", "head_gem@224s", "head_max@224s", "head_rmac@224s",
    "head_gem@320s", "head_rmac@320s", "block_gem@224s", "block_gem@320s",
    "head_gem@224s+head_gem@320s", "head_gem@224c+head_gem@224s+head_gem@320s",
    "head_rmac@224s+head_rmac@320s", "head_gem@224s+head_gem@320s+block_gem@320s",
    "head_rmac@320s+block_gem@320s", "head_rmac@224s+head_rmac@320s+block_gem@224s+block_gem@320s",
]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.clustering_embedding", description=__doc__)
    ap.add_argument("--cache", default="out/bench/embedding_dev")
    ap.add_argument("--split", default="dev", choices=["dev", "test"])
    ap.add_argument("--whiten-dims", default="0,64,128")
    ap.add_argument(
        "--whiten-n", type=int, default=75, help="Flickr8k + BIQ2021 photos each for the whitening (0: none)"
    )
    ap.add_argument(
        "--fit-whitening",
        default=None,
        help="descriptor spec whose whitening is written to clustering/weights",
    )
    ap.add_argument("--whiten-out-dim", type=int, default=256)
    args = ap.parse_args(argv)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    sets = load_sets(whiten_n=args.whiten_n)
    if not sets:
        print("SKIP: ../shared/data absent")
        return
    feats = cached_features(sets, cache)
    evals = [n for n in ("celeba", "coco", "zoo") if n in sets]
    print(
        f"split={args.split}  k=4  (celeba: same identity; coco: same main category / any shared category; "
        "zoo: same group)"
    )
    print(
        f"{'descriptor':55s} {'wdim':>5s} "
        + " ".join(
            f"{n + (':cat' if n == 'coco' else ''):>9s}"
            for n in evals + ["coco:cat"]
            if n != "coco:cat" or "coco" in sets
        )
    )
    for spec in CANDIDATES:
        for wd in [int(v) for v in args.whiten_dims.split(",")]:
            if wd and "whiten" not in sets:
                continue
            cells = []
            w = fit_whitening(descriptor(feats["whiten"], spec), wd) if wd else None
            for n in evals:
                x = descriptor(feats[n], spec)
                if w is not None:
                    x = apply_whitening(x, *w)
                sc = retrieval_scores(x, sets[n], args.split if n != "zoo" else "dev")
                cells.append(sc.get("p@k", float("nan")))
                if n == "coco":
                    coco_cat = sc.get("cat@k", float("nan"))
            if "coco" in sets:
                cells.append(coco_cat)
            print(f"{spec:55s} {wd:5d} " + " ".join(f"{c:9.4f}" for c in cells), flush=True)
    if args.fit_whitening:
        mu, proj = fit_whitening(descriptor(feats["whiten"], args.fit_whitening), args.whiten_out_dim)
        out = Path(__file__).resolve().parents[1] / "clustering" / "weights" / "retrieval_whitening.npz"
        out.parent.mkdir(exist_ok=True)
        np.savez_compressed(out, mean=mu.astype(np.float16), proj=proj.astype(np.float16),
                            spec=np.array(args.fit_whitening))
        print("wrote", out, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()

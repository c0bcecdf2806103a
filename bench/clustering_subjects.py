"""Subject purity of the 5-pair clusters, before vs after the retrieval changes (issue 13).

    nice -n 10 .venv/bin/python -m bench.clustering_subjects [--split dev|test]

Dev data built from ``../shared/data`` (splits by a hash of the identity / image id, as in
``bench/clustering_embedding.py``):

* ``celeba``: 30 identities of the split with 4-6 photos each (the count drawn per identity,
  seed 0), captions "a photo of a person": the held-out subject set's shape (30 subjects x 4-6
  photos), with faces as the hard case;
* ``coco``: the split's COCO images, captions "a photo of a <main category>";
* ``zoo``: the image_zoo ukbench groups (an image and its flips / resizes / format copies).

Measures per run: ``purity`` (share of non-seed members with the seed's identity / group),
``subjects`` (identities seeding at least one kept cluster, of 30), ``coco_cat`` (share of
non-seed members sharing a COCO category with the seed), clusters kept / incoherent / weak,
and the same for the ``coherent`` subset. Runs in process on cached descriptors
(``out/bench/embedding_dev``, made by ``bench.clustering_embedding``); every record is in one
domain here (domain splits are measured by ``--domains`` with the mining classifier).

``before`` = ImageNet-pooled vectors, historical thresholds, no coherence rule;
``after`` = the shipped offline embedder, calibration and coherence rule (the defaults).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.clustering_embedding import apply_whitening, cached_features, descriptor, load_sets


def subject_rows(rows: list[dict], split: str, n_subjects: int = 30, seed: int = 0) -> list[int]:
    """Indices: ``n_subjects`` identities of ``split`` with 4-6 photos each."""
    rng = np.random.default_rng(seed)
    ids = sorted({r["label"] for r in rows if r["split"] == split})
    pick = [ids[i] for i in sorted(rng.choice(len(ids), size=min(n_subjects, len(ids)), replace=False))]
    out = []
    for lab in pick:
        members = [i for i, r in enumerate(rows) if r["label"] == lab]
        out += members[: int(rng.integers(4, 7))]
    return out


_POINTS: dict = {}
_DOMAINS: dict = {}


def points_for(rows: list[dict], idx: list[int], x: np.ndarray) -> list[dict]:
    """Clustering points of ``rows[idx]`` with vectors ``x[idx]`` (decoded hashes/thumbnails cached)."""
    key = (id(rows), tuple(idx))
    if key not in _POINTS:
        _POINTS[key] = _decode_points(rows, idx)
    return [dict(p, embedding=x[p["row"]]) for p in _POINTS[key]]


def _decode_points(rows: list[dict], idx: list[int]) -> list[dict]:
    from bench.clustering_embedding import open_image
    from clustering.copy_features import thumbnail
    from clustering.embeddings_io import shrink
    from clustering.phash import phash_pair, to_signed

    pts = []
    for i in idx:
        im = shrink(open_image(rows[i]["path"]))
        ph, phf = phash_pair(im)
        pts.append({"key": f"r{i:05d}", "url": rows[i]["path"], "domain": "all", "quality": None,
                    "phash": to_signed(ph), "phash_flip": to_signed(phf), "thumb": thumbnail(im),
                    "caption_hash": None, "row": i})
    return pts


def score(clusters: list[dict], rows: list[dict], by_key: dict, n_subjects: int | None) -> dict:
    pur, cat, seeded = [], [], set()
    for c in clusters:
        seed = rows[by_key[c["keys"][0]]]
        seeded.add(seed["label"])
        for k in c["keys"][1:]:
            r = rows[by_key[k]]
            pur.append(r["label"] == seed["label"])
            cat.append(bool(r["cats"] & seed["cats"]))
    out = {"clusters": len(clusters), "purity": round(float(np.mean(pur)), 4) if pur else float("nan"),
           "cat": round(float(np.mean(cat)), 4) if cat else float("nan")}
    if n_subjects:
        out["subjects"] = f"{len(seeded)}/{n_subjects}"
    return out


def caption_of(set_name: str, row: dict) -> str:
    return "a photo of a person" if set_name == "celeba" else (
        f"a photo of a {row['label']}" if set_name == "coco" else "a photo of an object")


def mined_domains(set_name: str, rows: list[dict], head_mean: np.ndarray) -> list[str]:
    """The mining stage's per-image domain (``mining.domains`` offline classifier), from the cached
    ImageNet-pooled features (its logits are ``_fc`` of them) and the bench captions."""
    import torch

    from core.features import TextFeatures, _effnet, imagenet_class_names
    from mining.config import MiningConfig
    from mining.domains import _softmax, descriptions, imagenet_domain_map

    cfg = MiningConfig()
    doms = tuple(cfg.domains)
    with torch.no_grad():
        logits = _effnet()._fc(torch.from_numpy(head_mean)).numpy().astype(np.float64)
    img = _softmax(logits) @ imagenet_domain_map(doms, imagenet_class_names())
    img /= np.maximum(img.sum(1, keepdims=True), 1e-12)
    text = TextFeatures()
    desc = np.stack([text.embed(list(descriptions(d))).mean(0) for d in doms])
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    t = _softmax(text.embed([caption_of(set_name, r) for r in rows]).astype(np.float64) @ desc.T / 0.05)
    p = 0.4 * img + 0.6 * t
    return [doms[int(j)] for j in p.argmax(1)]


def split_share(groups: dict[str, set]) -> str:
    """'split/total' subjects whose images (or clusters) carry more than one domain."""
    multi = [g for g, d in groups.items() if len(d) > 1]
    return f"{len(multi)}/{len(groups)}"


def run_config(pts, rows, cfg, domain_mode=None) -> dict:
    from clustering.build import cluster_group

    if domain_mode == "per-domain":
        clusters, dups, stats = [], [], {}
        for dom in sorted({p["domain"] for p in pts}):
            c, d, st = cluster_group([dict(p) for p in pts if p["domain"] == dom], dom, cfg)
            clusters += c
            dups += d
            stats = {k: stats.get(k, 0) + v for k, v in st.items()}
    else:
        clusters, dups, stats = cluster_group([dict(p) for p in pts], None, cfg)
    by_key = {p["key"]: p["row"] for p in pts}
    return {"all": score(clusters, rows, by_key, None), "coherent": score(
        [c for c in clusters if c.get("coherent")], rows, by_key, None), "stats": stats, "clusters": clusters,
        "by_key": by_key, "dups": len(dups)}


def configs():
    from clustering.build import ClusterConfig
    from clustering.calibration import resolve
    from clustering.dedup import DedupConfig

    hist = ClusterConfig(reciprocal=0)
    cal = resolve("auto", "offline", faces=False)  # the cached descriptors are the trunk's alone
    dd = replace(DedupConfig(), **cal.dedup_overrides()) if cal else DedupConfig()
    after = ClusterConfig(dedup=dd, member_floor=cal.member_floor if cal else -1.0,
                          unrelated_median=cal.unrelated_median if cal else 0.0, reciprocal=5)
    return {"before": ("head_mean@224c", False, hist), "after": (None, True, after),
            "after, no coherence rule": (None, True, replace(after, member_floor=-1.0, reciprocal=0)),
            "after, floor only": (None, True, replace(after, reciprocal=0)),
            "after, mutual only": (None, True, replace(after, member_floor=-1.0))}


def sweep_configs():
    """The coherence rule's knobs (chosen on the dev split): member floor at a quantile of the shipped
    calibration's unrelated pairs, the mutual test's ``shared`` share and how many members it covers."""
    import json

    from clustering.calibration import SHIPPED

    with open(f"{SHIPPED}/offline.json", encoding="utf-8") as fh:
        unrelated = json.load(fh)["stats"]["unrelated"]
    base = configs()["after"][2]
    out = {}
    for fq in ("none", "q95", "q99"):
        for sh, mm in ((0.0, 4), (0.5, 4), (0.75, 4), (0.75, 3)):
            floor = -1.0 if fq == "none" else unrelated[fq]
            out[f"floor {fq}, shared {sh}, mutual {mm}"] = (
                None,
                True,
                replace(base, member_floor=floor, shared=sh, mutual_members=mm),
            )
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.clustering_subjects", description=__doc__)
    ap.add_argument("--split", default="dev", choices=["dev", "test"])
    ap.add_argument("--cache", default="out/bench/embedding_dev")
    ap.add_argument("--sweep", action="store_true", help="the coherence knobs instead of before/after")
    ap.add_argument(
        "--domains",
        action="store_true",
        help="label every image with the mining domain classifier: "
        "per-domain groups for 'before', votes for 'after', and how many subjects are split",
    )
    args = ap.parse_args(argv)
    sets = load_sets(whiten_n=0)
    if "celeba" not in sets:
        print("SKIP: ../shared/data absent")
        return
    from clustering.retrieval_features import RetrievalPooling

    shipped = RetrievalPooling()
    spec = "+".join(f"{k}@{s}{'c' if c else 's'}" for k, s, c in shipped.parts)
    feats = cached_features(sets, Path(args.cache))
    print(f"split={args.split}; after = {shipped.name}")
    for name, (dspec, whiten, cfg) in (sweep_configs() if args.sweep else configs()).items():
        line = [f"{name:26s}"]
        for set_name in ("celeba", "coco", "zoo"):
            rows = sets[set_name]
            x = descriptor(feats[set_name], dspec or spec)
            if whiten and shipped.proj is not None:
                x = apply_whitening(x, shipped.mean, shipped.proj)
            if set_name == "celeba":
                idx = subject_rows(rows, args.split)
            else:
                idx = [
                    i
                    for i, r in enumerate(rows)
                    if r["split"] == (args.split if set_name == "coco" else "dev")
                ]
            pts = points_for(rows, idx, x)
            domain_arg = None
            if args.domains:
                if set_name not in _DOMAINS:
                    _DOMAINS[set_name] = mined_domains(set_name, rows, feats[set_name]["head_mean@224c"])
                doms = _DOMAINS[set_name]
                for p in pts:
                    p["domain"] = doms[p["row"]]
                if name == "before":  # the historical graph: one group per mined domain
                    domain_arg = "per-domain"
            res = run_config(pts, rows, cfg, domain_arg)
            a, c, st = res["all"], res["coherent"], res["stats"]
            subj = ""
            if set_name == "celeba":
                seeded = {rows[res["by_key"][cl["keys"][0]]]["label"] for cl in res["clusters"]}
                subj = f" subjects {len(seeded)}/30"
            if args.domains:
                by_img: dict[str, set] = {}
                by_cl: dict[str, set] = {}
                for p in pts:
                    by_img.setdefault(rows[p["row"]]["label"], set()).add(p["domain"])
                for cl in res["clusters"]:
                    by_cl.setdefault(rows[res["by_key"][cl["keys"][0]]]["label"], set()).add(cl["domain"])
                subj += f" split by image labels {split_share(by_img)}, by clusters {split_share(by_cl)}"
            m = "cat" if set_name == "coco" else "purity"
            line.append(
                f"{set_name}: {m} {a[m]:.4f} (n={a['clusters']}, incoherent {st['clusters_incoherent']}, "
                f"weak {st['clusters_weak']}){subj} coherent-only {c[m]:.4f} (n={c['clusters']})"
            )
        print(" | ".join(line), flush=True)


if __name__ == "__main__":
    main()

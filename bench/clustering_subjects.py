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


def points_for(rows: list[dict], idx: list[int], x: np.ndarray) -> list[dict]:
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
                    "caption_hash": None, "embedding": x[i], "row": i})
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


def run_config(pts, rows, cfg) -> dict:
    from clustering.build import cluster_group

    clusters, dups, stats = cluster_group([dict(p) for p in pts], None, cfg)
    by_key = {p["key"]: p["row"] for p in pts}
    return {"all": score(clusters, rows, by_key, None), "coherent": score(
        [c for c in clusters if c.get("coherent")], rows, by_key, None), "stats": stats, "clusters": clusters,
        "by_key": by_key, "dups": len(dups)}


def configs():
    from clustering.build import ClusterConfig
    from clustering.calibration import resolve
    from clustering.dedup import DedupConfig

    hist = ClusterConfig()
    cal = resolve("auto", "offline")
    dd = replace(DedupConfig(), **cal.dedup_overrides()) if cal else DedupConfig()
    after = ClusterConfig(dedup=dd, member_floor=cal.member_floor if cal else -1.0,
                          unrelated_median=cal.unrelated_median if cal else 0.0, reciprocal=5)
    return {"before": ("head_mean@224c", False, hist), "after": (None, True, after),
            "after, no coherence rule": (None, True, replace(after, member_floor=-1.0, reciprocal=0))}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.clustering_subjects", description=__doc__)
    ap.add_argument("--split", default="dev", choices=["dev", "test"])
    ap.add_argument("--cache", default="out/bench/embedding_dev")
    args = ap.parse_args(argv)
    sets = load_sets()
    if "celeba" not in sets:
        print("SKIP: ../shared/data absent")
        return
    from clustering.retrieval_features import RetrievalPooling

    shipped = RetrievalPooling()
    spec = "+".join(f"{k}@{s}{'c' if c else 's'}" for k, s, c in shipped.parts)
    feats = cached_features(sets, Path(args.cache))
    print(f"split={args.split}; after = {shipped.name}")
    for name, (dspec, whiten, cfg) in configs().items():
        line = [f"{name:26s}"]
        for set_name in ("celeba", "coco", "zoo"):
            rows = sets[set_name]
            x = descriptor(feats[set_name], dspec or spec)
            if whiten and shipped.proj is not None:
                x = apply_whitening(x, shipped.mean, shipped.proj)
            if set_name == "celeba":
                idx = subject_rows(rows, args.split)
            else:
                idx = [i for i, r in enumerate(rows) if r["split"] == (args.split if set_name == "coco" else "dev")]
            res = run_config(points_for(rows, idx, x), rows, cfg)
            a, c, st = res["all"], res["coherent"], res["stats"]
            subj = ""
            if set_name == "celeba":
                seeded = {rows[res["by_key"][cl["keys"][0]]]["label"] for cl in res["clusters"]}
                subj = f" subjects {len(seeded)}/30"
            m = "cat" if set_name == "coco" else "purity"
            line.append(f"{set_name}: {m} {a[m]:.4f} (n={a['clusters']}, incoherent {st['clusters_incoherent']}, "
                        f"weak {st['clusters_weak']}){subj} coherent-only {c[m]:.4f} (n={c['clusters']})")
        print(" | ".join(line), flush=True)


if __name__ == "__main__":
    main()

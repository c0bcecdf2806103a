"""Face-identity part of the offline embedder: the mean it subtracts, its weight, and what it changes.

    nice -n 5 .venv/bin/python -m bench.clustering_faces [--fit-mean] [--split dev|test]

Data: ``../shared/data/celeba_faces`` (100 people x 6 photos), split by a hash of the identity as in
``bench/clustering_embedding.py``: ``dev`` chooses (the mean and the weight), ``test`` is read once
for the chosen weight. COCO (``coco_mini``) checks what the face part does to photos that are not
portraits: how many get a face part, and the COCO category agreement of clusters.

* ``--fit-mean``: writes ``clustering/weights/face_mean.npy``, the mean raw descriptor of every
  dev-split CelebA photo with a dominant face (test identities are never read for it).
* Table, per weight ``w`` of the face part: CelebA identity precision of each photo's 4 nearest
  (all 6 photos of the split's identities), then the clustering stage's own clusters on the
  held-out set's shape (30 identities x 4-6 photos, ``bench.clustering_subjects.subject_rows``)
  with the shipped calibration and coherence rule: purity, subjects seeding a cluster, and clusters
  kept. ``w = 0`` is the trunk alone with its own calibration (``--no-faces``, the embedder before
  this change); other rows use the shipped calibration of the embedder with faces.

Descriptors are cached in ``out/bench/faces`` (npz, no pickle).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

WEIGHTS = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def describe_all(rows: list[dict], cache: Path, tag: str, mean_path: str | None) -> dict[str, np.ndarray]:
    """Trunk vectors (the shipped pooling) and face descriptors (raw when ``mean_path`` is None)."""
    from bench.clustering_embedding import open_image
    from clustering.embeddings_io import shrink
    from clustering.face_identity import FaceIdentity
    from clustering.retrieval_features import RetrievalPooling

    f = cache / f"{tag}_{'raw' if mean_path is None else 'centred'}.npz"
    if f.exists():
        return dict(np.load(f, allow_pickle=False))
    cache.mkdir(parents=True, exist_ok=True)
    pool, faces = RetrievalPooling(), FaceIdentity(mean_path=mean_path)
    trunk, face, found = [], [], []
    for s in range(0, len(rows), 32):
        ims = [shrink(open_image(r["path"])) for r in rows[s : s + 32]]
        trunk.append(pool.embed(ims))
        v, ok = faces.describe(ims)
        face.append(v)
        found.append(ok)
        print(f"{tag}: {min(s + 32, len(rows))}/{len(rows)}", flush=True)
    out = {"trunk": np.concatenate(trunk), "face": np.concatenate(face), "found": np.concatenate(found)}
    np.savez(f, **out)
    return out


def calibrated(cfg, faces: bool):
    """``cfg`` with the thresholds of the shipped calibration for the offline embedder with / without
    its face part."""
    from dataclasses import replace

    from clustering.calibration import resolve
    from clustering.dedup import DedupConfig

    cal = resolve("auto", "offline", faces)
    return replace(cfg, dedup=replace(DedupConfig(), **cal.dedup_overrides()), member_floor=cal.member_floor,
                   unrelated_median=cal.unrelated_median)


def precision_at_4(x: np.ndarray, labels: np.ndarray) -> float:
    s = x @ x.T
    np.fill_diagonal(s, -9)
    nn = np.argsort(-s, axis=1, kind="stable")[:, :4]
    return float((labels[nn] == labels[:, None]).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.clustering_faces", description=__doc__)
    ap.add_argument("--split", default="dev", choices=["dev", "test"])
    ap.add_argument("--fit-mean", action="store_true")
    ap.add_argument("--cache", default="out/bench/faces")
    ap.add_argument("--weights", default=",".join(str(w) for w in WEIGHTS))
    args = ap.parse_args(argv)

    import csv

    from bench.clustering_embedding import DATA, split_of
    from bench.clustering_subjects import configs, points_for, run_config, subject_rows
    from clustering.face_identity import MEAN, combine

    meta = DATA / "celeba_faces" / "metadata.csv"
    if not meta.exists():
        print("SKIP: ../shared/data/celeba_faces absent")
        return
    every = [{"path": str(meta.parent / r["file"]), "label": r["identity"], "cats": {r["identity"]},
              "split": split_of("id" + r["identity"])} for r in csv.DictReader(open(meta))]
    cache = Path(args.cache)
    if args.fit_mean:
        dev = [r for r in every if r["split"] == "dev"]
        raw = describe_all(dev, cache, "celeba_dev", None)
        mu = raw["face"][raw["found"]].mean(0).astype(np.float32)
        Path(MEAN).parent.mkdir(parents=True, exist_ok=True)
        np.save(MEAN, mu)
        print(f"wrote {MEAN}: mean of {int(raw['found'].sum())} dev faces of {len(dev)} photos")
        return
    rows = [r for r in every if r["split"] == args.split]
    d = describe_all(rows, cache, f"celeba_{args.split}", MEAN)
    labels = np.array([r["label"] for r in rows])
    print(f"split={args.split}: {len(rows)} CelebA photos, {len(set(labels))} identities, "
          f"dominant face found in {int(d['found'].sum())}")
    coco_meta = DATA / "coco_mini" / "metadata.csv"
    coco = [{"path": str(coco_meta.parent / r["file"]), "label": r["main_category"],
             "cats": set(r["categories"].split("|")), "split": split_of("img" + r["image_id"])}
            for r in csv.DictReader(open(coco_meta))] if coco_meta.exists() else []
    coco = [r for r in coco if r["split"] == args.split]
    c = describe_all(coco, cache, f"coco_{args.split}", MEAN) if coco else None
    if c is not None:
        print(f"COCO {args.split}: {len(coco)} photos, dominant face in {int(c['found'].sum())}")
    # subject_rows picks 30 identities of the split with 4-6 photos; index into `rows` by path
    pos = {r["path"]: i for i, r in enumerate(rows)}
    idx = [pos[every[i]["path"]] for i in subject_rows(every, args.split)]
    after = calibrated(configs()["after"][2], faces=True)
    before = calibrated(after, faces=False)  # the trunk alone, with its own shipped calibration
    print("| face weight | CelebA p@4 (all photos) | purity | subjects seeding | clusters (incoherent) "
          "| coherent purity (n) | COCO cat (clusters) |")
    print("|---|---|---|---|---|---|---|")
    for w in (float(v) for v in args.weights.split(",")):
        cfg = before if w == 0 else after
        x = combine(d["trunk"], d["face"], w)
        p4 = precision_at_4(x, labels)
        res = run_config(points_for(rows, idx, x), rows, cfg)
        seeded = {rows[res["by_key"][cl["keys"][0]]]["label"] for cl in res["clusters"]}
        a, co, st = res["all"], res["coherent"], res["stats"]
        coco_txt = "-"
        if c is not None:
            xc = combine(c["trunk"], c["face"], w)
            rc = run_config(points_for(coco, list(range(len(coco))), xc), coco, cfg)
            coco_txt = f"{rc['all']['cat']:.4f} ({rc['all']['clusters']})"
        print(f"| {w:g} | {p4:.4f} | {a['purity']:.4f} | {len(seeded)}/30 | {a['clusters']} "
              f"({st['clusters_incoherent']}) | {co['purity']:.4f} ({co['clusters']}) | {coco_txt} |",
              flush=True)


if __name__ == "__main__":
    main()

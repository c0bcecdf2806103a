"""Near-duplicate detection and cluster quality against planted truth, copy verification on vs off.

    python -m bench.clustering_quality --dataset demo --n 400          # readers -> mining -> clustering
    python -m bench.clustering_quality --dataset coco --n 120          # real images + generated variants
    python -m bench.clustering_quality --dataset flickr --n 200

demo: ``mining.demo_corpus.generate(n, seed)`` run through the real order (readers, then
``pipelines.mine.run`` when installed, then ``pipelines.build_clusters``); ``--mined`` reuses
an already-mined folder of the same corpus. coco/flickr: the first ``--n`` images of the
shared data folder plus near-duplicate variants (``clustering/variants.py``: re-encode, resize,
crop, flip, colour shift) of a ``--fraction`` of them, clustered without mining (the variants
score the dedup stage). The pipeline runs once with the given config; the same embedded points
are then re-clustered in process with copy verification off (the previous rule) and on, side
by side (one k-means group per domain, exact for n below ``--target-group``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import replace

from clustering.build import ClusterConfig, cluster_group, weak_cluster
from clustering.cross_domain import cross_domain_duplicates, resolve_roots
from clustering.dedup import DedupConfig
from clustering.scoring import read_truth, score

DATA = os.environ.get("SHARED_DATA", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                  "..", "shared", "data"))
FOLDERS = {"coco": "coco_mini", "flickr": "flickr8k_1k"}


def real_corpus(dataset: str, n: int, out: str, fraction: float, seed: int) -> dict:
    """First ``n`` images (metadata order) of a shared-data folder plus variants; returns
    build_corpus()'s dict."""
    from clustering.variants import build_corpus

    root = os.path.join(DATA, FOLDERS[dataset])
    with open(os.path.join(root, "metadata.csv"), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:n]
    items = [(os.path.join(root, r["file"]), r["caption"]) for r in rows]
    return build_corpus(items, out, fraction=fraction, seed=seed)


def load_points(cluster_dir: str) -> list[dict]:
    from clustering.embeddings_io import to_point
    from core import storage

    return [
        to_point(m)
        for m in storage.read_parquet(storage.join(cluster_dir, "embeddings", "metadata")).to_pylist()
    ]


def recluster(
    points: list[dict], cfg: ClusterConfig, cross_domain: bool = True
) -> tuple[list[dict], list[dict], float]:
    """Exact dedup (sha256, url), the cross-domain pass, then one cluster_group per domain, in process."""
    from clustering.dedup import exact_duplicates

    t0 = time.perf_counter()
    dups, pts = [], points
    for field in ("sha256", "url"):
        groups: dict = {}
        for p in pts:
            groups.setdefault(p.get(field) if p.get(field) is not None else "\x00" + p["key"], []).append(p)
        pts = []
        for g in groups.values():
            kept, d = exact_duplicates(g, field)
            pts += kept
            dups += d
    if cross_domain:  # one global list: exact at these sizes
        pts, d, _ = cross_domain_duplicates(pts, [True] * len(pts), cfg.dedup, cfg.neighbours)
        dups += d
    clusters = []
    for dom in sorted({p["domain"] for p in pts}):
        c, d, _ = cluster_group([p for p in pts if p["domain"] == dom], dom, cfg)
        clusters += c
        dups += d
    return clusters, resolve_roots(dups), time.perf_counter() - t0


def row(name: str, res: dict, seconds: float) -> str:
    def f(v):
        return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    kinds = " ".join(f"{k or 'exact'}:{v}" for k, v in res["recall_by_kind"].items())
    return (
        f"| {name} | {f(res['recall'])} | {f(res['precision'])} | {res['removed']} | "
        f"{res['clusters_with_planted_dups']} ({res['clusters_with_near_dup_pair']}) | {f(res['purity'])} | "
        f"{res['clusters']} | {seconds:.1f} | "
        f"{kinds} |"
    )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.clustering_quality", description=__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--dataset", default="demo", choices=["demo", "coco", "flickr"], help="corpus to score")
    ap.add_argument("--n", type=int, default=None, help="demo: corpus rows; coco/flickr: originals "
                    "(default 400 demo, 120 coco, 200 flickr)")
    ap.add_argument("--seed", type=int, default=0, help="corpus / variant seed")
    ap.add_argument(
        "--fraction", type=float, default=0.5, help="coco/flickr: share of originals given a variant"
    )
    ap.add_argument("--work", default="out/bench/clustering_quality", help="work folder (reused on rerun)")
    ap.add_argument(
        "--mined", default=None, help="demo: already-mined folder of the same corpus (skips mining)"
    )
    ap.add_argument("--no-mining", action="store_true", help="demo: cluster the records without mining")
    ap.add_argument(
        "--rescore-only",
        action="store_true",
        help="run no pipeline: re-score the embedded points "
        "already in the work folder in process (e.g. an earlier mining version's output)",
    )
    args = ap.parse_args(argv)
    from core import tables
    from pipelines.build_clusters import run

    n = args.n or {"demo": 400, "coco": 120, "flickr": 200}[args.dataset]
    work = os.path.join(args.work, f"{args.dataset}_n{n}_s{args.seed}")
    t0 = time.perf_counter()
    mining = "n/a (variants score the dedup stage)"
    if args.rescore_only:  # the folder's embedded points (and its last pipeline outputs) re-scored in process
        truth_path = os.path.join(work, "corpus", "truth.csv")
        with open(os.path.join(work, "clusters", "summary.json"), encoding="utf-8") as fh:
            summary = json.load(fh)
        mining = "--rescore-only: embedded points of an earlier run; 'pipeline' row = that run's outputs"
    elif args.dataset == "demo":
        from mining.demo_corpus import generate

        corpus = generate(os.path.join(work, "corpus"), n=n, seed=args.seed, progress=False)["outputs"]
        pairs, truth_path = corpus["pairs"], corpus["truth"]
        mined = args.mined
        if mined is None and args.no_mining:
            from mining.readers import write_records

            mined = os.path.join(work, "records")
            write_records(pairs, mined)
            mining = "skipped (--no-mining): records clustered unfiltered"
        summary = run(pairs, os.path.join(work, "clusters"), mined=mined)
        if mined is not None and not args.no_mining:
            mining = f"reused {mined}"
        elif mined is None:
            mining = str(
                summary.get("upstream", {}).get("mine", {}).get("stage", summary["upstream"].get("mine"))
            )
    else:
        corpus = real_corpus(args.dataset, n, os.path.join(work, "corpus"), args.fraction, args.seed)
        from mining.readers import write_records

        records = os.path.join(work, "records")
        write_records(corpus["pairs"], records)  # finished shards are skipped on rerun
        truth_path = corpus["truth"]
        summary = run(corpus["pairs"], os.path.join(work, "clusters"), mined=records)
    pipe_s = time.perf_counter() - t0
    truth = read_truth(truth_path)
    cdir = os.path.join(work, "clusters")
    clusters = tables.read_table(os.path.join(cdir, "clusters.parquet")).to_pylist()
    dups = tables.read_table(os.path.join(cdir, "duplicates.parquet")).to_pylist()
    points = load_points(cdir)
    embedded = {p["key"] for p in points}
    pipeline = score(clusters, dups, truth, embedded)
    base_cfg = ClusterConfig(
        dedup=replace(DedupConfig(), use_copy=False), max_distance_ratio=0.0, reciprocal=0
    )
    off = recluster(points, base_cfg, cross_domain=False)
    on = recluster(points, ClusterConfig(max_distance_ratio=0.0, reciprocal=0))
    res_off, res_on = score(off[0], off[1], truth, embedded), score(on[0], on[1], truth, embedded)
    full = recluster(points, ClusterConfig(reciprocal=0))
    res_full = score(full[0], full[1], truth, embedded)
    print(
        f"\n{args.dataset}: n={n} seed={args.seed}; records read {summary['read']}, clustered {len(points)}, "
        f"mining: {mining}; pipeline {pipe_s:.1f}s; accounted={summary['accounted']}; "
        f"clusters_weak={summary.get('clusters_weak')} "
        f"cross_domain_duplicates={summary.get('cross_domain_duplicates')}"
    )
    print(
        "| run | recall | precision | flagged | clusters w/ 2 of a family (of a near-dup family) | purity | "
        "clusters | seconds | "
        "recall by degradation |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(row("pipeline (Beam, default config)", pipeline, pipe_s))
    print(
        row(
            "in-process, copy verification OFF, no cross-domain pass, no ratio test (previous rule)",
            res_off,
            off[2],
        )
    )
    print(row("in-process, copy ON + cross-domain pass, no ratio test", res_on, on[2]))
    print(row("in-process, default (copy ON + cross-domain + ratio test 2.0)", res_full, full[2]))
    for t in (1.5, 2.5):
        sel = [c for c in on[0] if not weak_cluster(c["similarities"][1:], t)]
        r = score(sel, on[1], truth, embedded)
        print(f"copy ON, --max-distance-ratio {t}: clusters {r['clusters']}, purity {r['purity']}, "
              f"clusters w/ 2 of a family {r['clusters_with_planted_dups']}")
    for t in (0.6, 0.7):
        sel = [c for c in on[0] if min(c["similarities"][1:], default=1.0) >= t]
        r = score(sel, on[1], truth, embedded)
        print(
            f"copy ON, --min-similarity {t} (absolute floor): clusters {r['clusters']}, "
            f"purity {r['purity']}, clusters w/ 2 of a family {r['clusters_with_planted_dups']}"
        )
    print(
        "targets: recall >= 0.95 at precision >= 0.98, 0 clusters holding two of a family, "
        "purity >= 0.90 (demo)"
    )
    print(
        "missed (pipeline):", pipeline["missed"], "\nfalse removals (pipeline):", pipeline["false_removals"]
    )
    print("removed by reason (pipeline):", json.dumps(summary.get("duplicates_removed")))
    return {"pipeline": pipeline, "copy_off": res_off, "copy_on": res_on, "default": res_full}


if __name__ == "__main__":
    main(sys.argv[1:])

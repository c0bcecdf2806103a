"""Clustering stage as a Beam graph: embed -> exact dedup -> cross-domain near-duplicate pass -> k-means
(over all domains by default, each cluster's domain voted by its members; ``--group-by domain``: per
domain) -> kNN, dedup, 5-pair clusters (calibrated coherence rule, ratio test).

    python -m pipelines.build_clusters --input pairs.csv --output out/clusters
    python -m pipelines.build_clusters --input IGNORED --mined out/mined --output out/clusters

Without ``--mined`` the input goes through ``mining.readers.write_records`` and
``pipelines.mine.run`` first (into ``<output>/records`` and ``<output>/mined``). Outputs in
``--output``: ``embeddings/`` (clip-retrieval layout), ``clusters.parquet``,
``duplicates.parquet``, ``shards/clusters-NNNNN.tar``, ``summary.json`` (names the calibration used:
``--calibration``, ``clustering/calibration.py``).
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import time
from collections import Counter
from typing import Any

import apache_beam as beam
import pyarrow as pa

from clustering.build import ClusterConfig
from clustering.cross_domain import CrossDomainConfig
from clustering.dedup import DedupConfig
from core import cli, storage
from core.cli import require, stdout_to_stderr
from pipelines import cluster_transforms as ct

CLUSTER_SCHEMA = pa.schema([
    ("cluster_id", pa.string()), ("domain", pa.string()), ("keys", pa.list_(pa.string())),
    ("urls", pa.list_(pa.string())), ("similarities", pa.list_(pa.float32())),
    ("coherence", pa.float32()), ("coherent", pa.bool_()),
])
# Thresholds used when no calibration applies (chosen for the ImageNet-pooled offline features).
HISTORICAL = {"cos_threshold": 0.97, "cos_alone": 0.985, "copy_min_cos": 0.5, "phash_min_cos": 0.45}
DUP_SCHEMA = pa.schema([("key", pa.string()), ("duplicate_of", pa.string()), ("reason", pa.string())])
EXACT_FIELDS = ("sha256", "url")


def kept_files(mined: str) -> list[str]:
    """The mined kept shards: ``<mined>/kept/*.parquet``, or the parquet files of ``mined`` itself."""
    kept = storage.join(mined, "kept")
    files = storage.list_files(kept, "*.parquet") if storage.exists(kept) else []
    return files or storage.list_files(mined, "*.parquet")


def prepare(input: str, output: str, runner: str | None, beam_args) -> tuple[str, dict]:
    """Read and mine ``input`` into ``output``; returns (mined folder, upstream summaries)."""
    from mining.readers import write_records

    records = storage.join(output, "records")
    upstream: dict[str, Any] = {"read": write_records(input, records)}
    try:
        from pipelines.mine import run as mine_run
    except ImportError:
        upstream["mine"] = "unavailable: pipelines.mine not installed; records clustered unfiltered"
        return records, upstream
    mined = storage.join(output, "mined")
    upstream["mine"] = mine_run(records, mined, runner=runner, beam_args=beam_args)
    return mined, upstream


def build_graph(p: beam.Pipeline, files: list[str], output: str, embedder: str, cfg: ClusterConfig,
                target_group: int, centroids: int | None, seed: int, niter: int, exact_fields, per_shard: int,
                batch_size: int, xcfg: CrossDomainConfig | None = None, group_by: str = "global") -> None:
    indexed = p | "Files" >> beam.Create(list(enumerate(files)))
    points = (indexed | "Spread" >> beam.Reshuffle()
              | "Embed" >> beam.ParDo(ct.EmbedShard(output, embedder, batch_size)))
    dup_pcs = []
    for field in exact_fields:
        points, dups = ct.exact_dedup(points, field, field)
        dup_pcs.append(dups)
    stat_pcs = []
    if xcfg is not None and xcfg.enabled:
        points, xdups, xstats = ct.cross_domain_pass(points, xcfg, cfg.dedup, seed, niter)
        dup_pcs.append(xdups)
        stat_pcs.append(xstats)
    # group_by="global": k-means over every domain, each cluster's domain voted by its members
    # (per-image domain labels split one subject); "domain": the historical per-domain groups.
    by_dom = points | "ByDomain" >> beam.Map(
        lambda q: (q["domain"] if group_by == "domain" else ct.ALL_DOMAINS, q))
    plans = (by_dom | "CountDomain" >> beam.combiners.Count.PerKey()
             | "Plan" >> beam.MapTuple(lambda d, n: (d, ct.centroid_plan(n, target_group, centroids))))
    plans_si = beam.pvalue.AsDict(plans)
    cents = (by_dom | "Sample" >> beam.Filter(ct.in_sample, plans_si, seed)
             | "GroupSample" >> beam.GroupByKey()
             | "Train" >> beam.Map(ct.train_domain, plans_si, seed, niter))
    groups = (by_dom | "Batch" >> beam.BatchElements(min_batch_size=256, max_batch_size=4096)
              | "Assign" >> beam.ParDo(ct.AssignBatch(), beam.pvalue.AsDict(cents))
              | "GroupCentroid" >> beam.GroupByKey()
              | "Cluster" >> beam.ParDo(ct.ClusterGroupFn(cfg)).with_outputs("dups", "stats", main="clusters"))
    clusters = groups.clusters
    dup_pcs.append(groups.dups)
    (clusters | "ListClusters" >> beam.combiners.ToList()
     | "WriteClusters" >> beam.Map(ct.write_rows, storage.join(output, "clusters.parquet"), CLUSTER_SCHEMA, "cluster_id"))
    (tuple(dup_pcs) | "AllDups" >> beam.Flatten() | "ListDups" >> beam.combiners.ToList()
     | "WriteDups" >> beam.Map(ct.write_duplicates, storage.join(output, "duplicates.parquet"), DUP_SCHEMA))
    ((groups.stats, *stat_pcs) | "AllStats" >> beam.Flatten() | "SumStats" >> beam.CombineGlobally(ct.sum_dicts)
     | "WriteStats" >> beam.Map(lambda s: storage.atomic_write_bytes(
         storage.join(output, "group_stats.json"), json.dumps(s, sort_keys=True).encode())))
    ct.write_cluster_shards(clusters, indexed, output, per_shard)


@storage.holds_output_lock
def run(input: str, output: str, mined: str | None = None, embedder: str = "offline", runner: str | None = "fnapi",
        beam_args=(), neighbours: int = 10, cluster_size: int = 5, min_similarity: float = 0.0, seeds: str = "all",
        knn_method: str = "auto", cos_threshold: float | None = None, cos_min_copy: float = 0.9,
        cos_alone: float | None = None, phash_threshold: int = 4, phash_min_cos: float | None = None,
        phash_min_copy: float = 0.9, caption_min_cos: float = 1.01, copy_threshold: float = 0.985,
        copy_min_cos: float | None = None, calibration: str | None = "auto", group_by: str = "global",
        reciprocal: int = 5, strict_coherence: float = 1.5,
        copy_max_colour_change: float = 0.2, copy_max_residual: float = 5.0, copy_gate: float = 0.5, layout_neighbours: int = 10, max_distance_ratio: float = 2.0,
        cross_domain: bool = True, cross_domain_group: int = 20_000, cross_domain_spill: float = 0.05, exact_fields=EXACT_FIELDS, target_group: int = 4000, centroids: int | None = None, seed: int = 0,
        niter: int = 20, per_shard: int = 1000, batch_size: int = 64, **_: Any) -> dict[str, Any]:
    """Build clusters from ``input`` (or the already-mined ``mined`` folder) into ``output``; returns the summary."""
    from pipelines.runners import make_pipeline

    t0 = time.perf_counter()
    output = output.rstrip("/")
    storage.makedirs(output)
    upstream: dict[str, Any] = {}
    if mined is None:
        mined, upstream = prepare(input, output, runner, beam_args)
    files = kept_files(mined)
    if not files:
        raise FileNotFoundError(f"no kept parquet files under {mined}")
    given = locals()
    cfg, cal = make_config(**{k: given[k] for k in CONFIG_ARGS})
    xcfg = CrossDomainConfig(enabled=cross_domain, neighbours=neighbours, group=cross_domain_group,
                             spill=cross_domain_spill)
    ct.remove_stale_embedding_shards(output, len(files))
    with make_pipeline(runner, beam_args) as p:
        build_graph(p, files, output, embedder, cfg, target_group, centroids, seed, niter, tuple(exact_fields),
                    per_shard, batch_size, xcfg, group_by)
    ids = storage.read_parquet(storage.join(output, "clusters.parquet"), columns=["cluster_id"])
    ct.remove_stale_cluster_shards(output, ids.column("cluster_id").to_pylist(), per_shard)
    summary = summarise(output, files, upstream)
    summary["calibration"] = {"name": cal.embedder, "source": cal.source, "file": calibration if calibration not in (
        None, "", "auto") else "shipped"} if cal else "none (historical fixed thresholds)"
    summary["config"] = dict(ct.config_dict(cfg), cross_domain=ct.config_dict(xcfg), embedder=embedder, target_group=target_group, centroids=centroids,
                             seed=seed, exact_fields=list(exact_fields), group_by=group_by)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    storage.atomic_write_bytes(storage.join(output, "summary.json"),
                               json.dumps(summary, indent=2, sort_keys=True, default=str).encode())
    return summary



def make_config(embedder: str = "offline", calibration: str | None = "auto", neighbours: int = 10,
                cluster_size: int = 5, min_similarity: float = 0.0, seeds: str = "all", knn_method: str = "auto",
                cos_threshold: float | None = None, cos_min_copy: float = 0.9, cos_alone: float | None = None,
                phash_threshold: int = 4, phash_min_cos: float | None = None, phash_min_copy: float = 0.9,
                caption_min_cos: float = 1.01, copy_threshold: float = 0.985, copy_min_cos: float | None = None,
                reciprocal: int = 5, strict_coherence: float = 1.5, copy_max_colour_change: float = 0.2,
                copy_max_residual: float = 5.0, copy_gate: float = 0.5, layout_neighbours: int = 10,
                max_distance_ratio: float = 2.0):
    """The clustering config of one run, thresholds filled from the embedder's calibration: (cfg, cal).

    The one place ``run`` and the benchmarks get a :class:`ClusterConfig`, so they cannot drift.
    """
    cal = resolve_calibration(calibration, embedder)
    base = cal.dedup_overrides() if cal else HISTORICAL
    given = {"cos_threshold": cos_threshold, "cos_alone": cos_alone, "copy_min_cos": copy_min_cos,
             "phash_min_cos": phash_min_cos}
    th = {k: (v if v is not None else base[k]) for k, v in given.items()}
    cos_threshold, cos_alone, copy_min_cos, phash_min_cos = (th[k] for k in given)
    cfg = ClusterConfig(neighbours=neighbours, size=cluster_size, min_similarity=min_similarity, seeds=seeds,
                        knn_method=knn_method, max_distance_ratio=max_distance_ratio,
                        member_floor=cal.member_floor if cal else -1.0,
                        unrelated_median=cal.unrelated_median if cal else 0.0,
                        reciprocal=reciprocal, strict_coherence=strict_coherence,
                        dedup=DedupConfig(cos_threshold=cos_threshold, cos_min_copy=cos_min_copy,
                                          cos_alone=cos_alone, phash_threshold=phash_threshold,
                                          phash_min_cos=phash_min_cos, phash_min_copy=phash_min_copy,
                                          caption_min_cos=caption_min_cos,
                                          use_copy=copy_threshold <= 1.0, copy_threshold=copy_threshold,
                                          copy_min_cos=copy_min_cos, copy_gate=copy_gate,
                                          copy_max_colour_change=copy_max_colour_change,
                                          copy_max_residual=copy_max_residual,
                                          layout_neighbours=layout_neighbours))
    return cfg, cal


CONFIG_ARGS = frozenset(inspect.signature(make_config).parameters)

def resolve_calibration(spec: str | None, embedder: str):
    """The calibration for ``embedder`` (see ``clustering/calibration.py``); a bad file is a ValueError."""
    from clustering.calibration import resolve

    return resolve(spec, embedder)


def summarise(output: str, files: list[str], upstream: dict) -> dict[str, Any]:
    """Stage summary from what is on disk: read = embedded + decode rejects + duplicates (all accounted)."""
    import pyarrow.parquet as pq

    read = sum(pq.ParquetFile(io.BytesIO(storage.read_bytes(f))).metadata.num_rows for f in files)
    rej = storage.read_parquet(storage.join(output, "embeddings", "rejects")).to_pylist()
    dups = storage.read_parquet(storage.join(output, "duplicates.parquet")).to_pylist()
    n_clusters = storage.read_parquet(storage.join(output, "clusters.parquet"), columns=["cluster_id"]).num_rows
    stats = json.loads(storage.read_bytes(storage.join(output, "group_stats.json")))
    rejected = Counter(r["reason"] for r in rej)
    dup_reasons = Counter(f"duplicate_{d['reason']}" for d in dups)
    rejected.update(dup_reasons)
    kept = stats.get("points", 0) - stats.get("duplicates", 0)
    return {
        "stage": "cluster",
        "read": read,
        "kept": kept,
        "rejected": dict(sorted(rejected.items())),
        "accounted": kept + sum(rejected.values()) == read,
        "clusters_kept": n_clusters,
        "clusters_too_small": stats.get("clusters_too_small", 0),
        "clusters_weak": stats.get("clusters_weak", 0),
        "clusters_incoherent": stats.get("clusters_incoherent", 0),
        "clusters_coherent": stats.get("clusters_coherent", 0),
        "cross_domain_duplicates": stats.get("cross_domain_duplicates", 0),
        "duplicates_removed": dict(sorted(Counter(d["reason"] for d in dups).items())),
        "outputs": {
            "clusters": storage.join(output, "clusters.parquet"),
            "duplicates": storage.join(output, "duplicates.parquet"),
            "embeddings": storage.join(output, "embeddings"),
            "shards": storage.join(output, "shards"),
        },
        "shards": len(storage.list_files(storage.join(output, "shards"), "*.tar")) if storage.exists(
            storage.join(output, "shards")) else 0,
        "upstream": upstream,
    }


def build_parser() -> argparse.ArgumentParser:
    f = argparse.ArgumentDefaultsHelpFormatter
    ap = argparse.ArgumentParser(prog="python -m pipelines.build_clusters", description=__doc__, formatter_class=f)
    ap.add_argument("--input", required=True, help="anything a reader accepts (CSV with path+caption, parquet, folder, ...)")
    ap.add_argument("--output", required=True, help="output folder")
    ap.add_argument("--mined", default=None, help="already-mined folder (<mined>/kept/*.parquet); skips reading+mining")
    ap.add_argument("--embedder", default="offline", help="offline | openclip:MODEL:PRETRAINED_OR_CHECKPOINT")
    ap.add_argument("--runner", default="fnapi", help="fnapi | direct-mp | portable | any Beam runner name")
    ap.add_argument("--neighbours", type=int, default=10, help="nearest neighbours searched per seed")
    ap.add_argument("--cluster-size", type=int, default=5, help="pairs per cluster; smaller ones are discarded")
    ap.add_argument("--min-similarity", type=float, default=0.0, help="minimum cosine of a member to its seed")
    ap.add_argument("--seeds", default="all", choices=["all", "cover"], help="every deduplicated pair seeds a cluster, "
                    "or only pairs not yet in a kept cluster")
    ap.add_argument("--knn", default="auto", choices=["auto", "flat", "ivf", "bf16"], help="kNN method inside a group")
    ap.add_argument("--calibration", default="auto", help="per-embedder thresholds (python -m clustering.calibrate): "
                    "a JSON file, 'auto' (the shipped one for --embedder offline, else none) or 'none' "
                    "(historical fixed cosines); explicit threshold flags override it")
    ap.add_argument("--group-by", default="global", choices=["global", "domain"],
                    help="k-means groups over all domains (each cluster's domain voted by its members) or per domain")
    ap.add_argument("--reciprocal", type=int, default=5, help="a member must have the seed among its this many "
                    "nearest kept neighbours (0: off)")
    ap.add_argument("--strict-coherence", type=float, default=1.5, help="'coherent' flag (subject tasks): weakest "
                    "member's cosine at least this on the calibrated scale (0 = median unrelated pair, 1 = floor)")
    ap.add_argument("--cos-threshold", type=float, default=None, help="cosine at/above which images are near-duplicates "
                    "(default: calibration, else 0.97) ...")
    ap.add_argument("--cos-min-copy", type=float, default=0.9,
                    help="... when their aligned-thumbnail copy score also reaches this (another view of one "
                    "subject can be that close; <= -1: off, plain SemDeDup) ...")
    ap.add_argument("--cos-alone", type=float, default=None,
                    help="... or their cosine reaches this (no thumbnail corroboration needed; default: calibration, "
                    "else 0.985)")
    ap.add_argument("--phash-threshold", type=int, default=4, help="flip-aware pHash distance at/below which ...")
    ap.add_argument("--phash-min-cos", type=float, default=None,
                    help="... pairs with at least this cosine are duplicates (default: calibration, else 0.45)")
    ap.add_argument("--phash-min-copy", type=float, default=0.9,
                    help="... and whose aligned-thumbnail copy score reaches this (corroboration; <= -1: off)")
    ap.add_argument("--caption-min-cos", type=float, default=1.01,
                    help="pairs with the same normalised caption and at least this cosine are duplicates (>1: off)")
    ap.add_argument("--copy-threshold", type=float, default=0.985,
                    help="aligned-thumbnail correlation (crop/flip/colour robust) at/above which ... (>1: off)")
    ap.add_argument("--copy-min-cos", type=float, default=None,
                    help="... pairs with at least this cosine are duplicates (default: calibration, else 0.5)")
    ap.add_argument("--copy-max-colour-change", type=float, default=0.2,
                    help="... and whose colour channels' contrast ratios, at that alignment, spread by at most this "
                    "log ratio (0.2: about +-10%% gain per channel; recoloured renders are not copies)")
    ap.add_argument("--copy-max-residual", type=float, default=5.0,
                    help="... and whose mean absolute difference after a per-channel gain/offset map, at that "
                    "alignment, is at most this many grey levels (of 255, on 16x16 views)")
    ap.add_argument("--copy-gate", type=float, default=0.5,
                    help="unaligned layout correlation below which a pair is not verified (pre-filter)")
    ap.add_argument("--layout-neighbours", type=int, default=10,
                    help="extra dedup candidates per record from kNN on layout vectors (0: off)")
    ap.add_argument("--max-distance-ratio", type=float, default=2.0,
                    help="discard a cluster whose weakest member is more than this many times farther (1 - cosine) "
                    "from the seed than its closest member (scale-free; 0: off)")
    ap.add_argument("--no-cross-domain", action="store_true", help="skip the global near-duplicate pass across domains")
    ap.add_argument("--cross-domain-group", type=int, default=20_000,
                    help="records per global list of the cross-domain pass (one exact list below 1.5x this)")
    ap.add_argument("--cross-domain-spill", type=float, default=0.05,
                    help="a record also joins its second global list when that centroid scores within this of its best")
    ap.add_argument("--exact-fields", default=",".join(EXACT_FIELDS), help="exact-match duplicate keys, in order")
    ap.add_argument("--target-group", type=int, default=4000, help="points per k-means centroid (sets k)")
    ap.add_argument("--centroids", type=int, default=None, help="centroids per domain (overrides --target-group)")
    ap.add_argument("--niter", type=int, default=20, help="k-means iterations")
    ap.add_argument("--seed", type=int, default=0, help="sampling and k-means seed")
    ap.add_argument("--per-shard", type=int, default=1000, help="clusters per WebDataset shard")
    ap.add_argument("--batch-size", type=int, default=64, help="embedding batch size")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, beam_args = build_parser().parse_known_args(argv)
    for name in ("input", "mined"):
        path = getattr(args, name, None)
        require(not path or storage.exists(path), f"--{name} {path} does not exist")
    with stdout_to_stderr():  # model loading chatter: stdout carries only the summary
        summary = run(args.input, args.output, mined=args.mined, embedder=args.embedder, runner=args.runner,
                      beam_args=beam_args, neighbours=args.neighbours, cluster_size=args.cluster_size,
                      min_similarity=args.min_similarity, seeds=args.seeds, knn_method=args.knn,
                      cos_threshold=args.cos_threshold, cos_min_copy=args.cos_min_copy, cos_alone=args.cos_alone,
                      phash_threshold=args.phash_threshold,
                      phash_min_cos=args.phash_min_cos,
                      phash_min_copy=args.phash_min_copy, caption_min_cos=args.caption_min_cos,
                      copy_threshold=args.copy_threshold, copy_min_cos=args.copy_min_cos, copy_gate=args.copy_gate,
                      copy_max_colour_change=args.copy_max_colour_change,
                      copy_max_residual=args.copy_max_residual,
                      layout_neighbours=args.layout_neighbours, max_distance_ratio=args.max_distance_ratio,
                      cross_domain=not args.no_cross_domain, cross_domain_group=args.cross_domain_group,
                      cross_domain_spill=args.cross_domain_spill, exact_fields=[s for s in args.exact_fields.split(",") if s],
                      target_group=args.target_group, centroids=args.centroids, seed=args.seed, niter=args.niter,
                      per_shard=args.per_shard, batch_size=args.batch_size, calibration=args.calibration,
                      group_by=args.group_by, reciprocal=args.reciprocal, strict_coherence=args.strict_coherence)
    print(json.dumps({k: v for k, v in summary.items() if k != "upstream"}, indent=2, default=str))
    return summary


if __name__ == "__main__":
    raise SystemExit(cli.run(main))

"""The whole clustering stage in this process, without Beam: the same functions, in the same order,
as the Beam graph of ``pipelines/build_clusters.py`` (embed -> exact dedup -> cross-domain pass ->
k-means -> kNN, dedup, 5-pair clusters -> tables, cluster shards, summary).

For tests, benchmarks (``bench/pipeline_e2e.py`` compares it with the Beam run) and small runs.
Beam hands each step its input through group-bys in an arbitrary order; every step here sorts
what it depends on (``clustering/steps.py``), so both paths write the same bytes.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from clustering import shards, steps
from clustering.config import ClusteringConfig, effective
from clustering.stage import EmbedStage, embed_file
from core import storage
from core.contracts import CLUSTER_SCHEMA, DUP_SCHEMA


def _grouped(pairs) -> dict:
    out: dict = defaultdict(list)
    for k, v in pairs:
        out[k].append(v)
    return out


def cross_domain_pass(points: list[dict], cfg: ClusteringConfig) -> tuple[list[dict], list[dict], list[dict]]:
    """(kept points, duplicate rows, stats) of the global near-duplicate pass."""
    x, km = cfg.cross_domain, cfg.kmeans
    keyed = [(steps.GLOBAL, p) for p in points]
    plans = {steps.GLOBAL: steps.centroid_plan(len(keyed), x.group, None)} if keyed else {}
    sample = [kv[1] for kv in keyed if steps.in_sample(kv, plans, km.seed)]
    cents = dict([steps.train_group((steps.GLOBAL, sample), plans, km.seed, km.niter)]) if sample else {}
    lists = _grouped(steps.assign_lists(keyed, cents, x.spill)) if keyed else {}
    kept, dups, stats = [], [], []
    for items in lists.values():
        k, d, s = steps.judge_list(items, cfg.cluster.dedup, x.neighbours)
        kept += k
        dups += d
        stats.append(s)
    return kept, dups, stats


def cluster_groups(points: list[dict], cfg: ClusteringConfig) -> tuple[list[dict], list[dict], list[dict]]:
    """(clusters, duplicate rows, stats) of the k-means groups."""
    km = cfg.kmeans
    by_dom = [(steps.group_key(p, km.group_by), p) for p in points]
    plans = {
        d: steps.centroid_plan(len(ps), km.target_group, km.centroids) for d, ps in _grouped(by_dom).items()
    }
    samples = _grouped(kv for kv in by_dom if steps.in_sample(kv, plans, km.seed))
    cents = dict(steps.train_group(kv, plans, km.seed, km.niter) for kv in samples.items())
    clusters, dups, stats = [], [], []
    for kv in _grouped(steps.assign_groups(by_dom, cents)).items():
        c, d, s = steps.cluster_one(kv, cfg.cluster)
        clusters += c
        dups += d
        stats.append(s)
    return clusters, dups, stats


def write_cluster_shards(clusters: list[dict], files: list[str], output: str, per_shard: int) -> None:
    """Join members with their image bytes and write the WebDataset shards."""
    wanted = {k for c in clusters for k in c["keys"]}
    images: dict[str, tuple[bytes, str]] = {}
    for path in files:
        for k, v in steps.read_images(path):
            if k in wanted:
                images.setdefault(k, v)
    n = steps.shard_count(len(clusters), per_shard)
    by_shard: dict[int, list] = defaultdict(list)
    for c in clusters:
        parts = [(pos, *images[k]) for k, (_, pos) in steps.member_refs(c) if k in images]
        sample = steps.cluster_sample(c, parts)
        if sample is not None:
            by_shard[steps.shard_index(c["cluster_id"], n)].append(sample)
    for i, ss in by_shard.items():
        shards.write_shard(output, i, ss)


def cluster_local(mined: str, output: str, config: ClusteringConfig | None = None,
                  upstream: dict | None = None) -> dict[str, Any]:
    """Cluster the kept files of ``mined`` into ``output`` without Beam; returns the summary."""
    t0 = time.perf_counter()
    cfg, cal = effective(config or ClusteringConfig())
    output = output.rstrip("/")
    storage.makedirs(output)
    files = steps.kept_files(mined)
    if not files:
        raise FileNotFoundError(f"no kept parquet files under {mined}")
    steps.remove_stale_embedding_shards(output, len(files))
    steps.remove_tables(output)  # a Beam run's parts (tables.merge off) would otherwise outlive this run
    stage = EmbedStage(cfg.embedding)
    points = [p for i, path in enumerate(files) for p in embed_file(stage, output, i, path)]
    dups: list[dict] = []
    for field in cfg.exact_fields:
        kept = []
        for group in _grouped((steps.exact_key(p, field), p) for p in points).values():
            k, d = steps.exact_split(group, field)
            kept += k
            dups += d
        points = kept
    stats: list[dict] = []
    if cfg.cross_domain.enabled:
        points, d, s = cross_domain_pass(points, cfg)
        dups += d
        stats += s
    clusters, d, s = cluster_groups(points, cfg)
    dups += d
    stats += s
    steps.write_rows(clusters, storage.join(output, "clusters.parquet"), CLUSTER_SCHEMA, "cluster_id")
    steps.write_duplicates(dups, storage.join(output, "duplicates.parquet"), DUP_SCHEMA)
    steps.write_group_stats(steps.sum_dicts(stats), output)
    write_cluster_shards(clusters, files, output, cfg.shards.per_shard)
    steps.remove_stale_cluster_shards(output, cfg.shards.per_shard)
    return steps.finish_summary(output, files, upstream or {}, cfg, cal, time.perf_counter() - t0)

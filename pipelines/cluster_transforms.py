"""Beam wiring of the clustering stage: DoFns and composite transforms over the functions of
``clustering/steps.py`` and the embedding stage (``clustering/stage.py``). No decisions live here:
``clustering/local.py`` runs the same functions without Beam."""

from __future__ import annotations

import apache_beam as beam

from clustering import shards, steps
from clustering.config import ClusteringConfig, EmbeddingConfig
from clustering.cross_domain import CrossDomainConfig
from clustering.dedup import DedupConfig
from clustering.stage import EmbedStage, embed_file
from core import config as cfgsys
from pipelines import safe_transforms as st


class EmbedShard(beam.DoFn):
    """(index, kept parquet file) -> clustering points; writes the embedding shard (skipped when finished)."""

    def __init__(self, output: str, config_json: str):
        self.output, self.config_json = output, config_json
        self.stage: EmbedStage | None = None

    def setup(self):
        import json

        self.stage = EmbedStage(cfgsys.from_dict(EmbeddingConfig, json.loads(self.config_json)))

    def process(self, item: tuple[int, str]):
        i, path = item
        yield from embed_file(self.stage, self.output, i, path)


def _tagged(result, main: str):
    """(main items, duplicate rows, stats) -> (tag, value) pairs: ``main``, 'dups' and 'stats'
    (split by ``safe_transforms.split``; tagged outputs are what DaskRunner mishandles)."""
    yield from st.tagged(main, result, ("dups", "stats"))


def exact_dedup(points, field: str, label: str):
    """Keep one point per value of ``field``; returns (kept, duplicate rows)."""

    def split(kv):
        yield from st.tagged("kept", steps.exact_split(kv[1], field), ("dups",))

    out = (points
           | f"Key{label}" >> beam.Map(lambda p, f=field: (steps.exact_key(p, f), p))
           | f"Group{label}" >> beam.GroupByKey()
           | f"Split{label}" >> beam.FlatMap(split))
    out = st.split(out, f"Split{label}", ("kept", "dups"))
    return out["kept"], out["dups"]


def centroids(keyed, prefix: str, plan, seed: int, niter: int):
    """(plans, centroids) side inputs of keyed points: count -> plan -> hash sample -> train."""
    plans = beam.pvalue.AsDict(keyed | f"{prefix}Count" >> beam.combiners.Count.PerKey()
                               | f"{prefix}Plan" >> beam.MapTuple(lambda d, n: (d, plan(n))))
    cents = (keyed | f"{prefix}Sample" >> beam.Filter(steps.in_sample, plans, seed)
             | f"{prefix}GroupSample" >> beam.GroupByKey()
             | f"{prefix}Train" >> beam.Map(steps.train_group, plans, seed, niter))
    return plans, beam.pvalue.AsDict(cents)


class AssignLists(beam.DoFn):
    """A batch of (GLOBAL, point) -> (list id, (point, is home))."""

    def __init__(self, spill: float):
        self.spill = spill

    def process(self, batch, cents: dict):
        yield from steps.assign_lists(batch, cents, self.spill)


class CrossDomainFn(beam.DoFn):
    """(list id, [(point, is home)]) -> ('kept' | 'dups' | 'stats', value) pairs."""

    def __init__(self, dedup: DedupConfig, neighbours: int):
        self.dedup, self.neighbours = dedup, neighbours

    def process(self, kv):
        yield from _tagged(steps.judge_list(kv[1], self.dedup, self.neighbours), "kept")


def cross_domain_pass(points, cfg: CrossDomainConfig, dedup: DedupConfig, seed: int, niter: int):
    """Global near-duplicate pass across domains (``clustering/cross_domain.py``); returns
    (kept points, duplicate rows, stats)."""
    keyed = points | "XKey" >> beam.Map(lambda q: (steps.GLOBAL, q))
    plans, cents = centroids(keyed, "X", lambda n: steps.centroid_plan(n, cfg.group, None), seed, niter)
    out = (st.keyed_batches(keyed, "XBatch", plans)
           | "XAssign" >> beam.ParDo(AssignLists(cfg.spill), cents)
           | "XGroupList" >> beam.GroupByKey()
           | "XJudge" >> beam.ParDo(CrossDomainFn(dedup, cfg.neighbours)))
    out = st.split(out, "XJudge", ("kept", "dups", "stats"))
    return out["kept"], out["dups"], out["stats"]


class AssignBatch(beam.DoFn):
    """A batch of (group, point) -> ((group, centroid), point)."""

    def process(self, batch, cents: dict):
        yield from steps.assign_groups(batch, cents)


class ClusterGroupFn(beam.DoFn):
    """((group, centroid), points) -> ('clusters' | 'dups' | 'stats', value) pairs."""

    def __init__(self, cfg):
        self.cfg = cfg

    def process(self, kv):
        yield from _tagged(steps.cluster_one(kv, self.cfg), "clusters")


def cluster_groups(points, cfg: ClusteringConfig):
    """k-means groups -> kNN, dedup and 5-pair clusters: {'clusters', 'dups', 'stats'} PCollections."""
    km = cfg.kmeans
    by_dom = points | "ByDomain" >> beam.Map(lambda q: (steps.group_key(q, km.group_by), q))
    plans, cents = centroids(by_dom, "", lambda n: steps.centroid_plan(n, km.target_group, km.centroids),
                             km.seed, km.niter)
    out = (st.keyed_batches(by_dom, "Batch", plans)
           | "Assign" >> beam.ParDo(AssignBatch(), cents)
           | "GroupCentroid" >> beam.GroupByKey()
           | "Cluster" >> beam.ParDo(ClusterGroupFn(cfg.cluster)))
    return st.split(out, "Cluster", ("clusters", "dups", "stats"))


def write_cluster_shards(clusters, files, output: str, per_shard: int):
    """Join cluster members with their image bytes and write WebDataset shards."""
    members = clusters | "Members" >> beam.FlatMap(steps.member_refs)
    images = files | "ReadImages" >> beam.FlatMap(lambda item: steps.read_images(item[1]))

    def route(kv):
        _, g = kv
        imgs = list(g["img"])
        if imgs:
            data, caption = imgs[0]
            for cid, pos in g["m"]:
                yield cid, (pos, data, caption)

    def assemble(kv):
        _, g = kv
        metas = list(g["c"])
        sample = steps.cluster_sample(metas[0], list(g["p"])) if metas else None
        if sample is not None:
            yield sample

    parts = (
        {"m": members, "img": images} | "JoinImages" >> beam.CoGroupByKey() | "Route" >> beam.FlatMap(route)
    )
    cmeta = clusters | "ById" >> beam.Map(lambda c: (c["cluster_id"], c))
    samples = (
        {"c": cmeta, "p": parts}
        | "JoinClusters" >> beam.CoGroupByKey()
        | "Assemble" >> beam.FlatMap(assemble)
    )
    n_shards = clusters | "CountClusters" >> beam.combiners.Count.Globally() | "NShards" >> beam.Map(
        steps.shard_count, per_shard)
    return (
        samples
        | "ToShard"
        >> beam.Map(lambda s, ns: (steps.shard_index(s[0], ns), s), beam.pvalue.AsSingleton(n_shards))
        | "GroupShard" >> beam.GroupByKey()
        | "WriteShard" >> beam.MapTuple(lambda i, ss: shards.write_shard(output, i, list(ss)))
    )

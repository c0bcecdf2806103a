"""Beam transforms of the clustering stage: thin wrappers over the pure logic in ``clustering/``."""

from __future__ import annotations

import math
from typing import Any

import apache_beam as beam
import numpy as np

from clustering import embeddings_io, shards
from clustering.build import ClusterConfig, cluster_group
from clustering.cross_domain import (
    CrossDomainConfig,
    cross_domain_duplicates,
    list_assignments,
    resolve_roots,
)
from clustering.dedup import DedupConfig, exact_duplicates
from clustering.kmeans import assign, hash01, num_centroids, sample_size, train_centroids
from core import storage
from core.contracts import load_image_bytes

NS = "clustering"
ALL_DOMAINS = "\x00all"  # the group key when k-means runs over every domain (clusters vote their domain)


class EmbedShard(beam.DoFn):
    """(index, kept parquet file) -> clustering points; writes the embedding shard (skipped when finished)."""

    def __init__(self, output: str, embedder: str, batch_size: int = 64):
        self.output, self.spec, self.batch_size = output, embedder, batch_size
        self.embedder = None

    def setup(self):
        from clustering.embedders import make_embedder

        self.embedder = make_embedder(self.spec, batch_size=min(self.batch_size, 64))

    def process(self, item: tuple[int, str]):
        i, path = item
        paths = embeddings_io.shard_paths(self.output, i)
        unit = [paths["metadata"], paths["img_emb"], paths["rejects"]]
        fp = storage.fingerprint([path], {"embedder": self.spec, "batch_size": self.batch_size}, stage="embed")
        if not storage.unit_done(unit, fp):  # new, or its kept file / embedder / code changed
            metas, img, txt, rejects = embeddings_io.embed_rows(storage.iter_rows(path), self.embedder,
                                                                self.batch_size)
            embeddings_io.write_shard(self.output, i, metas, img, txt, rejects)
            storage.finish_unit(unit, fp)
        else:
            metas = embeddings_io.read_shard_meta(self.output, i)
        for m in metas:
            yield embeddings_io.to_point(m)


def exact_dedup(points, field: str, label: str):
    """Keep one point per value of ``field``; returns (kept, duplicate rows)."""

    def split(kv):
        kept, dups = exact_duplicates(list(kv[1]), field)
        yield from kept
        for d in dups:
            yield beam.pvalue.TaggedOutput("dups", d)

    out = (
        points
        | f"Key{label}" >> beam.Map(lambda p, f=field: (p[f] if p.get(f) is not None else "\x00" + p["key"], p))
        | f"Group{label}" >> beam.GroupByKey()
        | f"Split{label}" >> beam.FlatMap(split).with_outputs("dups", main="kept")
    )
    return out.kept, out.dups


def centroid_plan(n: int, target_group: int, override: int | None) -> tuple[int, int]:
    k = num_centroids(n, target_group, override)
    return n, k


def in_sample(kv, plans: dict, seed: int) -> bool:
    domain, p = kv
    n, k = plans[domain]
    s = sample_size(k)
    return s > 0 and hash01(p["key"], seed) < s / n


def train_domain(kv, plans: dict, seed: int, niter: int):
    domain, pts = kv
    pts = sorted(pts, key=lambda p: p["key"])
    x = np.stack([p["embedding"] for p in pts])
    return domain, train_centroids(x, plans[domain][1], seed=seed, niter=niter)


class AssignBatch(beam.DoFn):
    """A batch of (domain, point) -> ((domain, centroid), point)."""

    def process(self, batch: list[tuple[str, dict]], centroids: dict[str, np.ndarray]):
        by_dom: dict[str, list[dict]] = {}
        for d, p in batch:
            by_dom.setdefault(d, []).append(p)
        for d, pts in by_dom.items():
            c = centroids.get(d)
            if c is None or len(c) == 1:
                labels = np.zeros(len(pts), dtype=np.int64)
            else:
                labels = assign(np.stack([p["embedding"] for p in pts]), c)
            for p, lab in zip(pts, labels):
                yield (d, int(lab)), p


class ClusterGroupFn(beam.DoFn):
    """((domain, centroid), points) -> clusters, tagged 'dups' and 'stats'."""

    def __init__(self, cfg: ClusterConfig):
        self.cfg = cfg

    def process(self, kv):
        (domain, _), pts = kv
        clusters, dups, stats = cluster_group(list(pts), None if domain == ALL_DOMAINS else domain, self.cfg)
        yield from clusters
        for d in dups:
            yield beam.pvalue.TaggedOutput("dups", d)
        yield beam.pvalue.TaggedOutput("stats", stats)


GLOBAL = "\x00global"  # the plan / centroid key of the cross-domain lists


def cross_domain_pass(points, cfg: CrossDomainConfig, dedup: DedupConfig, seed: int, niter: int):
    """Global near-duplicate pass across domains (``clustering/cross_domain.py``) as Beam stages:
    count -> hash sample -> spherical k-means lists -> home/guest assignment -> GroupByKey ->
    judge each list's home points. Returns (kept points, duplicate rows, stats)."""
    keyed = points | "XKey" >> beam.Map(lambda q: (GLOBAL, q))
    plans = beam.pvalue.AsDict(keyed | "XCount" >> beam.combiners.Count.PerKey()
                               | "XPlan" >> beam.MapTuple(lambda d, n: (d, centroid_plan(n, cfg.group, None))))
    cents = beam.pvalue.AsDict(keyed | "XSample" >> beam.Filter(in_sample, plans, seed)
                               | "XGroupSample" >> beam.GroupByKey()
                               | "XTrain" >> beam.Map(train_domain, plans, seed, niter))
    out = (keyed | "XBatch" >> beam.BatchElements(min_batch_size=256, max_batch_size=4096)
           | "XAssign" >> beam.ParDo(AssignLists(cfg.spill), cents)
           | "XGroupList" >> beam.GroupByKey()
           | "XJudge" >> beam.ParDo(CrossDomainFn(dedup, cfg.neighbours)).with_outputs("dups", "stats", main="kept"))
    return out.kept, out.dups, out.stats


class AssignLists(beam.DoFn):
    """A batch of (GLOBAL, point) -> (list id, (point, is home)); a point may also be a guest of its second list."""

    def __init__(self, spill: float):
        self.spill = spill

    def process(self, batch, centroids: dict):
        c = centroids.get(GLOBAL)
        pts = [p for _, p in batch]
        if c is None or len(c) == 1:
            scores = np.zeros((len(pts), 1), np.float32)
        else:
            scores = np.stack([p["embedding"] for p in pts]) @ np.asarray(c, np.float32).T
        for p, lists in zip(pts, list_assignments(scores, self.spill)):
            for lid, home in lists:
                yield lid, (p, home)


class CrossDomainFn(beam.DoFn):
    """(list id, [(point, is home)]) -> kept home points, tagged 'dups' and 'stats'."""

    def __init__(self, dedup: DedupConfig, neighbours: int):
        self.dedup, self.neighbours = dedup, neighbours

    def process(self, kv):
        items = list(kv[1])
        kept, dups, stats = cross_domain_duplicates([p for p, _ in items], [h for _, h in items], self.dedup,
                                                    self.neighbours)
        yield from kept
        for d in dups:
            yield beam.pvalue.TaggedOutput("dups", d)
        yield beam.pvalue.TaggedOutput("stats", stats)


def write_duplicates(rows: list[dict], path: str, schema) -> str:
    """Duplicate rows with every ``duplicate_of`` resolved to a kept record, sorted by key."""
    return write_rows(resolve_roots(rows), path, schema, "key")


def sum_dicts(dicts) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def write_rows(rows: list[dict], path: str, schema, sort_key: str) -> str:
    return storage.write_parquet(sorted(rows, key=lambda r: r[sort_key]), path, schema=schema)


def read_images(path: str):
    """(key, (encoded bytes, caption)) of every row of a kept parquet file; unreadable rows are skipped."""
    for row in storage.iter_rows(path, columns=["key", "image", "path", "caption"]):
        try:
            data = load_image_bytes(row)
        except Exception:  # noqa: BLE001 - counted as a reject in the embedding step already
            data = None
        if data:
            yield row["key"], (data, row.get("caption") or "")


def remove_stale_embedding_shards(output: str, n_files: int) -> None:
    """Embedding shards numbered beyond this run's kept files belong to an earlier, larger input."""
    folder = storage.join(output, "embeddings", "metadata")
    for f in storage.list_files(folder, "metadata_*.parquet") if storage.exists(folder) else []:
        i = int(f.rsplit("_", 1)[-1].split(".")[0])
        if i >= n_files:
            paths = embeddings_io.shard_paths(output, i)
            storage.remove_unit([paths["metadata"], paths["img_emb"], paths["text_emb"], paths["rejects"]])


def remove_stale_cluster_shards(output: str, cluster_ids: list[str], per_shard: int) -> list[str]:
    """Cluster shards that no cluster of this run maps to (same routing as ``write_cluster_shards``)."""
    ns = max(1, math.ceil(len(cluster_ids) / per_shard))
    want = {shards.shard_path(output, int(hash01(c) * ns)) for c in cluster_ids}
    folder = storage.join(output, "shards")
    gone = [f for f in (storage.list_files(folder, "*.tar") if storage.exists(folder) else []) if f not in want]
    if gone:
        storage.FileSystems.delete(gone)
    return gone


def write_cluster_shards(clusters, files, output: str, per_shard: int):
    """Join cluster members with their image bytes and write WebDataset shards."""
    members = clusters | "Members" >> beam.FlatMap(
        lambda c: [(k, (c["cluster_id"], pos)) for pos, k in enumerate(c["keys"])])
    images = files | "ReadImages" >> beam.FlatMap(lambda item: read_images(item[1]))

    def route(kv):
        _, g = kv
        imgs = list(g["img"])
        if not imgs:
            return
        data, caption = imgs[0]
        for cid, pos in g["m"]:
            yield cid, (pos, data, caption)

    parts = {"m": members, "img": images} | "JoinImages" >> beam.CoGroupByKey() | "Route" >> beam.FlatMap(route)
    cmeta = clusters | "ById" >> beam.Map(lambda c: (c["cluster_id"], c))

    def assemble(kv):
        cid, g = kv
        metas, ps = list(g["c"]), sorted(g["p"], key=lambda t: t[0])
        if not metas or len(ps) != len(metas[0]["keys"]):
            return
        yield cid, shards.sample_files(metas[0], [p[1] for p in ps], [p[2] for p in ps])

    samples = {"c": cmeta, "p": parts} | "JoinClusters" >> beam.CoGroupByKey() | "Assemble" >> beam.FlatMap(assemble)
    n_shards = clusters | "CountClusters" >> beam.combiners.Count.Globally() | "NShards" >> beam.Map(
        lambda n: max(1, math.ceil(n / per_shard)))
    return (
        samples
        | "ToShard" >> beam.Map(lambda s, ns: (int(hash01(s[0]) * ns), s), beam.pvalue.AsSingleton(n_shards))
        | "GroupShard" >> beam.GroupByKey()
        | "WriteShard" >> beam.MapTuple(lambda i, ss: shards.write_shard(output, i, list(ss)))
    )


def config_dict(cfg: ClusterConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(cfg)

"""The clustering stage's global steps as plain functions on points (dicts with ``key``,
``embedding``, hashes, ``thumb``...): exact dedup, the cross-domain lists, k-means plans, samples
and assignment, per-group clustering, the duplicate/cluster tables, cluster shards and the summary.

The Beam graph (``pipelines/build_clusters.py`` with the DoFns of ``pipelines/cluster_transforms.py``)
gives these functions their inputs through group-bys and side inputs; ``clustering/local.py`` gives
them the same inputs from lists. Keeping every decision here is what makes both paths write the
same bytes.
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from clustering import embeddings_io, shards
from clustering.build import ClusterConfig, cluster_group
from clustering.config import ALL_DOMAINS
from clustering.cross_domain import cross_domain_duplicates, list_assignments, resolve_roots
from clustering.dedup import DedupConfig, exact_duplicates
from clustering.kmeans import assign, hash01, num_centroids, sample_size, train_centroids
from core import storage, tables
from core.contracts import RunLayout, load_image_bytes

GLOBAL = "\x00global"  # the plan / centroid key of the cross-domain lists


def kept_files(mined: str) -> list[str]:
    """The mined kept shards: ``<mined>/kept/*.parquet``, or the parquet files of ``mined`` itself."""
    kept = storage.join(mined, "kept")
    files = storage.list_files(kept, "*.parquet") if storage.exists(kept) else []
    return files or storage.list_files(mined, "*.parquet")


# -- exact dedup --------------------------------------------------------------------------------
def exact_key(point: dict, field: str) -> str:
    """The group of a point in the exact pass on ``field`` (points without a value stay alone)."""
    return point[field] if point.get(field) is not None else "\x00" + point["key"]


def exact_split(points: Iterable[dict], field: str) -> tuple[list[dict], list[dict]]:
    """One exact-key group -> (kept points, duplicate rows)."""
    return exact_duplicates(list(points), field)


# -- k-means groups and cross-domain lists -----------------------------------------------------
def group_key(point: dict, group_by: str) -> str:
    """k-means group of a point: every domain together (``global``) or its own domain."""
    return point["domain"] if group_by == "domain" else ALL_DOMAINS


def centroid_plan(n: int, target_group: int, override: int | None) -> tuple[int, int]:
    """(points, centroids) of a group."""
    return n, num_centroids(n, target_group, override)


def in_sample(kv: tuple[str, dict], plans: dict, seed: int) -> bool:
    """Whether a (group, point) trains its group's centroids (hash sample of ``sample_size(k)``)."""
    domain, p = kv
    n, k = plans[domain]
    s = sample_size(k)
    return s > 0 and hash01(p["key"], seed) < s / n


def train_group(kv: tuple[str, Iterable[dict]], plans: dict, seed: int, niter: int) -> tuple[str, np.ndarray]:
    """(group, sampled points) -> (group, centroids); points sorted by key so order never matters."""
    domain, pts = kv
    pts = sorted(pts, key=lambda p: p["key"])
    x = np.stack([p["embedding"] for p in pts])
    return domain, train_centroids(x, plans[domain][1], seed=seed, niter=niter)


def assign_groups(batch: list[tuple[str, dict]], centroids: dict[str, np.ndarray]
                  ) -> Iterator[tuple[tuple[str, int], dict]]:
    """A batch of (group, point) -> ((group, centroid), point)."""
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


def cluster_one(kv: tuple[tuple[str, int], Iterable[dict]], cfg: ClusterConfig
                ) -> tuple[list[dict], list[dict], dict]:
    """((group, centroid), points) -> (clusters, duplicate rows, stats)."""
    (domain, _), pts = kv
    return cluster_group(list(pts), None if domain == ALL_DOMAINS else domain, cfg)


def assign_lists(batch: list[tuple[str, dict]], centroids: dict, spill: float
                 ) -> Iterator[tuple[int, tuple[dict, bool]]]:
    """A batch of (GLOBAL, point) -> (list id, (point, is home)); a point may also be a guest of its
    second list (``cross_domain.list_assignments``)."""
    c = centroids.get(GLOBAL)
    pts = [p for _, p in batch]
    if c is None or len(c) == 1:
        scores = np.zeros((len(pts), 1), np.float32)
    else:
        scores = np.stack([p["embedding"] for p in pts]) @ np.asarray(c, np.float32).T
    for p, lists in zip(pts, list_assignments(scores, spill)):
        for lid, home in lists:
            yield lid, (p, home)


def judge_list(items: Iterable[tuple[dict, bool]], dedup: DedupConfig, neighbours: int
               ) -> tuple[list[dict], list[dict], dict]:
    """One cross-domain list's [(point, is home)] -> (kept home points, duplicate rows, stats)."""
    items = list(items)
    return cross_domain_duplicates([p for p, _ in items], [h for _, h in items], dedup, neighbours)


def sum_dicts(dicts: Iterable[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


# -- tables -------------------------------------------------------------------------------------
def write_rows(rows: list[dict], path: str, schema, sort_key: str) -> str:
    return storage.write_parquet(sorted(rows, key=lambda r: r[sort_key]), path, schema=schema)


def write_duplicates(rows: list[dict], path: str, schema) -> str:
    """Duplicate rows with every ``duplicate_of`` resolved to a kept record, sorted by key."""
    return write_rows(resolve_roots(rows), path, schema, "key")


def write_chain_stats(stats: dict, output: str, rounds: int) -> None:
    """The duplicate-root rounds' counts: pointers moved per round, rows left to the one-worker rule."""
    moved = [stats.get(f"moved_round_{i:02d}", 0) for i in range(1, rounds + 1)]
    note = {"rounds": rounds, "rounds_moving": sum(1 for m in moved if m), "moved": moved,
            "residue": stats.get("residue", 0)}
    storage.atomic_write_bytes(RunLayout.duplicate_chains(output), json.dumps(note, sort_keys=True).encode())


def chain_stats(output: str) -> dict | None:
    path = RunLayout.duplicate_chains(output)
    return json.loads(storage.read_bytes(path)) if storage.exists(path) else None


def write_group_stats(stats: dict, output: str) -> None:
    storage.atomic_write_bytes(
        storage.join(output, "group_stats.json"), json.dumps(stats, sort_keys=True).encode()
    )


# -- cluster shards -----------------------------------------------------------------------------
def read_images(path: str) -> Iterator[tuple[str, tuple[bytes, str]]]:
    """(key, (encoded bytes, caption)) of every row of a kept parquet file; unreadable rows are skipped."""
    for row in storage.iter_rows(path, columns=["key", "image", "path", "caption"]):
        try:
            data = load_image_bytes(row)
        except Exception:  # noqa: BLE001 - counted as a reject in the embedding step already
            data = None
        if data:
            yield row["key"], (data, row.get("caption") or "")


def member_refs(cluster: dict) -> list[tuple[str, tuple[str, int]]]:
    """(member key, (cluster id, position)) of each member of a cluster."""
    return [(k, (cluster["cluster_id"], pos)) for pos, k in enumerate(cluster["keys"])]


def cluster_sample(cluster: dict, parts: list[tuple[int, bytes, str]]):
    """(cluster id, sample files) from a cluster and its members' (position, bytes, caption); None
    when a member's image is missing."""
    if len(parts) != len(cluster["keys"]):
        return None
    ps = sorted(parts, key=lambda t: t[0])
    return cluster["cluster_id"], shards.sample_files(cluster, [p[1] for p in ps], [p[2] for p in ps])


def shard_count(n_clusters: int, per_shard: int) -> int:
    return max(1, math.ceil(n_clusters / per_shard))


def shard_index(cluster_id: str, n_shards: int) -> int:
    return int(hash01(cluster_id) * n_shards)


def remove_stale_embedding_shards(output: str, n_files: int) -> None:
    """Embedding shards numbered beyond this run's kept files belong to an earlier, larger input."""
    folder = storage.join(output, "embeddings", "metadata")
    for f in storage.list_files(folder, "metadata_*.parquet") if storage.exists(folder) else []:
        i = int(f.rsplit("_", 1)[-1].split(".")[0])
        if i >= n_files:
            paths = embeddings_io.shard_paths(output, i)
            storage.remove_unit([paths["metadata"], paths["img_emb"], paths["text_emb"], paths["rejects"]])


def remove_stale_cluster_shards(output: str, per_shard: int) -> list[str]:
    """Cluster shards that no cluster of this run's ``clusters.parquet`` maps to."""
    ids = tables.read_table(RunLayout.clusters_table(output), columns=["cluster_id"])
    cluster_ids = ids.column("cluster_id").to_pylist()
    ns = shard_count(len(cluster_ids), per_shard)
    want = {shards.shard_path(output, shard_index(c, ns)) for c in cluster_ids}
    folder = storage.join(output, "shards")
    gone = [
        f for f in (storage.list_files(folder, "*.tar") if storage.exists(folder) else []) if f not in want
    ]
    if gone:
        storage.FileSystems.delete(gone)
    return gone


# -- summary ------------------------------------------------------------------------------------
def summarize(output: str, files: list[str], upstream: dict) -> dict[str, Any]:
    """Stage summary from what is on disk: read = embedded + decode rejects + duplicates (all accounted)."""
    import pyarrow.parquet as pq

    read = sum(pq.ParquetFile(io.BytesIO(storage.read_bytes(f))).metadata.num_rows for f in files)
    rej = storage.read_parquet(storage.join(output, "embeddings", "rejects")).to_pylist()
    dups = tables.read_table(RunLayout.duplicates_table(output), columns=["reason"]).to_pylist()
    n_clusters = tables.read_table(RunLayout.clusters_table(output), columns=["cluster_id"]).num_rows
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
        **({"duplicate_chains": chains} if (chains := chain_stats(output)) else {}),
    }


TABLES = ("clusters.parquet", "duplicates.parquet", "group_stats.json")  # written by the graph's sinks
# (the two parquet tables as parts in tables/ first, core/tables.py; merged by the launcher)


class AccountingError(RuntimeError):
    """The runner finished but its outputs do not account for every input row (a runner that loses
    elements or whole sinks, as Beam 2.77's DaskRunner does with some constructs: docs/runners.md)."""


def remove_tables(output: str) -> None:
    """Drop the previous run's tables before the graph runs, so a sink the runner skips shows as missing
    instead of leaving an older run's file in place."""
    gone = [storage.join(output, t) for t in TABLES if storage.exists(storage.join(output, t))]
    if storage.exists(RunLayout.duplicate_chains(output)):
        gone.append(RunLayout.duplicate_chains(output))
    if gone:
        storage.FileSystems.delete(gone)
    for t in TABLES:
        if t.endswith(".parquet"):
            tables.remove_parts(storage.join(output, t))


def merge_tables(output: str, schemas: dict, row_group_rows: int) -> None:
    """The single ``clusters.parquet`` / ``duplicates.parquet`` from the graph's parts (streaming k-way
    merge, atomic), then the parts go."""
    for t in TABLES:
        if t in schemas:
            path = storage.join(output, t)
            tables.merge(path, schemas[t], row_group_rows)
            tables.remove_parts(path)


def check_tables(output: str) -> None:
    """Every table in place: a file, or for the parquet tables a complete set of parts."""
    missing = [t for t in TABLES if not (tables.exists if t.endswith(".parquet") else storage.exists)(
        storage.join(output, t))]
    if missing:
        raise AccountingError(f"the runner finished without writing {', '.join(missing)} in {output}: "
                              "it dropped a sink of the graph")


def finish_summary(output: str, files: list[str], upstream: dict, cfg, cal, seconds: float) -> dict[str, Any]:
    """The summary (with the calibration and the effective config used), written to ``summary.json``.
    Raises :class:`AccountingError`, writing no summary, when kept + rejected != read."""
    from clustering.config import calibration_note
    from core.config import to_dict

    check_tables(output)
    summary = summarize(output, files, upstream)
    if not summary["accounted"]:
        raise AccountingError(
            f"clustering: kept {summary['kept']} + rejected {sum(summary['rejected'].values())} "
            f"!= read {summary['read']} in {output}: the runner lost or repeated elements"
        )
    summary["calibration"] = calibration_note(cfg, cal)
    summary["config"] = to_dict(cfg)
    summary["seconds"] = round(seconds, 3)
    storage.atomic_write_bytes(storage.join(output, "summary.json"),
                               json.dumps(summary, indent=2, sort_keys=True, default=str).encode())
    return summary

"""Clustering configuration: one nested dataclass, every knob written once (``core.config``).

Sections: ``embedding`` (embedder, batch size, calibration), ``cluster`` (:class:`ClusterConfig`,
with its ``dedup`` rules, :class:`DedupConfig`), ``cross_domain`` (:class:`CrossDomainConfig`),
``kmeans``, ``shards``, ``tables`` (:class:`TablesConfig`) and ``exact_fields``.
``python -m pipelines.build_clusters``' flags, YAML / ``--set`` keys and the summary's ``config``
all come from here. :func:`effective` fills
the values a calibration decides (thresholds left ``None``), so the Beam graph and the local path
(``clustering/local.py``) run one resolved config.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from clustering.build import ClusterConfig
from clustering.cross_domain import CrossDomainConfig
from core.config import knob, section

EXACT_FIELDS: tuple[str, ...] = ("sha256", "url")
ALL_DOMAINS = "\x00all"  # the group key when k-means runs over every domain (clusters vote their domain)


def faces_knob():
    """The ``faces`` field (the clustering stage's and ``clustering.calibrate``'s: one text)."""
    return field(default=True, metadata=knob(
        "offline embedder: append a face-identity descriptor (dlib) for photos with a dominant face, so "
        "portrait clusters hold one person (clustering/face_identity.py; ~20 ms a photo)"))


@dataclass(frozen=True)
class EmbeddingConfig:
    embedder: str = field(
        default="offline", metadata=knob("offline | openclip:MODEL:PRETRAINED_OR_CHECKPOINT")
    )
    faces: bool = faces_knob()
    batch_size: int = field(default=64, metadata=knob("embedding batch size", min=1))
    calibration: str = field(default="auto", metadata=knob(
        "per-embedder thresholds (python -m clustering.calibrate): a JSON file, 'auto' (the shipped one for "
        "--embedder offline, else none) or 'none' (historical fixed cosines); explicit threshold flags "
        "override it"))


@dataclass(frozen=True)
class KMeansConfig:
    target_group: int = field(default=4000, metadata=knob("points per k-means centroid (sets k)", min=1))
    centroids: int | None = field(default=None, metadata=knob(
        "centroids per group (overrides --target-group)", min=1))
    niter: int = field(default=20, metadata=knob("k-means iterations", min=1))
    seed: int = field(default=0, metadata=knob("sampling and k-means seed"))
    group_by: str = field(default="global", metadata=knob(
        "k-means groups over all domains (each cluster's domain voted by its members) or per domain",
        choices=("global", "domain")))


@dataclass(frozen=True)
class ShardConfig:
    per_shard: int = field(default=1000, metadata=knob("clusters per WebDataset shard", min=1))


@dataclass(frozen=True)
class TablesConfig:
    """How the graph writes ``clusters.parquet`` / ``duplicates.parquet`` (``core/tables.py``)."""

    rows_per_shard: int = field(default=200_000, metadata=knob(
        "rows per table part the graph writes (N = ceil(rows / this) parts; a worker holds one part)", min=1))
    merge: bool = field(default=True, metadata=knob(
        "merge the parts into the single clusters.parquet / duplicates.parquet (off at web scale: consumers "
        "read the parts in tables/)"))
    row_group_rows: int = field(default=131072, metadata=knob(
        "rows per row group of the merged files (the merge holds one; 1048576, pyarrow's default, gives "
        "the bytes of a one-shot write at any size)", min=1))
    root_rounds: int = field(default=4, metadata=knob(
        "pointer-jumping rounds resolving duplicate chains (chains up to 2^rounds links; longer ones and "
        "cycles are settled on one worker)", min=0))


@dataclass(frozen=True)
class ClusteringConfig:
    """Everything the clustering stage takes besides its folders and the Beam runner."""

    embedding: EmbeddingConfig = section(EmbeddingConfig, "embedding")
    cluster: ClusterConfig = section(ClusterConfig, "kNN, dedup and 5-pair clusters")
    cross_domain: CrossDomainConfig = section(
        CrossDomainConfig, "cross-domain near-duplicate pass", prefix=True
    )
    kmeans: KMeansConfig = section(KMeansConfig, "k-means groups")
    shards: ShardConfig = section(ShardConfig, "cluster shards")
    tables: TablesConfig = section(TablesConfig, "clusters / duplicates tables", prefix=True)
    exact_fields: tuple[str, ...] = field(default=EXACT_FIELDS, metadata=knob(
        "exact-match duplicate keys, in order"))


def resolve_calibration(cfg: ClusteringConfig):
    """The calibration for the configured embedder (``clustering/calibration.py``); a bad file is a
    ValueError."""
    from clustering.calibration import resolve

    return resolve(cfg.embedding.calibration, cfg.embedding.embedder, cfg.embedding.faces)


def effective(cfg: ClusteringConfig):
    """(config with every calibrated value filled, calibration or None): what a run uses and records."""
    cal = resolve_calibration(cfg)
    cluster = cfg.cluster.resolved(cal)
    cross = cfg.cross_domain
    if cross.neighbours is None:
        cross = replace(cross, neighbours=cluster.neighbours)
    return replace(cfg, cluster=cluster, cross_domain=cross), cal


def calibration_note(cfg: ClusteringConfig, cal) -> dict | str:
    """What the summary says about the calibration used."""
    if not cal:
        return "none (historical fixed thresholds)"
    spec = cfg.embedding.calibration
    return {
        "name": cal.embedder,
        "source": cal.source,
        "file": spec if spec not in (None, "", "auto") else "shipped",
    }

"""Clustering stage as a Beam graph: embed -> exact dedup -> cross-domain near-duplicate pass -> k-means
(over all domains by default, each cluster's domain voted by its members; ``--group-by domain``: per
domain) -> kNN, dedup, 5-pair clusters (calibrated coherence rule, ratio test).

    python -m pipelines.build_clusters --input pairs.csv --output out/clusters
    python -m pipelines.build_clusters --mined out/mined --output out/clusters

Without ``--mined`` the input goes through ``mining.readers.write_records`` and
``pipelines.mine.run`` first (into ``<output>/records`` and ``<output>/mined``). Outputs in
``--output``: ``embeddings/`` (clip-retrieval layout), ``clusters.parquet``,
``duplicates.parquet`` (written by the graph as sorted parts in ``tables/``, merged by this launcher;
``--no-tables-merge`` keeps only the parts: ``core/tables.py``), ``shards/clusters-NNNNN.tar``,
``summary.json`` (names the calibration and the effective config used: ``--calibration``,
``clustering/calibration.py``). Every option is a
field of ``clustering/config.py:ClusteringConfig`` (also as ``--config FILE.yaml`` / ``--set``);
``clustering/local.py`` runs the same stage without Beam.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from clustering import steps
from clustering.config import ClusteringConfig, effective
from core import cli, storage
from core import config as cfgsys
from core.cli import require, stdout_to_stderr
from core.config import section
from core.contracts import CLUSTER_SCHEMA, DUP_SCHEMA, RunLayout
from pipelines import cluster_transforms as ct
from pipelines import safe_transforms as st
from pipelines import table_transforms as tt
from pipelines.runners import RunnerConfig

# Keyword names ``run`` has always taken for knobs whose leaf name differs or is shared.
LEGACY_OPTIONS = {"cluster_size": "cluster.size", "knn_method": "cluster.knn_method",
                  "neighbours": "cluster.neighbours", "cross_domain": "cross_domain.enabled",
                  "cross_domain_group": "cross_domain.group", "cross_domain_spill": "cross_domain.spill"}


@dataclass(frozen=True)
class ClustersCommand:
    """Everything ``python -m pipelines.build_clusters`` takes besides its folders (YAML / --set keys)."""

    runner: RunnerConfig = section(RunnerConfig, "Beam runner")
    clustering: ClusteringConfig = section(ClusteringConfig, "clustering")


def prepare(input: str, output: str, runner: str | None, beam_args, workers: int = 2) -> tuple[str, dict]:
    """Read and mine ``input`` into ``<output>/records`` and ``<output>/mined``; returns (mined folder,
    upstream summaries)."""
    from mining.readers import write_records

    layout = RunLayout(output)
    upstream: dict[str, Any] = {"read": write_records(input, layout.records)}
    try:
        from pipelines.mine import run as mine_run
    except ImportError:
        upstream["mine"] = "unavailable: pipelines.mine not installed; records clustered unfiltered"
        return layout.records, upstream
    upstream["mine"] = mine_run(layout.records, layout.mined, runner=runner or "fnapi", workers=workers,
                                beam_args=list(beam_args))
    return layout.mined, upstream


def build_graph(p: beam.Pipeline, files: list[str], output: str, cfg: ClusteringConfig) -> None:
    """The Beam graph of one run over ``files`` with the effective config ``cfg``."""
    indexed = p | "Files" >> beam.Create(list(enumerate(files)))
    points = (indexed | "Spread" >> beam.Reshuffle()
              | "Embed" >> beam.ParDo(ct.EmbedShard(output, cfgsys.to_json(cfg.embedding))))
    dup_pcs, stat_pcs = [], []
    for field in cfg.exact_fields:
        points, dups = ct.exact_dedup(points, field, field)
        dup_pcs.append(dups)
    if cfg.cross_domain.enabled:
        points, xdups, xstats = ct.cross_domain_pass(points, cfg.cross_domain, cfg.cluster.dedup,
                                                     cfg.kmeans.seed, cfg.kmeans.niter)
        dup_pcs.append(xdups)
        stat_pcs.append(xstats)
    groups = ct.cluster_groups(points, cfg)
    clusters = groups["clusters"]
    dup_pcs.append(groups["dups"])
    tab = cfg.tables
    dups, chain_stats = tt.resolve_roots(tuple(dup_pcs) | "AllDups" >> beam.Flatten(), tab.root_rounds)
    sinks = [
        tt.write_parts(clusters, RunLayout.clusters_table(output), CLUSTER_SCHEMA, tab.rows_per_shard,
                       "ClusterParts"),
        tt.write_parts(dups, RunLayout.duplicates_table(output), DUP_SCHEMA, tab.rows_per_shard, "DupParts"),
        chain_stats
        | "AllChainStats" >> beam.Flatten()
        | "SumChainStats" >> beam.CombineGlobally(steps.sum_dicts)
        | "WriteChainStats" >> beam.Map(steps.write_chain_stats, output, tab.root_rounds),
        (groups["stats"], *stat_pcs)
        | "AllStats" >> beam.Flatten()
        | "SumStats" >> beam.CombineGlobally(steps.sum_dicts)
        | "WriteStats" >> beam.Map(steps.write_group_stats, output),
        ct.write_cluster_shards(clusters, indexed, output, cfg.shards.per_shard),
    ]
    st.finish(sinks)  # one last transform that needs every sink (DaskRunner runs only the last one)


def make_config(config: ClusteringConfig | None = None, **options) -> ClusteringConfig:
    """``config`` (default: the defaults) with keyword overrides by leaf name, dotted path or the
    legacy ``run`` keyword (``cluster_size``, ``knn_method``, ``cross_domain``...)."""
    options = {LEGACY_OPTIONS.get(k, k): v for k, v in options.items()}
    if isinstance(options.get("exact_fields"), str):
        options["exact_fields"] = [s for s in options["exact_fields"].split(",") if s]
    return cfgsys.replace_leaves(config or ClusteringConfig(), **options)


@storage.holds_output_lock
def run(input: str | None, output: str, mined: str | None = None, runner: str | None = "fnapi",
        beam_args=(), config: ClusteringConfig | None = None, workers: int = 2, **options) -> dict[str, Any]:
    """Build clusters from ``input`` (or the already-mined ``mined`` folder) into ``output``; returns the
    summary. ``options``: :class:`ClusteringConfig` leaves to change (``neighbours=``, ``per_shard=``...)."""
    from pipelines.runners import make_pipeline

    t0 = time.perf_counter()
    cfg, cal = effective(make_config(config, **options))
    output = output.rstrip("/")
    storage.makedirs(output)
    upstream: dict[str, Any] = {}
    if mined is None:
        if not input:
            raise cli.InputError("give --input (pairs to read and mine) or --mined (an already-mined folder)")
        mined, upstream = prepare(input, output, runner, beam_args, workers)
    files = steps.kept_files(mined)
    if not files:
        raise FileNotFoundError(f"no kept parquet files under {mined}")
    steps.remove_stale_embedding_shards(output, len(files))
    steps.remove_tables(output)
    with make_pipeline(runner, beam_args, workers=workers) as p:
        build_graph(p, files, output, cfg)
    steps.check_tables(output)  # parts complete (a lost sink fails here, before any merge)
    if cfg.tables.merge:
        steps.merge_tables(output, {"clusters.parquet": CLUSTER_SCHEMA, "duplicates.parquet": DUP_SCHEMA},
                           cfg.tables.row_group_rows)
    steps.remove_stale_cluster_shards(output, cfg.shards.per_shard)
    return steps.finish_summary(output, files, upstream, cfg, cal, time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = cfgsys.parser_for("python -m pipelines.build_clusters", __doc__)
    ap.add_argument(
        "--input",
        default=None,
        help="anything a reader accepts (CSV with path+caption, parquet, folder, ...); read and mined "
        "into <output>/records and <output>/mined first (not needed with --mined)",
    )
    ap.add_argument("--output", required=True, help="output folder")
    ap.add_argument(
        "--mined", default=None, help="already-mined folder (<mined>/kept/*.parquet); skips reading+mining"
    )
    cfgsys.add_flags(ap, ClustersCommand, "options")
    cfgsys.add_config_args(ap)
    args, cmd, beam_args = cfgsys.parse(ap, ClustersCommand, argv, beam=True)
    require(
        args.input or args.mined, "give --input (pairs to read and mine) or --mined (an already-mined folder)"
    )
    for name in ("mined",) if args.mined else ("input",):
        path = getattr(args, name)
        require(storage.exists(path), f"--{name} {path} does not exist")
    with stdout_to_stderr():  # model loading chatter: stdout carries only the summary
        summary = run(args.input, args.output, mined=args.mined, runner=cmd.runner.runner,
                      workers=cmd.runner.workers, beam_args=beam_args, config=cmd.clustering)
    print(json.dumps({k: v for k, v in summary.items() if k != "upstream"}, indent=2, default=str))
    return summary


if __name__ == "__main__":
    from pipelines.runners import exit_after

    exit_after(cli.run(main))

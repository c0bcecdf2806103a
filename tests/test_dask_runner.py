"""The pipelines on Beam's DaskRunner against a real ``dask.distributed`` cluster (a scheduler and 2
worker processes on loopback, ``pipelines/dask_cluster.py``), compared with FnApiRunner.

The probe runs 6 elements through each graph construct on both runners. Beam 2.77's DaskRunner
hands every element of ``with_outputs`` to every output, drops ``BatchElements``' last partial batch
(emitted in ``finish_bundle``) and runs only the transform applied last; the replacements in
``pipelines/safe_transforms.py`` give the FnApiRunner elements. The chain test runs read -> mine ->
clusters -> tasks on both runners: byte-identical outputs and counts that add up.

Skips with the reason when dask.distributed (the ``[dask]`` extra) is not installed.
"""

from __future__ import annotations

import pytest

from pipelines import dask_cluster
from tests.runner_checks import probe, run_and_compare

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = dask_cluster.skip_reason()
    if why:
        pytest.skip(why)
    c = dask_cluster.start(str(tmp_path_factory.mktemp("dask") / "logs"), n_workers=2, timeout=120)
    try:
        yield c
    finally:
        dask_cluster.stop(c)


def test_probe_constructs_we_use_agree_with_fnapi(cluster, tmp_path):
    ref = probe("fnapi", tmp_path / "fnapi", [], avoided=False)
    got = probe("dask", tmp_path / "dask", dask_cluster.beam_args(cluster), avoided=False)
    assert ref["split"] == ["1", "3", "5"] and ref["keyed_batches"] == [str(i) for i in range(6)]
    assert ref["batch_elements"] == [str(i) for i in range(6)]  # --runner dask replaces BatchElements
    assert got == ref


def test_probe_constructs_we_avoid_still_lose_elements_on_dask(cluster, tmp_path):
    """If this fails, DaskRunner now handles them and safe_transforms' workarounds could go."""
    ref = probe("fnapi", tmp_path / "fnapi", [], avoided=True)
    got = probe("stock-dask", tmp_path / "dask", dask_cluster.beam_args(cluster), avoided=True)
    assert ref["with_outputs"] == ["1", "3", "5"] and ref["batch_elements"] == [str(i) for i in range(6)]
    assert ref["extra_sink"] == ["True"]
    assert got["with_outputs"] == [str(i) for i in range(6)]  # every element reaches the tagged output
    assert got["batch_elements"] == ["0", "1", "2", "3"]  # the finish_bundle batch [4, 5] is lost
    assert got["extra_sink"] == ["False"]  # only the transform applied last runs


def test_lost_sinks_and_lost_elements_fail_the_clustering_stage(tmp_path, monkeypatch):
    """What DaskRunner's losses look like to the stage: a table never written, or kept + rejected !=
    read. Either raises AccountingError (non-zero exit), never a success summary."""
    from clustering import steps

    with pytest.raises(steps.AccountingError, match="clusters.parquet, duplicates.parquet, group_stats.json"):
        steps.finish_summary(str(tmp_path), [], {}, None, None, 0.0)
    for t in steps.TABLES:
        (tmp_path / t).write_bytes(b"x")
    steps.remove_tables(str(tmp_path))
    assert not any((tmp_path / t).exists() for t in steps.TABLES)
    for t in steps.TABLES:
        (tmp_path / t).write_bytes(b"x")
    monkeypatch.setattr(
        steps,
        "summarize",
        lambda *a: {"read": 10, "kept": 6, "rejected": {"decode_error": 2}, "accounted": False},
    )
    with pytest.raises(steps.AccountingError, match=r"kept 6 \+ rejected 2 != read 10"):
        steps.finish_summary(str(tmp_path), [], {}, None, None, 0.0)
    assert not (tmp_path / "summary.json").exists()


def test_dask_cluster_gives_the_fnapi_outputs(cluster, tmp_path):
    run_and_compare(tmp_path, "dask", "dask", dask_cluster.beam_args(cluster))

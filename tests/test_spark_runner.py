"""The pipelines on a real distributed engine: Beam's SparkRunner against a Spark standalone cluster
(a master process and a worker process from pyspark's own distribution, not an in-process mini
cluster) and Beam's Spark job server, with outputs byte-identical to FnApiRunner and counts that add
up (``pipelines/spark_cluster.py``).

Skips with the reason when Java, pyspark or the job server (Beam's Spark runner jars from Maven
Central, resolved by ``make spark-jobserver``) is missing; ``make test-spark`` provides them.
"""

from __future__ import annotations

import pytest

from pipelines import spark_cluster
from tests.runner_checks import probe, run_and_compare

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = spark_cluster.skip_reason()
    if why:
        pytest.skip(why)
    c = spark_cluster.start(str(tmp_path_factory.mktemp("spark") / "logs"), timeout=240)
    try:
        yield c
    finally:
        spark_cluster.stop(c)


def test_probe_constructs_agree_with_fnapi(cluster, tmp_path):
    """Every construct the graphs use, including those DaskRunner gets wrong, matches FnApiRunner."""
    ref = probe("fnapi", tmp_path / "fnapi", [], avoided=True)
    got = probe("SparkRunner", tmp_path / "spark", spark_cluster.beam_args(cluster), avoided=True)
    assert ref["with_outputs"] == ["1", "3", "5"] and ref["extra_sink"] == ["True"]
    assert got == ref


def test_spark_cluster_gives_the_fnapi_outputs(cluster, tmp_path):
    import json
    import urllib.request

    run_and_compare(tmp_path, "spark", "SparkRunner", spark_cluster.beam_args(cluster))
    # mine, clusters and tasks were applications of the standalone master, run by the worker's executors
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.ui_port}/json/", timeout=10) as r:
        state = json.load(r)
    apps = state.get("completedapps", []) + state.get("activeapps", [])
    assert state["aliveworkers"] == 1
    assert len(apps) >= 3 and all(a["name"].startswith("BeamApp") for a in apps)

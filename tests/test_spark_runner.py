"""The pipelines on a real distributed engine: Beam's SparkRunner against a Spark standalone cluster
(a master process and a worker process from pyspark's own distribution, not an in-process mini
cluster), with outputs byte-identical to FnApiRunner and counts that add up.

Skips with the reason when Java, pyspark or Beam's Spark 3 job-server jar (Maven Central, the Beam
Java version of the apache-beam pin) is missing; ``make test-spark`` fetches and installs them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import spark_cluster
from tests.conftest import REPO

N_PAIRS = 40
VOLATILE = ("summary.json", "read_summary.json", "card.json", "card.md")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = spark_cluster.skip_reason()
    if why:
        pytest.skip(why)
    c = spark_cluster.start(str(tmp_path_factory.mktemp("spark") / "logs"), timeout=180)
    try:
        yield c
    finally:
        spark_cluster.stop(c)


def _cli(module: str, *args: str, timeout: int = 1200) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{module} {args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def _chain(records: Path, out: Path, runner: str, extra: list[str]) -> None:
    _cli("pipelines.mine", "--input", str(records), "--output", str(out / "mined"), "--no-brisque",
         "--runner", runner, *extra)
    _cli("pipelines.build_clusters", "--mined", str(out / "mined"),
         "--output", str(out / "clusters"), "--runner", runner, *extra)
    _cli(
        "pipelines.build_tasks",
        "--input",
        str(out),
        "--output",
        str(out / "tasks"),
        "--tasks",
        "t2i,subject",
        "--runner",
        runner,
        *extra,
    )


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in VOLATILE and ".tmp-" not in p.name}


def test_spark_cluster_gives_the_fnapi_outputs(cluster, tmp_path):
    jar = spark_cluster.local_jar()
    _cli("mining.demo_corpus", "--output", str(tmp_path / "corpus"), "--n", str(N_PAIRS), "--seed", "0")
    records = tmp_path / "records"
    _cli("mining.readers", "--input", str(tmp_path / "corpus" / "pairs.csv"), "--output", str(records))
    _chain(records, tmp_path / "fnapi", "fnapi", [])
    _chain(records, tmp_path / "spark", "SparkRunner", spark_cluster.beam_args(cluster, jar))

    ref, got = _files(tmp_path / "fnapi"), _files(tmp_path / "spark")
    assert sorted(got) == sorted(ref)
    assert [k for k in ref if ref[k] != got[k]] == []
    mined = json.loads((tmp_path / "spark" / "mined" / "summary.json").read_text())
    clusters = json.loads((tmp_path / "spark" / "clusters" / "summary.json").read_text())
    tasks = json.loads((tmp_path / "spark" / "tasks" / "summary.json").read_text())
    assert mined["kept"] + sum(mined["rejected"].values()) == mined["read"] == N_PAIRS
    assert clusters["read"] == mined["kept"] == tasks["read"]
    assert clusters["kept"] + sum(clusters["rejected"].values()) == clusters["read"]

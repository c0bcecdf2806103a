"""Every stage on an object store, where folders do not exist as objects.

A real S3-compatible server (``moto`` in server mode, its own process on loopback) holds the demo
corpus; read, mine, clustering (``--mined`` a bucket prefix) and tasks run as their CLIs with every
input and output an ``s3://`` URI, through Beam's S3 filesystem. These are the paths that failed
before ``core/objectstore.py``: ``FileNotFoundError`` for ``--mined DIR``, ``KeyError 'key'`` when
tasks read ``clusters.parquet`` as mined rows, and a cluster summary with ``shards: 0``.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO

boto3 = pytest.importorskip("boto3", reason="apache-beam[aws] is not installed (pip install -e '.[aws]')")
pytest.importorskip("moto.server", reason="moto[s3] + flask are not installed (the dev extra has them)")

BUCKET = "iidata-test"
N_PAIRS = 40
CREDS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_env():
    """A moto S3 server process on loopback; yields the environment that points boto3 at it."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {**CREDS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                boto3.client("s3").create_bucket(Bucket=BUCKET)
                break
            except Exception:  # noqa: BLE001 - server still starting
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("moto server did not start within 60 s")
                time.sleep(0.5)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _keys(prefix: str) -> list[str]:
    bucket = boto3.resource("s3").Bucket(BUCKET)
    return sorted(o.key for o in bucket.objects.filter(Prefix=prefix))


def _get(key: str) -> bytes:
    return boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()


def test_prefixes_count_as_folders(s3_env):
    from core import objectstore, storage
    from mining.readers.dispatch import detect_kind

    c = boto3.client("s3")
    c.put_object(Bucket=BUCKET, Key="unit/run/mined/kept/a.parquet", Body=b"x")
    c.put_object(Bucket=BUCKET, Key="unit/imgs/a.jpg", Body=b"x")
    base = f"s3://{BUCKET}/unit"
    assert storage.exists(f"{base}/run/mined/kept") and storage.exists(f"{base}/run/mined")
    assert not storage.exists(f"{base}/run/nothing") and not storage.exists(f"{base}/run/mine")
    assert objectstore.is_dir(f"{base}/run/mined/kept") and not objectstore.is_dir(
        f"{base}/run/mined/kept/a.parquet"
    )
    assert storage.list_files(f"{base}/run/mined/kept", "*.parquet") == [f"{base}/run/mined/kept/a.parquet"]
    assert storage.list_files(f"{base}/run/mined", "*.parquet") == []  # never the files of a subfolder
    assert detect_kind(f"{base}/imgs") == "folder"  # no trailing slash needed


def test_stage_listings_find_their_inputs(s3_env):
    """The listing helpers of clustering (``--mined``) and tasks look into ``kept/``, not the run root."""
    from clustering.steps import kept_files
    from datasets.build import TaskInputs, parquet_files

    c = boto3.client("s3")
    for key in (
        "lst/run/mined/kept/k.parquet",
        "lst/run/mined/rejects/k.parquet",
        "lst/run/clusters/clusters.parquet",
    ):
        c.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    run = f"s3://{BUCKET}/lst/run"
    assert kept_files(f"{run}/mined") == [f"{run}/mined/kept/k.parquet"]
    assert TaskInputs.of(run=run).kept == f"{run}/mined/kept"
    assert TaskInputs.of(run=run).clusters_table == f"{run}/clusters/clusters.parquet"
    assert parquet_files(run) == [f"{run}/mined/kept/k.parquet"]


def _cli(module: str, *args: str, env: dict[str, str], timeout: int = 900) -> dict:
    full = {**os.environ, **env, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=full, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{module} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _summary(key: str) -> dict:
    return json.loads(_get(key))


@pytest.fixture(scope="module")
def s3_chain(s3_env, tmp_path_factory):
    """corpus (uploaded) -> read -> mine -> clusters (--mined prefix) -> tasks, all on s3:// paths."""
    local = tmp_path_factory.mktemp("s3chain")
    corpus = local / "corpus"
    _cli("mining.demo_corpus", "--output", str(corpus), "--n", str(N_PAIRS), "--seed", "0", env=s3_env)
    c = boto3.client("s3")
    for p in sorted(corpus.rglob("*")):
        if p.is_file():
            c.upload_file(str(p), BUCKET, f"corpus/{p.relative_to(corpus)}")
    run = f"s3://{BUCKET}/run"
    _cli(
        "mining.readers",
        "--input",
        f"s3://{BUCKET}/corpus/pairs.csv",
        "--output",
        f"{run}/records",
        env=s3_env,
    )
    _cli(
        "pipelines.mine", "--input", f"{run}/records", "--output", f"{run}/mined", "--no-brisque", env=s3_env
    )
    _cli("pipelines.build_clusters", "--mined", f"{run}/mined",
         "--output", f"{run}/clusters", env=s3_env)
    _cli("pipelines.build_tasks", "--input", run, "--output", f"{run}/tasks", "--tasks", "t2i,subject",
         env=s3_env)
    return {"local": local, "corpus": corpus}


@pytest.mark.slow
def test_read_on_s3(s3_chain):
    s = _summary("run/records/read_summary.json")
    assert s["read"] == N_PAIRS and s["kept"] + sum(s["rejected"].values()) == s["read"]
    rows = sum(
        pq.read_table(io.BytesIO(_get(k))).num_rows for k in _keys("run/records/") if k.endswith(".parquet")
    )
    assert rows == s["kept"]


@pytest.mark.slow
def test_mine_on_s3(s3_chain):
    s = _summary("run/mined/summary.json")
    assert s["accounted"] and s["read"] == _summary("run/records/read_summary.json")["kept"]
    kept = sum(
        pq.read_table(io.BytesIO(_get(k))).num_rows
        for k in _keys("run/mined/kept/")
        if k.endswith(".parquet")
    )
    rejected = sum(pq.read_table(io.BytesIO(_get(k))).num_rows for k in _keys("run/mined/rejects/"))
    assert kept == s["kept"] > 0 and kept + rejected == s["read"]


@pytest.mark.slow
def test_clusters_on_s3_from_a_mined_prefix(s3_chain):
    s = _summary("run/clusters/summary.json")
    mined = _summary("run/mined/summary.json")
    assert s["read"] == mined["kept"] and s["accounted"]
    tars = [k for k in _keys("run/clusters/shards/") if k.endswith(".tar")]
    assert s["shards"] == len(tars) > 0  # was 0: the shards "folder" did not exist
    clusters = pq.read_table(io.BytesIO(_get("run/clusters/clusters.parquet")))
    assert clusters.num_rows == s["clusters_kept"] > 0
    for key in tars:
        with tarfile.open(fileobj=io.BytesIO(_get(key))) as tar:
            assert tar.getmembers()


@pytest.mark.slow
def test_tasks_on_s3_read_mined_rows_not_clusters(s3_chain):
    s = _summary("run/tasks/summary.json")
    assert s["read"] == _summary("run/mined/summary.json")["kept"]  # not the cluster rows
    assert s["kept"] + sum((s.get("rejected") or {}).values()) == s["read"]
    tars = [k for k in _keys("run/tasks/shards/") if k.endswith(".tar")]
    assert tars
    n = 0
    for key in tars:
        with tarfile.open(fileobj=io.BytesIO(_get(key))) as tar:
            n += len({Path(m.name).name.split(".", 1)[0] for m in tar.getmembers() if m.isfile()})
    assert n == sum(s["samples"].values()) > 0


@pytest.mark.slow
def test_read_graph_on_s3_writes_the_loops_shards(s3_chain, s3_env):
    """The read stage's Beam graph (pipelines/read.py) on an s3:// image folder, split into units."""
    src = f"s3://{BUCKET}/corpus/images"
    printed = {}
    for name, extra in (("loop", []), ("graph", ["--runner", "fnapi", "--unit-rows", "10"])):
        done = _cli("mining.readers", "--input", src, "--output", f"s3://{BUCKET}/rd-{name}", "--shard-size",
                    "5", *extra, env=s3_env)
        printed[name] = json.loads(done.stdout)
    assert printed["graph"]["units"] >= 3 and "units" not in printed["loop"]

    def objects(name):
        return {k.rsplit("/", 1)[-1]: _get(k) for k in _keys(f"rd-{name}/")}

    loop, graph = objects("loop"), objects("graph")
    assert set(graph) == set(loop) and len(loop) >= 5  # no .read-units/ left behind
    assert {k: v for k, v in graph.items() if k.endswith(".parquet")} == {
        k: v for k, v in loop.items() if k.endswith(".parquet")}
    s = _summary("rd-graph/read_summary.json")
    assert s["read"] == printed["loop"]["read"] == s["kept"] + sum(s["rejected"].values())

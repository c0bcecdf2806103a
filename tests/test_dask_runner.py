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

import json
import os
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest

from bench.compare_runs import compare
from pipelines import dask_cluster
from pipelines import safe_transforms as st
from pipelines.runners import make_pipeline
from tests.conftest import REPO

N_PAIRS = 40
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


def _odd_tagged(x):
    if x % 2:
        yield beam.pvalue.TaggedOutput("odd", x)
    else:
        yield x


def _probe_graph(p, out: str, avoided: bool) -> None:
    """Every construct on range(6); one sink (the transform applied last) writes one JSON per construct."""
    nums = p | beam.Create(list(range(6)))
    kv = nums | "KV" >> beam.Map(lambda x: (x, x * 10))
    res = {
        "gbk": nums
        | beam.Map(lambda x: (x % 2, x))
        | beam.GroupByKey()
        | beam.MapTuple(lambda k, v: (k, sorted(v))),
        "combine_globally": nums | beam.CombineGlobally(sum),
        "asdict": nums | "D" >> beam.Map(lambda x, d: d[x], beam.pvalue.AsDict(kv)),
        "aslist": p
        | "One" >> beam.Create([0])
        | "L" >> beam.Map(lambda _, xs: sorted(xs), beam.pvalue.AsList(nums)),
        "reshuffle": nums | beam.Reshuffle(),
        "flatten": (nums, kv | beam.Keys()) | beam.Flatten(),
        "split": st.split(
            nums | beam.Map(lambda x: ("odd" if x % 2 else "even", x)), "Split", ("even", "odd")
        )["odd"],
        "keyed_batches": (
            st.keyed_batches(
                nums | "G" >> beam.Map(lambda x: ("g", {"key": str(x), "x": x})),
                "B",
                beam.pvalue.AsDict(p | "Sz" >> beam.Create([("g", (6,))])),
                per_batch=4,
                max_size=4,
            )
            | "Flat" >> beam.FlatMap(lambda b: [d["x"] for _, d in b])
        ),
    }
    res["batch_elements"] = (nums | beam.BatchElements(min_batch_size=4, max_batch_size=4)
                             | "Unbatch" >> beam.FlatMap(lambda b: b))
    if avoided:
        tagged = nums | "Tag" >> beam.FlatMap(_odd_tagged).with_outputs("odd", main="even")
        res["with_outputs"] = tagged.odd
        # a second sink: DaskRunner never runs it (the sink below is applied last)
        _ = nums | "Extra" >> beam.Map(lambda x: Path(out, "extra_sink").touch())
    named = [pc | f"N{name}" >> beam.Map(lambda x, n=name: (n, str(x))) for name, pc in res.items()]
    (named | "All" >> beam.Flatten() | "ByName" >> beam.GroupByKey()
     | "Write" >> beam.MapTuple(lambda n, xs: Path(out, f"{n}.json").write_text(json.dumps(sorted(xs)))))


def _probe(runner: str, out: Path, args: list[str], avoided: bool) -> dict[str, list[str]]:
    out.mkdir()
    if runner == "stock-dask":  # Beam's own DaskRunner, without the BatchElements override
        from apache_beam.options.pipeline_options import PipelineOptions
        from apache_beam.runners.dask.dask_runner import DaskRunner

        p = beam.Pipeline(runner=DaskRunner(), options=PipelineOptions(args))
        _probe_graph(p, str(out), avoided)
        result = p.run()
        result.wait_until_finish()
        result.client.close()
    else:
        with make_pipeline(runner, args) as p:
            _probe_graph(p, str(out), avoided)
    return {f.stem: json.loads(f.read_text()) for f in sorted(out.glob("*.json"))} | {
        "extra_sink": [str((out / "extra_sink").exists())]}


def test_probe_constructs_we_use_agree_with_fnapi(cluster, tmp_path):
    ref = _probe("fnapi", tmp_path / "fnapi", [], avoided=False)
    got = _probe("dask", tmp_path / "dask", dask_cluster.beam_args(cluster), avoided=False)
    assert ref["split"] == ["1", "3", "5"] and ref["keyed_batches"] == [str(i) for i in range(6)]
    assert ref["batch_elements"] == [str(i) for i in range(6)]  # --runner dask replaces BatchElements
    assert got == ref


def test_probe_constructs_we_avoid_still_lose_elements_on_dask(cluster, tmp_path):
    """If this fails, DaskRunner now handles them and safe_transforms' workarounds could go."""
    ref = _probe("fnapi", tmp_path / "fnapi", [], avoided=True)
    got = _probe("stock-dask", tmp_path / "dask", dask_cluster.beam_args(cluster), avoided=True)
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


def _cli(module: str, *args: str, timeout: int = 600) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{module} {args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _chain(records: Path, out: Path, runner: str, extra: list[str]) -> None:
    _cli("pipelines.mine", "--input", str(records), "--output", str(out / "mined"), "--no-brisque",
         "--runner", runner, *extra)
    _cli("pipelines.build_clusters", "--mined", str(out / "mined"), "--output", str(out / "clusters"),
         "--runner", runner, *extra)
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


def _same_but_run_folder(root: Path, row: dict) -> bool:
    """Rerun manifests (``.units/*.json``) and the dataset card name inputs by absolute path: equal once
    each run's folder is replaced by the same word. (The tasks manifest hashes those paths: it is left
    out; the shard it describes is compared.)"""
    if row["status"] != "differ" or not row["file"].endswith((".json", ".md")):
        return False
    if row["file"].startswith("tasks/") and "/.units/" in row["file"]:
        return True
    a = (root / "fnapi" / row["file"]).read_text().replace(str(root / "fnapi"), "RUN")
    return a == (root / "dask" / row["file"]).read_text().replace(str(root / "dask"), "RUN")


def test_dask_cluster_gives_the_fnapi_outputs(cluster, tmp_path):
    from mining.demo_corpus import generate

    generate(str(tmp_path / "corpus"), n=N_PAIRS, seed=0)
    records = tmp_path / "records"
    _cli("mining.readers", "--input", str(tmp_path / "corpus" / "pairs.csv"), "--output", str(records))
    _chain(records, tmp_path / "fnapi", "fnapi", [])
    _chain(records, tmp_path / "dask", "dask", dask_cluster.beam_args(cluster))

    rows = compare(tmp_path / "fnapi", tmp_path / "dask", {"format"})
    assert [
        r
        for r in rows
        if r["status"] not in ("identical", "volatile") and not _same_but_run_folder(tmp_path, r)
    ] == []
    same = {r["file"] for r in rows if r["status"] == "identical"}
    assert {
        "mined/kept/records-00000.parquet",
        "mined/rejects/records-00000.parquet",
        "clusters/clusters.parquet",
        "clusters/duplicates.parquet",
        "clusters/group_stats.json",
        "clusters/shards/clusters-00000.tar",
        "clusters/embeddings/img_emb/img_emb_0.npy",
        "tasks/plan.json",
        "tasks/shards/tasks-00000.tar",
    } <= same
    mined = json.loads((tmp_path / "dask" / "mined" / "summary.json").read_text())
    clusters = json.loads((tmp_path / "dask" / "clusters" / "summary.json").read_text())
    tasks = json.loads((tmp_path / "dask" / "tasks" / "summary.json").read_text())
    assert mined["kept"] + sum(mined["rejected"].values()) == mined["read"] == N_PAIRS
    assert clusters["read"] == mined["kept"] == tasks["read"]
    assert clusters["kept"] + sum(clusters["rejected"].values()) == clusters["read"] and clusters["accounted"]
    assert clusters["clusters_kept"] > 0 and clusters["shards"] > 0

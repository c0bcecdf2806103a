"""Checks shared by the distributed-runner tests (tests/test_dask_runner.py, tests/test_spark_runner.py).

``probe`` runs 6 elements through each graph construct the pipelines use; ``run_and_compare`` runs
read -> mine -> clusters -> tasks (each a Beam graph) on FnApiRunner and on another runner and
asserts byte-identical outputs and counts that add up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import apache_beam as beam

from bench.compare_runs import compare
from pipelines import safe_transforms as st
from pipelines.runners import make_pipeline
from tests.conftest import REPO

N_PAIRS = 40
# Outputs that must be byte-identical between runners (a subset of all compared files).
KEY_OUTPUTS = {
    "records/records-00000.parquet",
    "mined/kept/records-00000.parquet",
    "mined/rejects/records-00000.parquet",
    "clusters/clusters.parquet",
    "clusters/duplicates.parquet",
    "clusters/group_stats.json",
    "clusters/shards/clusters-00000.tar",
    "clusters/embeddings/img_emb/img_emb_0.npy",
    "tasks/plan.json",
    "tasks/shards/tasks-00000.tar",
}


def odd_tagged(x):
    if x % 2:
        yield beam.pvalue.TaggedOutput("odd", x)
    else:
        yield x


def probe_graph(p, out: str, avoided: bool) -> None:
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
        tagged = nums | "Tag" >> beam.FlatMap(odd_tagged).with_outputs("odd", main="even")
        res["with_outputs"] = tagged.odd
        # a second sink: DaskRunner never runs it (the sink below is applied last)
        _ = nums | "Extra" >> beam.Map(lambda x: Path(out, "extra_sink").touch())
    named = [pc | f"N{name}" >> beam.Map(lambda x, n=name: (n, str(x))) for name, pc in res.items()]
    (named | "All" >> beam.Flatten() | "ByName" >> beam.GroupByKey()
     | "Write" >> beam.MapTuple(lambda n, xs: Path(out, f"{n}.json").write_text(json.dumps(sorted(xs)))))


def probe(runner: str, out: Path, args: list[str], avoided: bool) -> dict[str, list[str]]:
    out.mkdir()
    if runner == "stock-dask":  # Beam's own DaskRunner, without the BatchElements override
        from apache_beam.options.pipeline_options import PipelineOptions
        from apache_beam.runners.dask.dask_runner import DaskRunner

        p = beam.Pipeline(runner=DaskRunner(), options=PipelineOptions(args))
        probe_graph(p, str(out), avoided)
        result = p.run()
        result.wait_until_finish()
        result.client.close()
    else:
        with make_pipeline(runner, args) as p:
            probe_graph(p, str(out), avoided)
    return {f.stem: json.loads(f.read_text()) for f in sorted(out.glob("*.json"))} | {
        "extra_sink": [str((out / "extra_sink").exists())]}


def cli(module: str, *args: str, timeout: int = 1200) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{module} {args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def chain(records: Path, out: Path, runner: str, extra: list[str]) -> None:
    cli("pipelines.mine", "--input", str(records), "--output", str(out / "mined"), "--no-brisque",
         "--runner", runner, *extra)
    cli("pipelines.build_clusters", "--mined", str(out / "mined"), "--output", str(out / "clusters"),
         "--runner", runner, *extra)
    cli(
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


def same_but_run_folder(root: Path, row: dict, other: str) -> bool:
    """Rerun manifests (``.units/*.json``) and the dataset card name inputs by absolute path: equal once
    each run's folder is replaced by the same word. (The tasks manifest hashes those paths: it is left
    out; the shard it describes is compared.)"""
    if row["status"] != "differ" or not row["file"].endswith((".json", ".md")):
        return False
    if row["file"].startswith("tasks/") and "/.units/" in row["file"]:
        return True
    a = (root / "fnapi" / row["file"]).read_text().replace(str(root / "fnapi"), "RUN")
    return a == (root / other / row["file"]).read_text().replace(str(root / other), "RUN")


def run_and_compare(tmp_path: Path, name: str, runner: str, extra: list[str]) -> dict[str, dict]:
    """The chain on FnApiRunner and on ``runner`` (folder ``name``): asserts identical outputs and
    counts that add up; returns the other runner's summaries by stage."""
    from mining.demo_corpus import generate

    generate(str(tmp_path / "corpus"), n=N_PAIRS, seed=0)
    pairs = str(tmp_path / "corpus" / "pairs.csv")
    for folder, run, args in (("fnapi", "fnapi", []), (name, runner, extra)):
        records = tmp_path / folder / "records"
        cli("mining.readers", "--input", pairs, "--output", str(records), "--runner", run, *args)
        chain(records, tmp_path / folder, run, args)

    rows = compare(tmp_path / "fnapi", tmp_path / name, {"format"})
    assert [
        r
        for r in rows
        if r["status"] not in ("identical", "volatile") and not same_but_run_folder(tmp_path, r, name)
    ] == []
    assert KEY_OUTPUTS <= {r["file"] for r in rows if r["status"] == "identical"}
    got = {s: json.loads((tmp_path / name / s / "summary.json").read_text()) for s in ("mined", "clusters",
                                                                                        "tasks")}
    mined, clusters, tasks = got["mined"], got["clusters"], got["tasks"]
    assert mined["kept"] + sum(mined["rejected"].values()) == mined["read"] == N_PAIRS
    assert clusters["read"] == mined["kept"] == tasks["read"]
    assert clusters["kept"] + sum(clusters["rejected"].values()) == clusters["read"] and clusters["accounted"]
    assert clusters["clusters_kept"] > 0 and clusters["shards"] > 0
    return got

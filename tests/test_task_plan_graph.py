"""Task planning inside the Beam graph (``pipelines/task_plan.py``) gives the launcher planner's plan,
shards and accounting byte for byte, with duplicates, clusters, styles and faces in the input; also when
every rank bucket holds many jobs (the cut-bucket sort), and on rerun (finished shards skipped)."""

import csv
import hashlib
import os

import pyarrow as pa
import pytest
from PIL import Image

from core import storage
from datasets.real_inputs import write_inputs
from tests.conftest import shared_subset
from tests.test_datasets_pipeline import stand_in_tools

SKIP = {"summary.json"}  # holds its own output paths; compared without them below


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan_graph")
    write_inputs(str(shared_subset("coco_mini")), str(root / "in"), n=40)
    kept = storage.read_parquet(str(root / "in" / "mined" / "kept"), columns=["key"])
    keys = kept.column("key").to_pylist()
    storage.write_parquet(
        [{"key": k, "duplicate_of": keys[0], "reason": "cosine"} for k in keys[1:4]],
        str(root / "in" / "clusters" / "duplicates.parquet"),
        pa.schema([("key", pa.string()), ("duplicate_of", pa.string()), ("reason", pa.string())]))
    styledrop = shared_subset("styledrop")
    (root / "styles").mkdir()
    for name in sorted(os.listdir(styledrop / "images"))[:3]:
        img = Image.open(styledrop / "images" / name)
        img.thumbnail((160, 160))
        img.convert("RGB").save(root / "styles" / name)
    celeba = shared_subset("celeba_faces")  # metadata.csv: file (images/NNN.jpg), identity, attributes
    with open(celeba / "metadata.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_person: dict[str, list[str]] = {}
    for r in rows:
        by_person.setdefault(r["identity"], []).append(r["file"])
    for person in [p for p in sorted(by_person) if len(by_person[p]) >= 5][:2]:
        (root / "faces" / person).mkdir(parents=True)
        for f in by_person[person][:5]:
            Image.open(celeba / f).convert("RGB").save(root / "faces" / person / os.path.basename(f))
    return root


def _files(folder):
    out = {}
    for dp, _, fs in os.walk(folder):
        for f in fs:
            rel = os.path.relpath(os.path.join(dp, f), folder)
            if rel not in SKIP and not rel.startswith("plan.parts"):
                out[rel] = hashlib.sha256(open(os.path.join(dp, f), "rb").read()).hexdigest()
    return out


def _both(inputs, out, **kw):
    from datasets.local import build_tasks_local
    from pipelines.build_tasks import run

    opts = dict(seed=3, shard_size=8, max_samples=36, max_side=160, style_dir=str(inputs / "styles"),
                faces_dir=str(inputs / "faces"))
    opts.update(kw)
    local = build_tasks_local(str(inputs / "in"), str(out / "local"), tools=stand_in_tools(), **opts)
    beam = run(str(inputs / "in"), str(out / "beam"), tools=stand_in_tools(), **opts)
    return local, beam


def _same(local, beam, out):
    assert _files(out / "local") == _files(out / "beam")
    for k in ("read", "kept", "rejected", "samples", "mixture", "inputs", "shards"):
        assert local[k] == beam[k], k


def test_graph_plan_matches_the_launcher_planner(inputs, tmp_path):
    local, beam = _both(inputs, tmp_path)
    _same(local, beam, tmp_path)
    assert beam["rejected"].get("near_duplicate") == 3
    assert beam["read"] == 40 and beam["kept"] + sum(beam["rejected"].values()) == 40
    assert {"subject", "styled", "subject_faces"} <= set(beam["samples"])
    assert os.path.exists(tmp_path / "beam" / "plan.parts" / "counts.json")


def test_cut_buckets_with_many_jobs_each(inputs, tmp_path, monkeypatch):
    """16 rank buckets: each task's cut bucket holds several candidates, sorted in one place."""
    from datasets import plan_parts

    monkeypatch.setattr(plan_parts, "BUCKET_HEX", 1)
    local, beam = _both(inputs, tmp_path, max_samples=50, shard_size=16, seed=11)
    _same(local, beam, tmp_path)


def test_rerun_skips_finished_shards_with_the_same_bytes(inputs, tmp_path):
    from pipelines.build_tasks import run

    opts = dict(seed=3, shard_size=8, max_samples=20, max_side=160, tasks=["t2i", "control_mask", "subject"])
    first = run(str(inputs / "in"), str(tmp_path / "o"), tools=stand_in_tools(), **opts)
    before = _files(tmp_path / "o")
    again = run(str(inputs / "in"), str(tmp_path / "o"), tools=stand_in_tools(), **opts)
    assert again["shards"]["skipped_existing"] == again["shards"]["total"] == first["shards"]["total"] == 3
    after = _files(tmp_path / "o")
    assert after.pop("card.json") != before.pop("card.json")  # it says how many shards were skipped
    assert after == before
    for k in ("read", "kept", "rejected", "samples"):
        assert again[k] == first[k], k


def test_a_broken_mined_file_is_one_line_and_exit_2(inputs, tmp_path, capsys):
    import shutil

    from pipelines.build_tasks import main

    shutil.copytree(inputs / "in", tmp_path / "in")
    (tmp_path / "in" / "mined" / "kept" / "part-99999.parquet").write_bytes(b"not parquet")
    from core import cli

    rc = cli.run(main, ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--tasks", "t2i"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: mined file ") and "part-99999.parquet" in err[-1]


def test_a_broken_clusters_table_is_one_line_and_exit_2(inputs, tmp_path, capsys):
    import shutil

    from core import cli
    from pipelines.build_tasks import main

    shutil.copytree(inputs / "in", tmp_path / "in")
    (tmp_path / "in" / "clusters" / "clusters.parquet").write_bytes(b"PAR1 truncated")
    rc = cli.run(main, ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--tasks", "t2i"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: clusters table ") and "clusters.parquet" in err[-1]


def test_no_plan_json_leaves_the_parts_as_the_plan(inputs, tmp_path):
    import json

    from pipelines.build_tasks import run

    opts = dict(seed=3, shard_size=4, max_samples=10, max_side=160, tasks=["t2i"])
    full = run(str(inputs / "in"), str(tmp_path / "a"), tools=stand_in_tools(), **opts)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "plan.json").write_text("{}")  # an earlier run's: it must not stay beside the parts
    parts = run(str(inputs / "in"), str(tmp_path / "b"), tools=stand_in_tools(), plan_json=False, **opts)
    assert not (tmp_path / "b" / "plan.json").exists() and parts["outputs"]["plan"].endswith("plan.parts")
    folder = tmp_path / "b" / "plan.parts"
    jobs = [j for i in range(3) for j in json.loads((folder / f"jobs-{i:05d}.json").read_text())]
    assert jobs == json.loads((tmp_path / "a" / "plan.json").read_text())["jobs"]
    assert parts["samples"] == full["samples"] == {"t2i": 10}

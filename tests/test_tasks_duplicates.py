"""Stage-2 tasks never draw clustering's flagged near-duplicates (issue 13 item 6), on tiny data."""

import io
import json

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from core import storage
from datasets import build
from datasets.mixture import load_config
from datasets.tasks.base import PlanInputs, Tools

DUPS = {"k03": "k02", "k07": "k06"}


def _png(i: int) -> bytes:
    rng = np.random.default_rng(i)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _inputs(root, with_dups=True):
    rows = [{"key": f"k{i:02d}", "url": f"/x/{i}.png", "caption": f"photo number {i}", "image": _png(i),
             "quality": 0.8, "domain": "products"} for i in range(10)]
    storage.write_parquet(rows, str(root / "mined" / "kept" / "part-00000.parquet"))
    if with_dups:
        storage.write_parquet(
            [{"key": k, "duplicate_of": v, "reason": "cosine"} for k, v in DUPS.items()],
            str(root / "clusters" / "duplicates.parquet"),
            pa.schema([("key", pa.string()), ("duplicate_of", pa.string()), ("reason", pa.string())]))
    return root


def test_flagged_duplicates_are_excluded_from_every_task(tmp_path):
    root = _inputs(tmp_path)
    rows = build.load_light_rows(build.parquet_files(str(root)))
    task_rows, excluded = build.exclude_duplicates(rows, str(root))
    assert excluded == set(DUPS) and set(task_rows) == set(rows) - set(DUPS)
    styles = [{"key": "s1", "path": "s1.jpg", "style": "watercolor"}]
    plan = build.make_plan(PlanInputs(rows=task_rows, styles=styles), load_config(None), 0, None)
    used = {k for j in plan.jobs for k in j.record_keys}
    assert {j.task for j in plan.jobs} >= {"t2i", "control_edge", "styled", "style_transfer"}
    assert used and not used & set(DUPS)
    assert {"k02", "k06"} <= used | set(rows)  # the originals stay available
    acc = build.account(rows, plan, [], excluded)
    assert acc["rejected"]["near_duplicate"] == 2 and acc["read"] == 10


def test_without_a_duplicates_table_nothing_is_excluded(tmp_path):
    root = _inputs(tmp_path, with_dups=False)
    rows = build.load_light_rows(build.parquet_files(str(root)))
    task_rows, excluded = build.exclude_duplicates(rows, str(root))
    assert task_rows == rows and excluded == set()


def test_build_tasks_run_counts_excluded_duplicates(tmp_path):
    from pipelines.build_tasks import run

    root = _inputs(tmp_path / "in")
    tools = Tools(quality=lambda im: 0.9, max_side=64)
    s = run(str(root), str(tmp_path / "out"), tasks=["t2i"], tools=tools, shard_size=4)
    assert s["samples"]["t2i"] == 8 and s["inputs"]["duplicates_excluded"] == 2
    assert s["rejected"] == {"near_duplicate": 2} and s["read"] == s["kept"] + 2
    assert s["config"]["tasks"] == ["t2i"] and s["config"]["shard_size"] == 4  # the config used


def test_inputs_come_from_the_run_layout_or_explicit_folders(tmp_path):
    """No probing: a run folder gives RUN/mined and RUN/clusters; --mined/--clusters point elsewhere."""
    from core.cli import InputError

    run_dir = _inputs(tmp_path / "run")
    where = build.TaskInputs.of(run=str(run_dir))
    assert where.kept == f"{run_dir}/mined/kept" and where.duplicates_table and where.clusters_table is None
    flat = tmp_path / "flat"  # the old INPUT/kept layout is not looked for
    storage.write_parquet([{"key": "a", "caption": "x"}], str(flat / "kept" / "p.parquet"))
    assert build.parquet_files(str(flat)) == []
    explicit = build.TaskInputs.of(mined=str(flat), clusters=str(run_dir / "clusters"))
    assert build.parquet_files(explicit) == [str(flat / "kept" / "p.parquet")]
    with pytest.raises(InputError, match="no clusters.parquet"):
        _ = explicit.clusters_table  # named explicitly: it must hold the table


def test_task_stage_maps_jobs_and_images_to_samples_or_rejects(tmp_path):
    """The per-sample work runs without Beam (core.stage.run_local): every job kept or rejected."""
    from core.stage import run_local
    from datasets.stage import TaskStage
    from datasets.task_config import TasksConfig

    root = _inputs(tmp_path)
    rows = build.load_light_rows(build.parquet_files(str(root)))
    plan = build.make_plan(PlanInputs(rows=rows), load_config(None), 0, 6, ["t2i"])
    images = dict(build.iter_image_rows(build.parquet_files(str(root))[0]))
    jobs = [{"job": j.to_dict(), "images": {k: images[k] for k in j.record_keys}} for j in plan.jobs]
    jobs[0]["images"] = {}  # no image: a counted reject, not a crash
    stage = TaskStage(TasksConfig(max_tokens=0), tools=Tools(quality=lambda im: 0.9, max_side=64))
    kept, rejects = run_local(stage, jobs, batch_size=4)
    assert len(kept) == 5 and len(rejects) == 1 and rejects[0]["stage"] == "tasks"
    assert all(r["sample"].task == "t2i" for r in kept)


def test_tasks_cli_flags_come_from_the_config(tmp_path, capsys):
    from core import cli
    from pipelines import build_tasks

    root = _inputs(tmp_path)
    rc = cli.run(
        build_tasks.main, ["--input", str(root), "--output", str(tmp_path / "o"), "--max-sample", "3"]
    )
    assert rc == 2 and "did you mean --max-samples?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_tasks.main(["--input", str(root), "--output", str(tmp_path / "o"), "--set", "tasks.seed=5",
                          "--tasks", "t2i,subject", "--print-config"])
    cfg = json.loads(capsys.readouterr().out)["tasks"]
    assert cfg["seed"] == 5 and cfg["tasks"] == ["t2i", "subject"]

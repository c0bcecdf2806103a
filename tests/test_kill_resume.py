"""SIGKILL the pipeline at several points, rerun it, and get the outputs of an uninterrupted run;
the same chain on the other two local runners gives the same files.

The chain (corpus -> records -> mining -> clustering -> tasks) runs in a subprocess. A reference
run logs every atomic write (``IIDATA_WRITE_LOG``); kill points are chosen from that log so each
stage is hit, both with a complete temp file not yet renamed and right after a rename. After each
kill, every shard on disk must read back whole (no partial shard is ever visible), and a rerun
must give the same files, byte for byte, as the reference.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.storage import KILL_ENV, TMP_MARK, WRITE_LOG_ENV
from tests.conftest import REPO

N_PAIRS = 90
CHAIN = [sys.executable, "-m", "pipelines.demo", "--n", str(N_PAIRS), "--stop-after", "tasks",
         "--tasks", "t2i,control_mask,subject"]
# Files whose content records timings or absolute paths; everything else must match byte for byte.
VOLATILE = ("summary.json", "read_summary.json", "demo_summary.json", "card.json", "card.md")


def _run(out: Path, env_extra: dict[str, str] | None = None, timeout: int = 900,
         runner: str = "fnapi") -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1", **(env_extra or {})}
    return subprocess.run([*CHAIN, "--runner", runner, "--output", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _outputs(root: Path) -> dict[str, bytes]:
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and TMP_MARK not in p.name and p.name not in VOLATILE and "_download" not in p.parts:
            files[str(p.relative_to(root))] = p.read_bytes()
    return files


def _assert_no_partial_shard(root: Path) -> None:
    for p in root.rglob("*"):
        if not p.is_file() or TMP_MARK in p.name:
            continue
        if p.suffix == ".parquet":
            pq.read_table(p)  # raises on a partial file
        elif p.suffix == ".tar":
            with tarfile.open(p) as tar:
                for member in tar:
                    tar.extractfile(member).read() if member.isfile() else None


# Six kill points, one after another on the same output folder: each run is killed at the given
# write (phase:n:path substring) and the next run resumes from what the previous one left.
KILL_POINTS = [
    "before_rename:40:corpus/images/",  # corpus half written
    "after_rename:1:records/records-",  # records shard in place, summary not yet
    "after_rename:1:mined/kept/",  # mining: kept shard in place, its rejects not yet
    "before_rename:2:clusters/embeddings",  # clustering: embeddings half written
    "after_rename:1:clusters/clusters.parquet",  # clusters merged from its parts, duplicates not yet
    "before_rename:2:tasks/shards/",  # task shards half written
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run, made at the same path the killed runs use (records hold absolute paths)."""
    base = tmp_path_factory.mktemp("kill")
    out, log = base / "run", base / "writes.log"
    done = _run(out, {WRITE_LOG_ENV: str(log)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    writes = log.read_text().splitlines()
    out.rename(base / "reference")
    return base, writes


def test_kill_points_hit_real_writes_of_every_stage(reference):
    _, writes = reference
    for spec in KILL_POINTS:
        _, n, substring = spec.split(":", 2)
        assert sum(substring in w for w in writes) >= int(n), (
            f"{spec}: the reference run never makes that write"
        )
    assert {"corpus", "records", "mined", "clusters", "tasks"} <= {
        p.split(":", 2)[2].split("/")[0] for p in KILL_POINTS
    }


@pytest.mark.slow
def test_sigkill_at_six_points_then_rerun_gives_identical_outputs(reference):
    base, _ = reference
    ref_out, out = base / "reference", base / "run"
    for spec in KILL_POINTS:
        killed = _run(out, {KILL_ENV: spec})
        assert killed.returncode == -signal.SIGKILL, (
            f"{spec}: not killed (rc {killed.returncode})\n{killed.stderr[-2000:]}"
        )
        _assert_no_partial_shard(out)
    resumed = _run(out)
    assert resumed.returncode == 0, f"rerun failed\n{resumed.stdout[-3000:]}{resumed.stderr[-3000:]}"
    want, got = _outputs(ref_out), _outputs(out)
    _assert_same_files(want, got)


def _assert_same_files(want: dict[str, bytes], got: dict[str, bytes]) -> None:
    assert sorted(got) == sorted(want), f"file sets differ: {sorted(set(got) ^ set(want))[:10]}"
    differing = [name for name in want if want[name] != got[name]]
    assert not differing, f"{len(differing)} files differ, e.g. {differing[:5]}"


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["direct-mp", "portable"])
def test_other_runners_give_the_fnapi_outputs(reference, runner):
    """The same chain on DirectRunner (multi-processing) and PortableRunner (embedded job endpoint,
    LOOPBACK workers) gives the FnApiRunner reference's files, byte for byte."""
    base, _ = reference
    out = base / "run"
    if out.exists():  # the kill test's folder (same absolute path the reference was made at)
        out.rename(base / f"before-{runner}")
    done = _run(out, runner=runner)
    assert done.returncode == 0, f"{runner} failed\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    _assert_same_files(_outputs(base / "reference"), _outputs(out))
    out.rename(base / runner)

"""SIGKILL the chain at random instants (seeded delays inside each stage), rerun, and get the
uninterrupted run's files byte for byte, rejects and unit manifests included; no ``*.tmp-*``
debris and no lock file survive the final run.

Unlike ``test_kill_resume`` (kills at chosen write events), the kill here lands wherever the
process is: mid-decode, mid-Beam bundle, mid-write. Each stage is found by the demo's
``>>> stage NAME`` line; the delay is drawn (seeded) within that stage's duration in the reference.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.storage import LOCK_NAME, TMP_MARK
from tests.conftest import REPO
from tests.test_kill_resume import _assert_no_partial_shard, _assert_same_files, _outputs

N_PAIRS = 60
CHAIN = [sys.executable, "-u", "-m", "pipelines.demo", "--n", str(N_PAIRS), "--stop-after", "tasks",
         "--tasks", "t2i,control_mask,subject", "--runner", "fnapi"]
STAGES = ("corpus", "read", "mine", "cluster", "tasks")
KILLS_PER_STAGE = 2
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}


def _run_timed(out: Path) -> tuple[subprocess.CompletedProcess, dict[str, float]]:
    """Run to the end; returns the result and each stage's duration (from the stage markers)."""
    t0, marks = time.monotonic(), []
    p = subprocess.Popen([*CHAIN, "--output", str(out)], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    threading.Thread(target=lambda: err.extend(p.stderr), daemon=True).start()
    lines = []
    for line in p.stdout:
        lines.append(line)
        if line.startswith(">>> stage "):
            marks.append((line.split()[2], time.monotonic() - t0))
    p.wait()
    end = time.monotonic() - t0
    durations = {
        name: (marks[i + 1][1] if i + 1 < len(marks) else end) - t for i, (name, t) in enumerate(marks)
    }
    return subprocess.CompletedProcess(p.args, p.returncode, "".join(lines), "".join(err)), durations


def _kill_during(out: Path, stage: str, delay: float) -> int | None:
    """Start the chain, SIGKILL it ``delay`` s after ``stage`` starts; the exit code (None: finished
    first)."""
    p = subprocess.Popen([*CHAIN, "--output", str(out)], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    timer = None
    for line in p.stdout:
        if line.startswith(f">>> stage {stage}"):
            timer = threading.Timer(delay, lambda: os.killpg(p.pid, signal.SIGKILL))
            timer.start()
    p.wait()
    if timer is not None:
        timer.cancel()
    return p.returncode


@pytest.mark.slow
def test_random_kill_instants_then_rerun_gives_identical_outputs(tmp_path):
    base = tmp_path
    ref, durations = _run_timed(base / "run")
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    assert set(STAGES) <= set(durations), durations
    (base / "run").rename(base / "reference")  # the killed runs use the same absolute path

    rng = random.Random(12)
    out, killed = base / "run", 0
    for stage in STAGES:
        for _ in range(KILLS_PER_STAGE):
            delay = rng.uniform(0.05, max(0.1, 0.9 * durations[stage]))
            rc = _kill_during(out, stage, delay)
            killed += rc == -signal.SIGKILL
            _assert_no_partial_shard(out)
    assert killed >= len(STAGES), f"only {killed} runs were killed before finishing"
    final, _ = _run_timed(out)
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    _assert_same_files(_outputs(base / "reference"), _outputs(out))
    assert not [p for p in out.rglob("*") if TMP_MARK in p.name or p.name == LOCK_NAME]

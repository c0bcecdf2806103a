"""Training survives SIGKILL: `python -m train` killed at 4 points, rerun each time, ends bit-identical
to an uninterrupted run (model, EMA, loss log), and always resumes from its last complete checkpoint."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from core.storage import KILL_ENV
from tests.test_train_toyshards import write_task_shards
from train import checkpoint as ckpt

EMB = 16
STEPS = 9
SETTINGS = {
    "model.image_size": 16,
    "model.base_channels": 16,
    "model.channel_mults": "[1, 2]",
    "model.num_res_blocks": 1,
    "model.attn_resolutions": "[8]",
    "model.heads": 2,
    "model.cond_dim": 16,
    "model.max_context": 2,
    "text_encoder.kind": "precomputed",
    "text_encoder.dim": EMB,
    "text_encoder.max_len": 12,
    "data.batch_size": 2,
    "data.shuffle_buffer": 4,
    "data.num_workers": 0,
    "train.checkpoint_every": 3,
    "train.keep_checkpoints": 5,
    "train.log_every": 1,
    "train.tensorboard": "false",
    "train.warmup_steps": 2,
    "train.lr": 1e-3,
    "train.cpu_threads": 1,
    "train.sample_every": 0,
    "sample.steps": 2,
}
ROOT = Path(__file__).resolve().parents[1]


def run_train(shards: str, out: Path, kill: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "train", "--config", "tiny", "--shards", shards, "--output", str(out),
           "--steps", str(STEPS), "--no-progress"]
    for k, v in SETTINGS.items():
        cmd += ["--set", f"{k}={v}"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop(KILL_ENV, None)
    if kill:
        env[KILL_ENV] = kill
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def latest_step(out: Path) -> int:
    path = ckpt.latest(str(out / "checkpoints"))
    return ckpt.load(path)["step"] if path else 0


def losses(out: Path) -> list[tuple[str, str]]:
    with open(out / "log.csv") as fh:
        return [(r["step"], r["loss"]) for r in csv.DictReader(fh)]


def test_training_resumes_after_sigkill(tmp_path):
    shards = str(tmp_path / "shards")
    write_task_shards(shards, n_shards=3, per_shard=3, size=24, emb_dim=EMB)

    ref = tmp_path / "ref"
    done = run_train(shards, ref)
    assert done.returncode == 0, done.stderr[-2000:]
    assert latest_step(ref) == STEPS

    out = tmp_path / "killed"
    # (kill spec, last complete checkpoint step afterwards)
    points = [
        ("after_rename:5:log.csv", 3),       # mid-run between checkpoints (after step 5's log line)
        ("before_rename:1:ckpt-", 3),        # the step-6 checkpoint fully written, not yet renamed
        ("after_rename:1:ckpt-", 3),         # step-6 checkpoint in place, latest.json not yet updated
        ("after_rename:1:latest.json", 6),   # step-6 checkpoint complete; killed right after
    ]
    for spec, expect in points:
        r = run_train(shards, out, kill=spec)
        assert r.returncode == -9, (spec, r.returncode, r.stderr[-2000:])
        assert latest_step(out) == expect, spec
        # every checkpoint file on disk loads whole; latest.json points at a complete one
        for p in (out / "checkpoints").glob(f"ckpt-*{ckpt.SUFFIX}"):
            assert ckpt.load(str(p))["step"] > 0
        json.loads((out / "checkpoints" / ckpt.LATEST).read_text())

    final = run_train(shards, out)
    assert final.returncode == 0, final.stderr[-2000:]
    assert json.loads(final.stdout[final.stdout.index("{"):])["steps"] == STEPS
    a = ckpt.load(ckpt.latest(str(ref / "checkpoints")))
    b = ckpt.load(ckpt.latest(str(out / "checkpoints")))
    for part in ("model", "ema"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), (part, k)
    assert losses(out) == losses(ref)  # one log row per step, no duplicates or gaps, same losses


def test_training_resumes_after_sigkill_at_random_instants(tmp_path):
    """SIGKILL at seeded random instants (mid-step, mid-write, wherever the process is), three times
    on one output, then a final rerun: bit-identical to the uninterrupted run."""
    import random
    import signal
    import time

    shards = str(tmp_path / "shards")
    write_task_shards(shards, n_shards=3, per_shard=3, size=24, emb_dim=EMB)
    t0 = time.monotonic()
    ref = tmp_path / "ref"
    assert run_train(shards, ref).returncode == 0
    duration = time.monotonic() - t0
    out, rng, killed = tmp_path / "killed", random.Random(8), 0
    for _ in range(3):
        cmd = [sys.executable, "-m", "train", "--config", "tiny", "--shards", shards, "--output", str(out),
               "--steps", str(STEPS), "--no-progress"]
        for k, v in SETTINGS.items():
            cmd += ["--set", f"{k}={v}"]
        p = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            p.wait(timeout=rng.uniform(0.3, 0.8) * duration)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
            killed += 1
        for c in (out / "checkpoints").glob(f"ckpt-*{ckpt.SUFFIX}") if (out / "checkpoints").exists() else []:
            assert ckpt.load(str(c))["step"] > 0  # every checkpoint on disk is whole
    assert killed >= 1  # the first run always is; a resumed one may finish before its instant
    final = run_train(shards, out)
    assert final.returncode == 0, final.stderr[-2000:]
    a = ckpt.load(ckpt.latest(str(ref / "checkpoints")))
    b = ckpt.load(ckpt.latest(str(out / "checkpoints")))
    for part in ("model", "ema", "optimizer"):
        if part == "optimizer":
            for i, st in a[part]["state"].items():
                assert all(torch.equal(v, b[part]["state"][i][k]) for k, v in st.items())
            continue
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), (part, k)
    assert losses(out) == losses(ref)
    assert not list(out.rglob("*.tmp-*")) and not (out / ".lock").exists()

"""Training never runs code from files, never lets bad data reach the weights, and resumes exactly.

* A pickle payload given as ``--init``, to ``python -m train.sample --checkpoint`` or planted as
  the file ``latest.json`` names is refused with one line and a non-zero exit; its marker never appears.
* Bad samples (JSON list, corrupt / object-dtype / NaN ``.npy``) are counted rejects; a non-finite
  loss is skipped and counted, too many stop the run; non-finite weights are never checkpointed.
* ``--steps 4`` then ``--steps 6`` equals ``--steps 6`` (checkpoint every 2), with the MiniLM encoder.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_train_kill_resume import SETTINGS
from tests.test_train_resume import EMB, params, tiny_overrides
from tests.test_train_toyshards import (
    encode,
    npy,
    smooth_image,
    write_cluster_shards,
    write_tar,
    write_task_shards,
)
from train import checkpoint as ckpt
from train.data import DataConfig, expand_shards, make_loader
from train.trainer import Trainer, TrainingDiverged, load_config

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this creates ``marker`` (``open(marker, "w")``): proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"model": _Payload(str(marker)), "step": 1}, str(path))
    return path


def cli(module: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def train_args(shards: str, out: Path, steps: int) -> list[str]:
    args = [
        "--config",
        "tiny",
        "--shards",
        shards,
        "--output",
        str(out),
        "--steps",
        str(steps),
        "--no-progress",
    ]
    for k, v in SETTINGS.items():
        args += ["--set", f"{k}={v}"]
    return args


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("safe")
    write_task_shards(str(folder), n_shards=2, per_shard=3, size=24, emb_dim=EMB)
    return str(folder)


def _refused(r: subprocess.CompletedProcess, marker: Path) -> None:
    assert r.returncode != 0, r.stdout[-1000:]
    assert not marker.exists(), "the pickle payload ran"
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "Loading weights" not in ln]
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "never unpickled" in lines[-1] or "not a" in lines[-1], lines[-1]


def test_pickle_checkpoint_as_init_is_refused(shards, tmp_path):
    marker = tmp_path / "PWNED"
    evil = evil_checkpoint(tmp_path / "evil.pt", marker)
    r = cli("train", *train_args(shards, tmp_path / "run", 2), "--init", str(evil))
    _refused(r, marker)


def test_pickle_checkpoint_named_by_latest_json_is_refused(shards, tmp_path):
    marker = tmp_path / "PWNED"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    evil = evil_checkpoint(run / "checkpoints" / "ckpt-00000002.safetensors", marker)
    (run / "checkpoints" / ckpt.LATEST).write_text(json.dumps({"step": 2, "path": str(evil)}))
    _refused(cli("train", *train_args(shards, run, 4)), marker)
    from train.sample import main as sample_main  # the same file through the sampler, in-process

    assert (
        sample_main(["--checkpoint", str(run), "--prompt", "a dog", "--output", str(tmp_path / "g.png")]) == 2
    )
    assert not marker.exists()


def test_pickle_checkpoint_given_to_sampler_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    evil = evil_checkpoint(tmp_path / "evil.pt", marker)
    r = cli(
        "train.sample", "--checkpoint", str(evil), "--prompt", "a dog", "--output", str(tmp_path / "g.png")
    )
    _refused(r, marker)
    assert not (tmp_path / "g.png").exists()


def test_checkpoint_round_trip_is_exact_and_plain(tmp_path):
    payload = {"model": {"w": torch.randn(3, 4), "b": torch.zeros(2, dtype=torch.bfloat16)},
               "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}},
                             "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.99), "params": [0]}]},
               "rng": ckpt.rng_state(), "step": 7, "config": {"a": [1, 2], "b": None}}
    got = ckpt.loads(ckpt.dumps(payload))
    assert torch.equal(got["model"]["w"], payload["model"]["w"]) and got["model"]["b"].dtype == torch.bfloat16
    assert list(got["optimizer"]["state"]) == [0] and got["optimizer"]["param_groups"][0]["betas"] == (
        0.9,
        0.99,
    )
    assert got["step"] == 7 and got["config"] == payload["config"]
    before = (torch.rand(3), np.random.rand(), __import__("random").random())
    ckpt.set_rng_state(got["rng"])
    after = (torch.rand(3), np.random.rand(), __import__("random").random())
    assert torch.equal(before[0], after[0]) and before[1:] == after[1:]
    with pytest.raises(ckpt.CheckpointError):
        ckpt.loads(b"\x80\x04not safetensors at all")


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="non-finite"):
        ckpt.save(str(tmp_path), 1, {"model": {"w": torch.tensor([1.0, float("nan")])}, "step": 1})
    assert not list(tmp_path.iterdir())


def _bad_task_shard(folder: Path) -> None:
    rng = np.random.default_rng(1)
    img = encode(smooth_image(rng, 24))
    good_meta = {"instruction": "Render [ref#1].", "context": [{"text": "[ref#1] a"}]}
    obj = io.BytesIO()
    np.save(obj, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    samples = [
        {"__key__": "list_json", "target.jpg": img, "json": b"[1, 2, 3]"},
        {"__key__": "corrupt_npy", "target.jpg": img, "json": json.dumps(good_meta).encode(), "ctx1.jpg": img,
         "instruction_emb.npy": b"\x93NUMPY garbage"},
        {"__key__": "object_npy", "target.jpg": img, "json": json.dumps(good_meta).encode(), "ctx1.jpg": img,
         "instruction_emb.npy": obj.getvalue()},
        {"__key__": "nan_npy", "target.jpg": img, "json": json.dumps(good_meta).encode(), "ctx1.jpg": img,
         "instruction_emb.npy": npy(np.full((4, EMB), np.nan, dtype=np.float32))},
        {"__key__": "wrong_types", "target.jpg": img, "json": json.dumps({"instruction": 5}).encode()},
        {"__key__": "ok", "target.jpg": img, "json": json.dumps(good_meta).encode(), "ctx1.jpg": img,
         "instruction_emb.npy": npy(rng.standard_normal((4, EMB)).astype(np.float32)),
         "ctx1_emb.npy": npy(rng.standard_normal((3, EMB)).astype(np.float32))},
    ]
    write_tar(str(folder / "tasks-00000.tar"), samples)


def test_bad_samples_are_counted_and_training_stays_finite(tmp_path):
    _bad_task_shard(tmp_path / "bad")
    cfg = DataConfig(image_size=16, max_context=2, batch_size=1, shuffle_buffer=0, num_workers=0)
    it = iter(make_loader(expand_shards(str(tmp_path / "bad")), cfg))
    first = next(it)
    assert first["key"] == ["ok"]
    s = first["_stats"]
    assert (
        s["rejected:bad_json"] == 1 and s["rejected:bad_npy"] == 2 and s["rejected:non_finite_embedding"] == 1
    )
    assert s["rejected:malformed_sample"] == 1 and s["read"] == s["kept"] + 5

    tr = Trainer(
        load_config("tiny", tiny_overrides(3)), str(tmp_path / "bad"), str(tmp_path / "run"), progress=False
    )
    summary = tr.train()
    tr.close()
    assert summary["steps"] == 3 and summary["skipped_steps"] == 0
    assert all(torch.isfinite(v).all() for v in tr.model.state_dict().values() if v.is_floating_point())


def test_non_finite_loss_is_skipped_then_stops_the_run(shards, tmp_path, monkeypatch):
    tr = Trainer(load_config("tiny", tiny_overrides(4, max_skipped_steps=2, checkpoint_every=100)), shards,
                 str(tmp_path / "run"), progress=False)
    real, calls = tr.loss, {"n": 0}

    def flaky(inp, gen, net=None):
        calls["n"] += 1
        out = real(inp, gen, net)
        return out * float("nan") if calls["n"] in (2, 3) else out

    monkeypatch.setattr(tr, "loss", flaky)
    summary = tr.train()
    assert summary["steps"] == 4 and summary["skipped_steps"] == 2
    assert all(torch.isfinite(v).all() for v in tr.model.state_dict().values() if v.is_floating_point())
    assert ckpt.load(ckpt.latest(tr.ckpt_dir))["skipped_steps"] == 2

    monkeypatch.setattr(tr, "loss", lambda inp, gen, net=None: real(inp, gen, net) * float("nan"))
    with pytest.raises(TrainingDiverged, match="max_skipped_steps"):
        tr.train(steps=8)
    assert ckpt.load(ckpt.latest(tr.ckpt_dir))["step"] == 4  # the last good checkpoint stays latest
    tr.close()


def test_four_then_six_steps_equals_six_with_minilm(tmp_path):
    """Stage 1 cluster shards: captions go through the real MiniLM encoder (its cache starts empty on
    resume, so a batch-dependent encoding would drift); the LR schedule does not depend on --steps."""
    pytest.importorskip("sentence_transformers")
    write_cluster_shards(str(tmp_path / "c"), n_shards=2, per_shard=3, size=16)
    over = tiny_overrides(6, checkpoint_every=2)
    over["text_encoder"] = {"kind": "minilm", "max_len": 12}
    over["model"]["max_context"] = 3
    cfg = load_config("tiny", over)
    try:
        one = Trainer(cfg, str(tmp_path / "c"), str(tmp_path / "one"), progress=False)
    except Exception as e:  # noqa: BLE001 - MiniLM weights package absent
        pytest.skip(f"MiniLM unavailable: {e}")
    ref_summary = one.train()
    ref = params(one.model)
    one.close()
    first = Trainer(cfg, str(tmp_path / "c"), str(tmp_path / "two"), progress=False)
    first.train(steps=4)
    first.close()
    second = Trainer(cfg, str(tmp_path / "c"), str(tmp_path / "two"), progress=False)
    assert second.step == 4
    summary = second.train(steps=6)
    got = params(second.model)
    second.close()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert summary["final_loss"] == ref_summary["final_loss"]  # mean of the last steps, across the resume
    rows = [
        [ln.split(",")[:4] for ln in (tmp_path / d / "log.csv").read_text().splitlines()]
        for d in ("one", "two")
    ]
    assert rows[0] == rows[1] and rows[0][0][:2] == ["step", "loss"]  # (samples_per_s is a timing)


def test_text_embedding_does_not_depend_on_batch_companions():
    """A padded batch changes its members' float bits; the cache must hold batch-independent values,
    or a resumed run (empty cache) would see other embeddings than the uninterrupted one."""
    pytest.importorskip("sentence_transformers")
    from model.text_encoder import build_text_encoder

    try:
        a = build_text_encoder({"kind": "minilm", "max_len": 16})
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"MiniLM unavailable: {e}")
    b = build_text_encoder({"kind": "minilm", "max_len": 16})
    long = "a much longer caption here with many more words than the first one has"
    together = a.encode_list(["a red dog", long])[0]
    alone = b.encode_list(["a red dog"])[0]
    assert torch.equal(together, alone)

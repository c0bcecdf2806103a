"""Trainer: exact resume, data accounting, shard loader determinism and resume with workers, demo entry."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from tests.test_train_toyshards import write_cluster_shards, write_task_shards
from train.data import DataConfig, expand_shards, make_loader
from train.trainer import Trainer, load_config

EMB = 16


def tiny_overrides(output_steps: int = 4, **train) -> dict:
    return {
        "model": {"image_size": 16, "base_channels": 16, "channel_mults": [1, 2], "num_res_blocks": 1,
                  "attn_resolutions": [8], "heads": 2, "cond_dim": 16, "max_context": 2},
        "text_encoder": {"kind": "precomputed", "dim": EMB, "max_len": 12},
        "data": {"batch_size": 2, "shuffle_buffer": 4, "num_workers": 0},
        "train": {"steps": output_steps, "checkpoint_every": 3, "log_every": 1, "tensorboard": False,
                  "warmup_steps": 2, "lr": 1e-3, "cpu_threads": 1, **train},
        "sample": {"steps": 3},
    }


@pytest.fixture(scope="module")
def task_shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tasks")
    write_task_shards(str(folder), n_shards=3, per_shard=3, size=24, emb_dim=EMB)
    return str(folder)


def params(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_exact_resume_matches_uninterrupted_run(task_shards, tmp_path):
    cfg = load_config("tiny", tiny_overrides(6))
    one = Trainer(cfg, task_shards, str(tmp_path / "one"), progress=False)
    one.train()
    ref, ref_ema = params(one.model), params(one.ema)
    one.close()

    first = Trainer(cfg, task_shards, str(tmp_path / "two"), progress=False)
    first.train(steps=3)  # checkpoint at step 3
    first.close()
    second = Trainer(cfg, task_shards, str(tmp_path / "two"), progress=False)
    assert second.step == 3 and second.data_pos
    summary = second.train()
    second.close()
    assert summary["steps"] == 6
    for name, got in ((ref, params(second.model)), (ref_ema, params(second.ema))):
        for k in name:
            assert torch.equal(name[k], got[k]), k
    rows = (tmp_path / "two" / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss") and len(rows) == 7  # header + steps 1..6, no duplicates


def test_loader_resume_with_workers_continues_exact_stream(tmp_path):
    shards = write_cluster_shards(str(tmp_path / "c"), n_shards=3, per_shard=3, size=16)
    cfg = DataConfig(image_size=16, max_context=3, batch_size=2, shuffle_buffer=3, num_workers=2, seed=5)
    it = iter(make_loader(shards, cfg))
    full = [next(it) for _ in range(7)]
    pos = {}
    for b in full[:3]:
        pos[b["_stream"]] = b["_pos"]
    it2 = iter(make_loader(shards, cfg, start_positions=pos, rotation=3 % 2))
    for want in full[3:]:
        got = next(it2)
        assert got["key"] == want["key"] and torch.equal(got["image"], want["image"])
        assert torch.equal(got["ctx_images"], want["ctx_images"]) and got["text"] == want["text"]


def test_cluster_visits_pick_fresh_targets_and_rejects_are_counted(tmp_path):
    shards = write_cluster_shards(str(tmp_path / "c"), n_shards=1, per_shard=2, size=16, corrupt=1)
    cfg = DataConfig(image_size=16, max_context=3, batch_size=1, shuffle_buffer=0, num_workers=0)
    it = iter(make_loader(expand_shards(str(tmp_path / "c")), cfg))
    batches = [next(it) for _ in range(6)]
    assert all(b["key"] == ["c00001"] for b in batches)  # the corrupt cluster is rejected, never yielded
    stats = batches[-1]["_stats"]
    assert stats["read"] == stats["kept"] + stats["rejected:undecodable_image"]
    assert stats["rejected:undecodable_image"] >= 5
    texts = {b["text"][0] for b in batches}
    ctx = batches[0]["ctx_text"][0]
    assert len(texts) > 1 and all(c.startswith(f"[ref#{i + 1}]") for i, c in enumerate(ctx))
    assert batches[0]["ctx_mask"].all()
    assert shards == expand_shards(str(tmp_path / "c" / "clusters-{00000..00000}.tar"))


def test_task_shards_use_precomputed_embeddings(task_shards, tmp_path):
    tr = Trainer(load_config("tiny", tiny_overrides(1)), task_shards, str(tmp_path / "r"), progress=False)
    batch = next(iter(tr.loader()))
    assert batch["text"][0].startswith("Render [ref#2]") and batch["ctx_emb"][0][0].shape == (6, EMB)
    inp = tr.prepare(batch, None, dropout=False)
    assert inp["tm"][0].sum() == 9 and inp["ctm"][0, 0].sum() == 6 and inp["cm"].all()
    g = torch.Generator().manual_seed(0)
    tr.tr = dataclasses.replace(tr.tr, drop_all_prob=0.0, drop_context_prob=1.0)  # typed, frozen section
    dropped = tr.prepare(batch, g)
    assert not dropped["cm"].any() and dropped["tm"].any()
    tr.close()


def test_demo_run_writes_grid_and_checkpoint(task_shards, tmp_path):
    import train

    out = train.demo_run(task_shards, str(tmp_path / "demo"), steps=3, overrides=tiny_overrides(3))
    assert out["steps"] == 3 and out["final_loss"] == out["final_loss"]  # not NaN
    assert (
        out["samples_png"].endswith(".png") and (tmp_path / "demo" / "checkpoints" / "latest.json").exists()
    )
    from PIL import Image

    assert Image.open(out["samples_png"]).size[0] > 16
    assert json.loads((tmp_path / "demo" / "checkpoints" / "latest.json").read_text())["step"] == 3

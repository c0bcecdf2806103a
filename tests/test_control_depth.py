"""Depth: clear unavailable reasons offline; the real DPT loading path on a tiny random config."""

import numpy as np
import pytest

from datasets.control.depth import DepthUnavailable, load_depth_model


def test_no_weights_gives_clear_reason(monkeypatch):
    monkeypatch.delenv("DEPTH_WEIGHTS", raising=False)
    with pytest.raises(DepthUnavailable) as exc:
        load_depth_model()
    assert "no depth weights" in exc.value.reason and "DPT" in exc.value.reason


def test_bad_paths_give_reasons(tmp_path):
    with pytest.raises(DepthUnavailable, match="does not exist"):
        load_depth_model(str(tmp_path / "nope"))
    with pytest.raises(DepthUnavailable, match="neither"):
        load_depth_model(str(tmp_path))
    with pytest.raises(DepthUnavailable, match="hubconf"):
        load_depth_model(f"{tmp_path}::DPT_Large::{tmp_path / 'x.pt'}")


def test_tiny_random_dpt_folder_loads_and_predicts(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.DPTConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=64,
        patch_size=16,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
    )
    transformers.DPTForDepthEstimation(cfg).save_pretrained(tmp_path)
    model = load_depth_model(str(tmp_path), device="cpu")
    d = model.predict(np.random.default_rng(0).integers(0, 255, (40, 70, 3), dtype=np.uint8))
    assert d.shape == (40, 70) and d.dtype == np.float32 and 0 <= d.min() and d.max() <= 1

"""Quality scorer: technical measures, BRISQUE, the committed head, degradations on real COCO, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mining.quality import degradations
from mining.quality.scorer import DEFAULT_WEIGHTS, get_scorer
from mining.quality.technical import technical
from tests.conftest import shared_subset


@pytest.fixture(scope="module")
def coco_images():
    coco = shared_subset("coco_mini")
    return [Image.open(p).convert("RGB") for p in sorted((coco / "val2017").glob("*.jpg"))[:2]]


def test_technical_measures_respond_to_their_degradation(coco_images):
    im = coco_images[0]
    _, base = technical(np.asarray(im))
    pairs = {"sharpness": degradations.blur, "noise": degradations.noise, "blockiness": degradations.jpeg,
             "resolution": degradations.downscale, "exposure": degradations.overexpose}
    for measure, fn in pairs.items():
        _, m = technical(np.asarray(fn(im)))
        assert m[measure] < base[measure], (measure, m[measure], base[measure])
    t, m = technical(np.zeros((100, 400, 3), np.uint8))  # flat black, wide: every value stays in [0, 1]
    assert 0 <= t <= 1 and all(0 <= v <= 1 for v in m.values())


def test_brisque_prefers_clean_over_noisy(coco_images):
    from mining.quality.brisque_score import Brisque, brisque_features

    b = Brisque()
    rgb = np.asarray(coco_images[0])
    assert brisque_features(rgb).shape == (36,)
    assert b.raw(np.asarray(degradations.noise(coco_images[0]))) > b.raw(rgb)


def test_committed_head_is_small_and_documented():
    assert DEFAULT_WEIGHTS.exists() and DEFAULT_WEIGHTS.stat().st_size < 1_000_000
    note = (DEFAULT_WEIGHTS.parent / "NOTE.md").read_text()
    assert "BIQ2021" in note and "SRCC" in note
    meta = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    combo, learned = (
        meta["metrics"]["test"]["combination"]["srcc"],
        meta["metrics"]["test"]["learned"]["srcc"],
    )
    # measured 0.810 vs 0.812 (ReLU6 Lite0 predictor): the extreme-only gates may cost a little,
    # never 0.03-0.07
    assert combo > 0.78 and combo >= learned - 0.02


def test_every_degradation_lowers_the_combined_score(coco_images):
    scorer = get_scorer(None, True)
    for im in coco_images:
        variants = [im] + [fn(im) for fn in degradations.DEGRADATIONS.values()]
        s = scorer.score(variants)
        assert all(0 <= r["quality"] <= 1 for r in s)
        for name, r in zip(degradations.DEGRADATIONS, s[1:]):
            assert r["quality"] < s[0]["quality"], (name, r, s[0])


def test_cli_writes_file_quality_first(tmp_path: Path):
    coco = shared_subset("coco_mini")
    src = sorted((coco / "val2017").glob("*.jpg"))[0]
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a b(1).jpg").write_bytes(src.read_bytes())
    (tmp_path / "imgs" / "bad.jpg").write_bytes(b"not a jpeg")
    lst = tmp_path / "list.csv"
    lst.write_text("file\nimgs/a b(1).jpg\nimgs/bad.jpg\n")
    from mining.quality.__main__ import main

    assert main(["--images", str(lst), "--out", str(tmp_path / "scores.csv")]) == 0
    with open(tmp_path / "scores.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames[:2] == ["file", "quality"]
    assert rows[0]["file"] == "imgs/a b(1).jpg" and 0 <= float(rows[0]["quality"]) <= 1
    assert rows[1]["quality"] == "" and rows[1]["error"].startswith("undecodable")


def test_clipping_gate_lowers_blown_out_images_only():
    from mining.quality.scorer import final_quality

    blend, tech_, res = np.full(3, 0.8), np.full(3, 0.6), np.ones(3)
    clip = np.array([0.0, 0.2, 0.6])
    q = final_quality(blend, tech_, res, clip, share=0.0, clip_gamma=2.0)
    assert q[0] == pytest.approx(0.8) and q[0] > q[1] > q[2]
    assert np.all(final_quality(blend, tech_, res, clip, share=0.0, clip_gamma=0.0) == pytest.approx(0.8))
    assert final_quality(blend, tech_, res * 0.25, clip, share=0.5)[0] == pytest.approx(0.7 * 0.5)


def test_gates_act_only_at_extremes():
    from mining.quality.scorer import final_quality

    blend, tech_, res = np.full(4, 0.8), np.full(4, 0.6), np.ones(4)
    clip = np.array([0.0, 0.04, 0.3, 0.0])
    sharp = np.array([0.9, 0.6, 0.9, 0.1])  # the last one is far below its floor (0.5)
    q = final_quality(blend, tech_, res, clip, clip_gamma=2.0, clip_floor=0.05, measures={"sharpness": sharp},
                      floors={"sharpness": 0.5}, gate_gamma=1.0)
    assert q[0] == pytest.approx(0.8) and q[1] == pytest.approx(
        0.8
    )  # normal photos keep their order and score
    assert q[2] < 0.8 * 0.8 and q[3] == pytest.approx(0.8 * 0.2)


def test_onnx_and_torch_extractors_agree(coco_images):
    pytest.importorskip("onnx")
    from mining.quality.deep import QualityFeatures

    ims = [coco_images[0], coco_images[0].resize((40, 30))]  # a tiny one is up-scaled to MIN_SIDE
    fo = QualityFeatures(threads=2, backend="onnx")(ims)
    ft = QualityFeatures(threads=2, backend="torch")(ims)
    assert fo.shape == ft.shape == (2, QualityFeatures.dim.fget(None)) and np.isfinite(fo).all()
    np.testing.assert_allclose(fo, ft, atol=1e-3, rtol=1e-3)


def test_lora_delta_merges_into_plain_weights():
    """The adapter network (LoRA + BN affine) and the plain network with the saved delta merged agree."""
    import torch

    from mining.quality import finetune as ft
    from mining.quality.deep import _tapped_module

    torch.manual_seed(0)
    m = ft.base_model()
    wrapped = ft.add_adapters(m, rank=4, alpha=4.0, seed=0)
    with torch.no_grad():
        for w in wrapped.values():  # non-zero B (it starts at 0) and fp16-exact factors, as stored
            w.b.normal_(0, 0.02)
            w.a.copy_(w.a.half().float())
            w.b.copy_((w.b * w.scale).half().float() / w.scale)
        for bn in ft.bn_targets(m).values():
            bn.weight.mul_(1.1)
            bn.bias.add_(0.05)
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith((".a", ".b")) or "_bn" in n for n in trainable)
    assert not any(n.startswith("_blocks.0.") or "_conv_stem" in n for n in trainable)
    head = {"mu": np.zeros(3), "sd": np.ones(3), "w": np.zeros(3), "b": np.float32(0.5)}
    delta = ft.delta_arrays(m, wrapped, head)
    assert delta["lora_b/conv_head"].dtype == np.float16 and any(np.abs(v).max() > 0 for k, v in delta.items()
                                                                 if k.startswith("lora_b/"))
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        h = m._swish(m._bn0(m._conv_stem(x)))
        for b in m._blocks[: ft.SPLIT]:
            h = b(h)
        adapted = ft.pooled_from_split(m, h).numpy()
        merged = _tapped_module(ft.merged_model(delta), ft.TAPS)(x).numpy()
        plain = _tapped_module(ft.base_model(), ft.TAPS)(x).numpy()
    np.testing.assert_allclose(merged, adapted, atol=1e-3, rtol=1e-3)
    assert np.abs(plain - adapted).max() > 1e-2  # the delta does change the network


def test_committed_finetune_delta_loads_and_exports(coco_images):
    """The committed delta is small, merges, and gives the same predictions on onnxruntime and torch."""
    from mining.quality.finetune import DEFAULT_DELTA, TunedQuality

    # (the v3 head does not mix it in, t = 0; the delta stays loadable for `--finetune`)
    assert DEFAULT_DELTA.exists() and DEFAULT_DELTA.stat().st_size < 1_000_000
    pytest.importorskip("onnx")
    ims = [coco_images[0], coco_images[1].resize((300, 200))]
    po = TunedQuality(threads=2, backend="onnx")(ims)
    pt = TunedQuality(threads=2, backend="torch")(ims)
    assert po.shape == (2,) and np.isfinite(po).all()
    np.testing.assert_allclose(po, pt, atol=1e-3)


def test_patch_std_pooling_sees_spatial_heterogeneity():
    """``pstd`` is 0 for a map whose patches all respond alike and > 0 when half the image differs,
    although both maps have the same mean; every statistic exports with dynamic H/W (odd sizes too)."""
    import torch

    from mining.quality.deep import STATS, _pool

    flat = torch.ones(1, 2, 16, 16)
    half = torch.ones(1, 2, 16, 16)
    half[..., :8] = 0.0
    half[..., 8:] = 2.0
    pf, ph = _pool(flat, STATS).numpy(), _pool(half, STATS).numpy()
    i = STATS.index("pstd")
    assert np.allclose(pf[0, 2 * i: 2 * i + 2], 0) and (ph[0, 2 * i: 2 * i + 2] > 0.9).all()
    assert np.allclose(pf[0, :2], ph[0, :2])  # same mean
    assert np.isfinite(_pool(torch.randn(1, 2, 7, 5), STATS).numpy()).all()


def test_group_weighted_ridge_ranks_held_out_rows():
    """The v3 head fit: signed power + per-group column scale + relative penalty, chosen on val, then the
    one-penalty refit; a wide noisy group does not drown a narrow informative one."""
    from mining.quality.ridge import fit_head, ridge_predict

    rng = np.random.default_rng(0)
    n = 200
    signal = rng.normal(size=(n, 4))
    y = signal @ np.array([1.0, 0.5, -0.5, 0.25])
    x = np.concatenate([signal + 0.1 * rng.normal(size=(n, 4)), rng.normal(size=(n, 400))], 1)
    scale = np.r_[np.full(4, 0.5), np.full(400, 0.05)]  # 1 / sqrt(group size)
    tr, va = slice(0, 120), slice(120, 200)
    head = fit_head(x[tr], y[tr], x[va], y[va], (0.01, 0.1, 1.0), scale, power=1.0, relative=True)
    refit = fit_head(x, y, alphas=(float(head["alpha"]),), scale=scale, power=1.0)
    from scipy import stats

    assert stats.spearmanr(ridge_predict(head, x[va]), y[va]).statistic > 0.9
    plain = fit_head(x[tr], y[tr], x[va], y[va], (0.01, 0.1, 1.0), None, power=1.0, relative=True)
    assert stats.spearmanr(ridge_predict(plain, x[va]), y[va]).statistic < stats.spearmanr(
        ridge_predict(head, x[va]), y[va]).statistic
    assert float(refit["alpha"]) == pytest.approx(float(head["alpha"]))


def test_column_scale_weighs_every_group_equally():
    from mining.quality.deep import column_layout
    from mining.quality.train import column_scale

    sc, lay = column_scale(), column_layout()
    assert sc.shape == lay["view"].shape
    from mining.quality.deep import STATS, VIEWS
    from mining.quality.train import DEPTHS

    assert np.isclose((sc ** 2).sum(), len(VIEWS) * len(STATS) * len(DEPTHS))  # each group sums to 1
    head_mean = (lay["tap"] == lay["tap"].max()) & (lay["view"] == 0) & (lay["stat"] == 0)
    assert np.isclose((sc[head_mean] ** 2).sum(), 1.0)  # one group: the 1280 head means of the native view

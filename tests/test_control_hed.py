"""HED port: layout/semantics invariants, shapes, agreement with human edges on a real BSDS image."""

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from datasets.control.hed import HEDDetector, _kernel, preprocess
from tests.conftest import shared_subset


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return HEDDetector(device="cpu")


def test_keras_kernel_layout_matches_cross_correlation():
    rng = np.random.default_rng(0)
    k = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)  # Keras (kh, kw, in, out)
    x = rng.normal(size=(5, 6, 2)).astype(np.float32)  # HWC
    out = F.conv2d(torch.from_numpy(x.transpose(2, 0, 1))[None], _kernel(k), padding=1)[0].numpy()
    y, xx, o = 2, 3, 1  # an interior pixel, computed the Keras way
    expect = sum(
        x[y + dy - 1, xx + dx - 1, i] * k[dy, dx, i, o]
        for dy in range(3)
        for dx in range(3)
        for i in range(2)
    )
    assert out[o, y, xx] == pytest.approx(expect, rel=1e-5)


def test_preprocess_is_bgr_minus_caffe_mean():
    rgb = np.zeros((2, 2, 3), np.float32)
    rgb[..., 0] = 200  # red
    t = preprocess(rgb)
    assert t.shape == (3, 2, 2)
    assert t[2, 0, 0] == pytest.approx(200 - 122.67892) and t[0, 0, 0] == pytest.approx(-104.00699)


def test_side_outputs_shapes_on_odd_size(detector):
    img = (np.random.default_rng(1).random((37, 53, 3)) * 255).astype(np.uint8)
    sides, fused = detector.side_outputs(img)
    assert len(sides) == 5 and all(s.shape == (37, 53) for s in sides) and fused.shape == (37, 53)
    e = detector.edges(Image.fromarray(img))
    assert e.dtype == np.float32 and e.shape == (37, 53) and 0 <= e.min() and e.max() <= 1
    np.testing.assert_allclose(e, fused, atol=1e-5)
    # batching same-size images gives the same maps as one by one
    batch = detector.edges_batch([img, img[:, ::-1]])
    np.testing.assert_allclose(batch[0], e, atol=1e-4)


def _corr(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_fused_output_agrees_with_human_edges(detector):
    bsds = shared_subset("bsds500")
    with open(bsds / "metadata.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["split"] == "val")
    img = Image.open(bsds / row["file"])
    human = ndimage.gaussian_filter(np.asarray(Image.open(bsds / row["edge"]), np.float32) / 255, 1.5)
    hed = detector.edges(img)
    grey = ndimage.gaussian_filter(np.asarray(img.convert("L"), np.float32), 1.5)
    sobel = np.hypot(ndimage.sobel(grey, 0), ndimage.sobel(grey, 1))
    c_hed, c_sobel = _corr(hed, human), _corr(sobel, human)
    assert c_hed > 0.45, c_hed
    assert c_hed > c_sobel + 0.05, (c_hed, c_sobel)
    # human edges of another image do not explain this map
    assert _corr(hed, human[::-1, ::-1]) < 0.15


def test_merged_output_is_mean_of_fused_and_sides(detector):
    img = (np.random.default_rng(2).random((33, 45, 3)) * 255).astype(np.uint8)
    sides, fused = detector.side_outputs(img)
    merged = HEDDetector(device="cpu", output="merged")
    merged.net = detector.net  # same weights, no second load
    np.testing.assert_allclose(merged.edges(img), np.mean([fused, *sides], axis=0), atol=1e-5)
    with pytest.raises(ValueError):
        HEDDetector(device="cpu", output="late")


def _xcorr_peak(a, b, r=3):
    """(dy, dx) maximising sum(a * roll(b, (dy, dx))): where ``a`` sits relative to ``b``."""
    a, b = a - a.mean(), b - b.mean()
    scores = {(dy, dx): float((a * np.roll(b, (dy, dx), (0, 1))).sum())
              for dy in range(-r, r + 1) for dx in range(-r, r + 1)}
    return max(scores, key=scores.get)


def test_fused_map_is_aligned_with_human_edges(detector):
    bsds = shared_subset("bsds500")
    with open(bsds / "metadata.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "val"][:2]
    fused, human = [], []
    for row in rows:
        fused.append(detector.edges(Image.open(bsds / row["file"])))
        human.append(np.asarray(Image.open(bsds / row["edge"]), np.float32) / 255)
    a, b = np.concatenate([f.ravel() for f in fused]), np.concatenate([h.ravel() for h in human])
    shape = (-1, fused[0].shape[1]) if all(f.shape[1] == fused[0].shape[1] for f in fused) else None
    assert shape is not None
    a, b = a.reshape(shape), b.reshape(shape)
    assert _xcorr_peak(a, b) == (0, 0)
    assert _xcorr_peak(np.roll(a, 2, axis=0), b) == (2, 0)  # the check sees a 2-px shift

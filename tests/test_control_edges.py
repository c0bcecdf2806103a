"""Sketch strokes, NMS and the boundary-matching evaluation (ODS/OIS)."""

import numpy as np
from scipy import ndimage

from datasets.control import ods
from datasets.control.edges import nms, sketch


def _blurred_line(h=60, w=80):
    m = np.zeros((h, w), np.float32)
    m[30, 10:70] = 1
    m[10:50, 20] = 1
    e = ndimage.gaussian_filter(m, 2.0)
    return m.astype(bool), e / e.max()


def test_nms_keeps_ridge_only():
    line, e = _blurred_line()
    n = nms(e)
    assert n[30, 40] > 0.5 and n[29, 40] == 0 and n[31, 40] == 0


def test_sketch_is_thin_binary_and_on_the_lines():
    line, e = _blurred_line()
    s = sketch(e)
    assert s.dtype == np.uint8 and set(np.unique(s)) <= {0, 255}
    on = s > 0
    assert on.sum() > 60
    blocks = on[:-1, :-1] & on[1:, :-1] & on[:-1, 1:] & on[1:, 1:]
    assert not blocks.any()  # one pixel wide: no 2x2 block of stroke
    near = ndimage.binary_dilation(line, iterations=2)
    assert (on & near).sum() / on.sum() > 0.95
    assert sketch(e, invert=True)[on].max() == 0


def test_matching_tolerance_and_one_to_one():
    gt = np.zeros((50, 50), bool)
    gt[25, 5:45] = True
    shifted = np.roll(gt, 2, axis=0)
    m, n = ods.match_count(shifted, gt, max_dist=3)
    assert n == 40 and m.all()
    _, n_far = ods.match_count(np.roll(gt, 5, axis=0), gt, max_dist=3)
    assert n_far == 0
    double = shifted | np.roll(gt, -2, axis=0)  # two lines for one human line: only one can match
    m2, n2 = ods.match_count(double, gt, max_dist=3)
    assert n2 == 40 and m2.sum() == 40


def test_ods_perfect_and_noise():
    gt = np.zeros((60, 60), bool)
    gt[20, 5:55] = True
    gt[5:55, 40] = True
    perfect = ods.summarize([ods.evaluate_image(gt.astype(np.float32) * 0.9, [gt], n_thresholds=9)])
    assert perfect["ods"] > 0.99 and perfect["ois"] > 0.99
    noise = np.random.default_rng(0).random((60, 60)).astype(np.float32)
    bad = ods.summarize([ods.evaluate_image(nms(noise), [gt], n_thresholds=9)])
    assert bad["ods"] < 0.5


def test_seg_and_level_boundaries():
    seg = np.zeros((10, 10), np.uint8)
    seg[:, 5:] = 1
    b = ods.seg_to_boundary(seg)
    assert b[:, 4].all() and b.sum() == 10
    frac = np.array([[0, 1 / 3, 2 / 3, 1.0]])
    levels = ods.level_boundaries(frac, 3)
    assert [int(x.sum()) for x in levels] == [3, 2, 1]


def test_precision_against_other_maps():
    gt = np.zeros((40, 40), bool)
    gt[20, 5:35] = True
    other = np.zeros_like(gt)
    other[10, 5:35] = True  # a second annotator's line
    pred = (gt | other).astype(np.float32)
    alone = ods.evaluate_image(pred, [gt], n_thresholds=3)
    both = ods.evaluate_image(pred, [gt], n_thresholds=3, precision_gts=[gt | other])
    assert alone.cnt_p[1] == 30 and both.cnt_p[1] == 60 and both.cnt_r[1] == alone.cnt_r[1] == 30


def test_thin_sparse_equals_skimage_thin():
    from skimage.morphology import thin

    rng = np.random.default_rng(3)
    for mask in (rng.random((40, 70)) > 0.45, ndimage.binary_dilation(_blurred_line()[0], iterations=2)):
        np.testing.assert_array_equal(ods.thin_sparse(mask), thin(mask))
    assert not ods.thin_sparse(np.zeros((5, 5), bool)).any()


def test_weighted_recall_counts_annotator_fractions():
    frac = np.zeros((40, 40), np.float32)
    frac[10, 5:35] = 0.75  # drawn by 3 of 4 annotators
    frac[30, 5:35] = 0.25  # drawn by 1 of 4
    pred = np.zeros_like(frac)
    pred[10, 5:35] = 0.9  # finds the consensus line only
    c = ods.evaluate_image(pred, [frac > 0], n_thresholds=3, gt_weights=[frac])
    assert c.sum_r[1] == 30 and c.cnt_r[1] == 0.75 * 30  # 3 of 4 annotators' pixels recalled
    assert c.cnt_p[1] == c.sum_p[1] == 30
    unweighted = ods.evaluate_image(pred, [frac > 0], n_thresholds=3)
    assert unweighted.cnt_r[1] / unweighted.sum_r[1] == 0.5


def test_parallel_evaluation_equals_serial():
    rng = np.random.default_rng(5)
    gt = np.zeros((30, 30), bool)
    gt[15, 3:27] = True
    items = [
        nms(
            ndimage.gaussian_filter(gt.astype(np.float32), 1.5)
            + 0.2 * rng.random((30, 30)).astype(np.float32)
        )
        for _ in range(3)
    ]
    serial = ods.evaluate_many(_eval_line, items, workers=1)
    par = ods.evaluate_many(_eval_line, items, workers=2)
    for a, b in zip(serial, par):
        np.testing.assert_array_equal(a.cnt_p, b.cnt_p)
        np.testing.assert_array_equal(a.cnt_r, b.cnt_r)


def _eval_line(edge):
    gt = np.zeros((30, 30), bool)
    gt[15, 3:27] = True
    return ods.evaluate_image(edge, [gt], n_thresholds=5)

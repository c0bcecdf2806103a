"""The official-protocol path: BSDS500 groundTruth .mat files with one boundary map per annotator."""

from __future__ import annotations

import numpy as np
from scipy.io import savemat

from datasets.control import bsds, ods


def write_mat(path, boundaries: list[np.ndarray]) -> None:
    cells = np.empty((1, len(boundaries)), dtype=object)
    for i, b in enumerate(boundaries):
        seg = (np.cumsum(b, axis=1) % 2 + 1).astype(np.uint16)
        cells[0, i] = {"Segmentation": seg, "Boundaries": b.astype(bool)}
    savemat(path, {"groundTruth": cells})


def test_mat_loader_and_per_annotator_matching(tmp_path):
    h, w = 300, 400  # matching tolerance 0.0075 x diagonal = 3.75 px
    a = np.zeros((h, w), bool)
    a[:, 30] = True  # annotator 1: one vertical line
    b = np.zeros((h, w), bool)
    b[:, 31] = True  # annotator 2 traced the same boundary 1 px to the right
    b[20, :] = True  # ... and a horizontal line annotator 1 did not draw
    write_mat(tmp_path / "img.mat", [a, b])
    maps = bsds.load_boundaries(str(tmp_path / "img.mat"))
    assert len(maps) == 2 and np.array_equal(maps[0], a) and np.array_equal(maps[1], b)

    pred = np.zeros((h, w), np.float32)
    pred[:, 30] = 0.9  # the vertical boundary only
    c = ods.evaluate_image(pred, maps, n_thresholds=9)
    k = 4  # threshold 0.5
    # every predicted pixel matches (in either map): precision 1
    assert c.cnt_p[k] == c.sum_p[k] == h
    # recall counts each annotator separately: the one line matches all of a and b's vertical trace
    # (h pixels each, one-to-one); b's horizontal line stays unmatched
    assert c.sum_r[k] == a.sum() + b.sum()
    assert c.cnt_r[k] == 2 * h
    # the union with one-to-one matching would lose one of the two parallel traces
    u = ods.evaluate_image(pred, [a | b], n_thresholds=9)
    assert u.cnt_r[k] < c.cnt_r[k]


def test_evaluate_dir_with_precomputed_edges(tmp_path):
    h, w = 50, 70
    gt, edges = tmp_path / "gt", tmp_path / "edges"
    gt.mkdir()
    edges.mkdir()
    for i in range(3):
        a = np.zeros((h, w), bool)
        a[:, 10 + 5 * i] = True
        write_mat(gt / f"im{i}.mat", [a, a])
        e = np.zeros((h, w), np.float32)
        e[:, 10 + 5 * i] = 0.8
        np.save(edges / f"im{i}.npy", e)
    res = bsds.evaluate_dir(str(tmp_path / "images"), str(gt), edges=str(edges), n_thresholds=9, workers=1)
    assert res["n_images"] == 3 and res["ods"] > 0.95 and not res["missing_images"]

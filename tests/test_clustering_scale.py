"""The scale path of clustering: exact close pairs without the full matrix, same kept set as SemDeDup."""

import numpy as np
import pytest

from bench.clustering_scale import ours, reference, synth
from clustering.knn import bf16_available, close_pairs, earlier_duplicates, knn

PRECISIONS = [False, True] if bf16_available() else [False]


def _brute_pairs(x, thr):
    s = x @ x.T
    i, j = np.nonzero(np.triu(s >= thr, 1))
    return set(zip(i.tolist(), j.tolist()))


def _topics_with_close_pairs(n=3000, d=64, seed=0):
    """Topics plus near pairs over cosines 0.80..0.99; a third of them straddle the border of two
    topics (x leans to topic a, its partner to topic b), so they only meet through the spill margin."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((12, d))
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    x = topics[rng.integers(0, 12, n)] + 0.12 * rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    m = n // 5
    src, dst = rng.choice(n, m, replace=False), rng.choice(n, m, replace=False)
    y = x[src] + rng.uniform(0.05, 0.7, (m, 1)) * rng.standard_normal((m, d)) / np.sqrt(d)
    x[dst] = y / np.linalg.norm(y, axis=1, keepdims=True)
    b = m // 3  # border pairs: mid(a, b) +- eps (a - b)
    a_, b_ = rng.integers(0, 12, b), (rng.integers(1, 12, b) + rng.integers(0, 12, b)) % 12
    a_, b_ = a_[a_ != b_], b_[a_ != b_]
    mid = topics[a_] + topics[b_] + 0.03 * rng.standard_normal((len(a_), d))
    eps = rng.uniform(0.05, 0.4, (len(a_), 1)) * (topics[a_] - topics[b_])
    p, q = mid + eps, mid - eps
    x[src[: len(a_)]] = p / np.linalg.norm(p, axis=1, keepdims=True)
    x[dst[: len(a_)]] = q / np.linalg.norm(q, axis=1, keepdims=True)
    return x.astype(np.float32)


@pytest.mark.parametrize("use_bf16", PRECISIONS)
@pytest.mark.parametrize("thr", [0.8, 0.9, 0.95])
def test_close_pairs_are_exactly_the_brute_force_pairs(use_bf16, thr):
    x = _topics_with_close_pairs()
    want = _brute_pairs(x, thr)
    assert len(want) > 100
    lists = close_pairs(x, thr, sub_size=250, use_bf16=use_bf16)
    full = close_pairs(x, thr, sub_size=250, use_bf16=use_bf16, max_work=0.0)  # forced full-matrix path
    assert full.lists == 0 and set(zip(full.pair_i.tolist(), full.pair_j.tolist())) == want
    assert set(zip(lists.pair_i.tolist(), lists.pair_j.tolist())) == want
    assert (lists.pair_i < lists.pair_j).all()
    np.testing.assert_allclose(
        lists.pair_sim, np.einsum("id,id->i", x[lists.pair_i], x[lists.pair_j]), atol=1e-5
    )
    if thr >= 0.9:  # the sub-cluster path is really taken (and saves work) at dedup thresholds
        assert lists.lists > 0 and lists.work < 0.5


def test_rows_slightly_off_unit_norm_stay_exact():
    x = _topics_with_close_pairs(1500, 32, 1) * np.float32(1.002)
    got = close_pairs(x, 0.95, sub_size=200)
    assert got.lists > 0
    assert set(zip(got.pair_i.tolist(), got.pair_j.tolist())) == _brute_pairs(x, 0.95)


def test_neighbours_from_the_same_tiles():
    x = synth(4000, 64, 0.1, 2)
    cp = close_pairs(x, 0.95, k=10)
    assert cp.lists > 0 and cp.idx.shape == (4000, 10)
    assert not (cp.idx == np.arange(4000)[:, None]).any() and (cp.idx >= 0).all()
    assert (np.diff(cp.sims, axis=1) <= 1e-6).all()
    exact = np.einsum("id,ikd->ik", x, x[cp.idx])
    assert np.abs(exact - cp.sims).max() < 0.01  # bf16-rounded below the threshold at most
    near = cp.sims >= 0.95 - 0.02
    np.testing.assert_allclose(cp.sims[near], exact[near], atol=1e-5)  # exact near the threshold
    es, ei = knn(x, 10, "flat")
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ei, cp.idx)])
    assert recall > 0.8 and np.einsum("id,ikd->ik", x, x[cp.idx]).mean() > 0.99 * es.mean()


def test_earlier_duplicates_order_rule():
    # 0~1 (0.97), 1~2 (0.99), 0~2 (0.96): 1 and 2 both go (SemDeDup: any earlier close item),
    # 2 -> 1 (most similar)
    dup = earlier_duplicates(
        4, np.array([0, 1, 0]), np.array([1, 2, 2]), np.array([0.97, 0.99, 0.96], np.float32)
    )
    assert dup.tolist() == [-1, 0, 1, -1]


def test_scale_path_keeps_the_same_set_as_semdedup():
    x = synth(12_000, 128, 0.1, 5)
    kept, tm = ours(x, 3, 0.95, 0, 10)
    kept_ref, tr = reference(x, 3, 0.95, 0, 10)
    assert (tm["labels"] == tr["labels"]).all()
    assert tm["full_matrix_groups"] == 0 and tm["pair_flops"] < 0.5 * 2 * 128 * np.bincount(
        tm["labels"]
    ) @ np.bincount(tm["labels"])
    assert 0.85 * 12_000 < kept.sum() < 0.95 * 12_000
    np.testing.assert_array_equal(kept, kept_ref)

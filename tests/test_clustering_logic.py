"""Pure clustering logic: hashes, kNN backends, dedup rule vs a pairwise reference, 5-pair clusters."""

import numpy as np
from PIL import Image

from bench.clustering_scale import ours, reference, synth
from clustering.build import ClusterConfig, cluster_group
from clustering.kmeans import assign, num_centroids, train_centroids
from clustering.knn import bf16_available, knn
from clustering.phash import flip_hamming, phash_pair, to_signed
from clustering.scoring import score


def _img(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(a).resize((96, 80), Image.Resampling.BILINEAR)


def test_phash_survives_flip_and_resize_but_separates_images():
    a, b = _img(0), _img(1)
    pa, _ = phash_pair(a)
    pf, pff = phash_pair(a.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    pr, prf = phash_pair(a.resize((48, 40)))
    pb, pbf = phash_pair(b)
    s = to_signed
    assert flip_hamming(s(pa), s(pf), s(pff)) <= 2
    assert flip_hamming(s(pa), s(pr), s(prf)) <= 4
    assert flip_hamming(s(pa), s(pb), s(pbf)) > 10


def test_knn_backends_agree_and_exclude_self():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 48)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    s1, i1 = knn(x, 10, "flat")
    assert not (i1 == np.arange(len(x))[:, None]).any()
    assert (np.diff(s1, axis=1) <= 1e-6).all()
    if bf16_available():
        s2, i2 = knn(x, 10, "bf16")
        assert (i1 == i2).mean() > 0.99 and np.abs(s1 - s2).max() < 1e-5


def test_adaptive_centroids_and_assignment():
    assert num_centroids(150) == 1
    assert num_centroids(100_000_000) == 25_000
    assert num_centroids(10_000, override=7) == 7
    x = synth(4000, 32, 0.0, 1)
    c = train_centroids(x[:2000], 8)
    assert c.shape == (8, 32)
    np.testing.assert_array_equal(assign(x, c, use_bf16=False), (x @ c.T).argmax(1))
    if bf16_available():
        np.testing.assert_array_equal(assign(x, c, use_bf16=True), assign(x, c, use_bf16=False))


def test_dedup_matches_pairwise_reference():
    x = synth(6000, 64, 0.15, 3)
    kept, _ = ours(x, 3, 0.95, 0, 10)
    kept_ref, _ = reference(x, 3, 0.95, 0, 10)
    assert 0.8 * 6000 < kept.sum() < 0.9 * 6000
    np.testing.assert_array_equal(kept, kept_ref)


def _points(groups=30, per=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((groups, 32))
    pts, truth = [], []
    for g in range(groups):
        for m in range(per):
            v = centres[g] + 0.5 * rng.standard_normal(32)
            pts.append(
                {"key": f"g{g}m{m}", "url": f"u{g}/{m}", "embedding": v / np.linalg.norm(v), "quality": 0.5}
            )
            truth.append({"key": f"g{g}m{m}", "group": str(g), "role": "original", "duplicate_of_key": ""})
        v = pts[-1]["embedding"] + 0.005 * rng.standard_normal(32)
        pts.append({"key": f"g{g}d", "url": f"d{g}", "embedding": v / np.linalg.norm(v), "quality": 0.1})
        truth.append(
            {
                "key": f"g{g}d",
                "group": str(g),
                "role": "near_duplicate",
                "duplicate_of_key": f"g{g}m{per - 1}",
            }
        )
    return pts, truth


def test_clusters_have_five_distinct_pairs_seed_first_and_no_duplicates():
    pts, truth = _points()
    clusters, dups, stats = cluster_group(pts, "animals", ClusterConfig())
    assert stats["duplicates"] == len(dups) >= 30
    assert all(len(c["keys"]) == 5 == len(set(c["keys"])) for c in clusters)
    assert all(c["similarities"][0] == 1.0 and c["domain"] == "animals" for c in clusters)
    discarded = stats["clusters_too_small"] + stats["clusters_weak"]
    assert stats["clusters_kept"] + discarded == stats["points"] - stats["duplicates"]
    res = score(clusters, dups, truth, {p["key"] for p in pts})
    assert res["recall"] >= 0.95 and res["precision"] >= 0.98 and res["clusters_with_planted_dups"] == 0
    assert res["purity"] >= 0.9
    cover, _, _ = cluster_group(pts, "animals", ClusterConfig(seeds="cover"))
    assert 0 < len(cover) < len(clusters)


def test_too_small_groups_are_discarded():
    pts, _ = _points(groups=1, per=3)
    clusters, _, stats = cluster_group(pts, "x", ClusterConfig())
    assert clusters == [] and stats["clusters_too_small"] >= 1


def test_merge_candidates_unions_dedups_and_orders_by_exact_cosine():
    from clustering.build import merge_candidates

    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims, idx = knn(x, 2, "flat")
    extra = np.array([[idx[i, 0], (i + 3) % 6, -1] for i in range(6)])
    s, i = merge_candidates(x, sims, idx, extra)
    for r in range(6):
        got = [j for j in i[r] if j >= 0]
        assert r not in got and len(got) == len(set(got)) == len(set(idx[r]) | {(r + 3) % 6})
        np.testing.assert_allclose(s[r, :len(got)], x[got] @ x[r], rtol=1e-5)
        assert (np.diff(s[r, :len(got)]) <= 1e-6).all()

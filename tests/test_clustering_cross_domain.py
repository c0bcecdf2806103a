"""The cross-domain near-duplicate pass, root resolution of duplicate chains, and the cluster ratio test."""

import numpy as np

from clustering.build import ClusterConfig, cluster_group, weak_cluster
from clustering.cross_domain import cross_domain_duplicates, list_assignments, resolve_roots
from clustering.dedup import DedupConfig


def _unit(v):
    return (v / np.linalg.norm(v)).astype(np.float32)


def _points(seed=0):
    """10 records in each of two domains; a near-copy of a0 in domain b, a near-copy of a1 in domain a."""
    rng = np.random.default_rng(seed)
    pts = [{"key": f"{d}{i}", "domain": d, "quality": 0.5, "embedding": _unit(rng.standard_normal(32))}
           for d in "ab" for i in range(10)]
    a0, a1 = pts[0]["embedding"], pts[1]["embedding"]
    pts.append(
        {
            "key": "copy_b",
            "domain": "b",
            "quality": 0.1,
            "embedding": _unit(a0 + 0.01 * rng.standard_normal(32)),
        }
    )
    pts.append(
        {
            "key": "copy_a",
            "domain": "a",
            "quality": 0.1,
            "embedding": _unit(a1 + 0.01 * rng.standard_normal(32)),
        }
    )
    return pts


def test_copies_in_another_domain_are_removed_and_same_domain_pairs_left_alone():
    pts = _points()
    kept, dups, stats = cross_domain_duplicates(pts, [True] * len(pts), DedupConfig(use_copy=False))
    assert [(d["key"], d["duplicate_of"], d["reason"]) for d in dups] == [
        ("copy_b", "a0", "cross_domain_cosine")
    ]
    assert (
        stats["cross_domain_duplicates"] == 1 and len(kept) == len(pts) - 1
    )  # copy_a: same domain, per-domain pass
    assert {p["key"] for p in kept} == {p["key"] for p in pts} - {"copy_b"}


def test_guests_are_not_judged_and_one_domain_is_a_no_op():
    pts = _points()
    home = [p["key"] != "copy_b" for p in pts]  # copy_b is only a guest of this list
    kept, dups, _ = cross_domain_duplicates(pts, home, DedupConfig(use_copy=False))
    assert dups == [] and "copy_b" not in {p["key"] for p in kept} and len(kept) == len(pts) - 1
    same = [dict(p, domain="a") for p in pts]
    assert cross_domain_duplicates(same, [True] * len(same), DedupConfig(use_copy=False))[1] == []


def test_list_assignments_spill_to_a_close_second_list():
    scores = np.array([[0.9, 0.1, 0.88], [0.2, 0.9, 0.5]], np.float32)
    assert list_assignments(scores, 0.05) == [[(0, True), (2, False)], [(1, True)]]
    assert list_assignments(np.zeros((2, 1)), 0.05) == [[(0, True)], [(0, True)]]


def test_resolve_roots_points_every_duplicate_at_a_kept_record():
    rows = [
        {"key": "c", "duplicate_of": "b", "reason": "x"},
        {"key": "b", "duplicate_of": "a", "reason": "y"},
        {"key": "d", "duplicate_of": "a", "reason": "z"},
    ]
    assert [r["duplicate_of"] for r in resolve_roots(rows)] == ["a", "a", "a"]


def test_ratio_test_discards_clusters_with_a_far_weakest_member():
    assert not weak_cluster([0.9, 0.85, 0.82, 0.81], 2.0)  # distances 0.1 .. 0.19
    assert weak_cluster([0.9, 0.85, 0.82, 0.7], 2.0)  # 0.3 > 2 * 0.1
    assert not weak_cluster([0.9, 0.85, 0.82, 0.7], 0.0)  # off
    assert not weak_cluster([0.5, 0.45, 0.42, 0.4], 2.0)  # scale-free: low cosines, small spread
    rng = np.random.default_rng(3)
    centre = rng.standard_normal(32)
    pts = [{"key": f"k{i}", "quality": 0.5, "embedding": _unit(centre + s * rng.standard_normal(32))}
           for i, s in enumerate([0.2] * 5 + [3.0] * 5)]
    on, _, st_on = cluster_group(pts, "x", ClusterConfig(dedup=DedupConfig(use_copy=False)))
    off, _, st_off = cluster_group(
        pts, "x", ClusterConfig(max_distance_ratio=0.0, dedup=DedupConfig(use_copy=False))
    )
    assert st_on["clusters_weak"] > 0 and st_off["clusters_weak"] == 0
    assert len(on) + st_on["clusters_weak"] == len(off)
    assert all(not weak_cluster(c["similarities"][1:], 2.0) for c in on)

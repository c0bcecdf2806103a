"""Coherent clusters (calibrated member floor + mutual-neighbour test), domain votes, calibration files."""

import json

import numpy as np
import pytest
from PIL import Image

from clustering.build import ClusterConfig, cluster_group, vote_domain
from clustering.calibration import load, measure, resolve, thresholds
from clustering.dedup import DedupConfig

NO_COPY = DedupConfig(use_copy=False, use_phash=False)


def _subjects(sizes, seed=0, spread=0.35, dim=48, domains=None):
    """Points of well separated subjects; subject g has sizes[g] photos."""
    rng = np.random.default_rng(seed)
    pts = []
    for g, n in enumerate(sizes):
        c = rng.standard_normal(dim)
        c /= np.linalg.norm(c)
        for m in range(n):
            v = c + spread * rng.standard_normal(dim) / np.sqrt(dim)
            dom = domains[g][m] if domains else "all"
            pts.append({"key": f"g{g:02d}m{m}", "url": f"u{g}/{m}", "embedding": v / np.linalg.norm(v),
                        "quality": 0.5, "domain": dom, "subject": g})
    return pts


def _purity(clusters, pts):
    subj = {p["key"]: p["subject"] for p in pts}
    same = [subj[k] == subj[c["keys"][0]] for c in clusters for k in c["keys"][1:]]
    return float(np.mean(same)) if same else float("nan")


def test_mutual_neighbour_rule_discards_fillers_of_small_subjects():
    sizes = [6, 5, 4, 6, 4, 5, 5, 6]
    pts = _subjects(sizes)
    plain, _, st_plain = cluster_group(
        [dict(p) for p in pts], "all", ClusterConfig(dedup=NO_COPY, max_distance_ratio=0, reciprocal=0)
    )
    ruled, _, st = cluster_group(
        [dict(p) for p in pts],
        "all",
        ClusterConfig(dedup=NO_COPY, max_distance_ratio=0, reciprocal=5, mutual_members=4),
    )
    assert _purity(plain, pts) < 0.97  # 4-photo subjects get a filler from another subject
    assert _purity(ruled, pts) == 1.0
    assert st["clusters_incoherent"] == 8  # the 2 x 4 seeds of the 4-photo subjects
    assert st["clusters_kept"] == sum(n for n in sizes if n >= 5)
    assert st["clusters_kept"] + st["clusters_incoherent"] + st["clusters_too_small"] + st[
        "clusters_weak"
    ] == len(pts)
    assert sum(c["coherent"] for c in ruled) >= len(ruled) // 2 and all(
        isinstance(c["coherence"], float) for c in ruled
    )
    # default: the last member needs only the floor, so a 4-photo subject still seeds (with one filler,
    # never flagged coherent)
    loose, _, st2 = cluster_group([dict(p) for p in pts], "all",
                                  ClusterConfig(dedup=NO_COPY, max_distance_ratio=0, reciprocal=5))
    subj = {p["key"]: p["subject"] for p in pts}
    mixed = [c for c in loose if len({subj[k] for k in c["keys"]}) > 1]
    assert {subj[c["keys"][0]] for c in loose} == set(range(len(sizes)))
    assert mixed and all(subj[c["keys"][0]] in (2, 4) and not c["coherent"] for c in mixed)
    assert all(sum(subj[k] == subj[c["keys"][0]] for k in c["keys"]) == 4 for c in mixed)


def test_member_floor_refuses_unrelated_neighbours():
    pts = _subjects([5] * 6, spread=3.0)  # subjects so spread that neighbours are unrelated
    x = np.stack([p["embedding"] for p in pts])
    s = x @ x.T
    floor = float(np.quantile(s[np.triu_indices(len(x), 1)], 0.99))
    cfg = ClusterConfig(dedup=NO_COPY, max_distance_ratio=0, member_floor=floor, unrelated_median=0.0)
    clusters, _, st = cluster_group(pts, "all", cfg)
    assert len(clusters) <= 1 and st["clusters_incoherent"] >= len(pts) - 1
    for c in clusters:
        assert min(c["similarities"][1:]) >= floor and c["coherence"] >= 1.0


def test_global_groups_vote_one_domain_per_subject():
    doms = [
        ["people", "people", "products", "people", "products"],
        ["food", "products", "products", "food", "food"],
    ]
    pts = _subjects([5, 5], domains=doms)
    clusters, _, _ = cluster_group(
        pts, None, ClusterConfig(dedup=NO_COPY, max_distance_ratio=0, reciprocal=5)
    )
    assert len(clusters) == 10
    by_subject = {}
    for c in clusters:
        by_subject.setdefault(c["keys"][0][:3], set()).add(c["domain"])
    assert by_subject == {"g00": {"people"}, "g01": {"food"}}
    pts2 = [{"domain": "a"}, {"domain": "b"}, {"domain": "b"}, {"domain": "a"}]
    assert vote_domain(pts2, [0, 1, 2, 3]) == "a"  # tie: the seed's
    assert vote_domain(pts2, [1, 0, 3, 2]) == "b"
    assert vote_domain(pts2, [0, 1, 2]) == "b"


class _FakeEmbedder:
    """Mean colour + a fixed random projection of a 4x4 thumbnail: copies stay close, distinct images
    do not."""

    name, dim = "fake", 16

    def __init__(self):
        self.w = np.random.default_rng(0).standard_normal((48, 16))

    def embed_images(self, images):
        x = np.stack(
            [np.asarray(im.convert("RGB").resize((4, 4)), np.float32).ravel() / 255.0 for im in images]
        )
        v = (x - x.mean(1, keepdims=True)) @ self.w
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_calibration_measures_copies_above_unrelated_and_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).resize((64, 64), Image.BICUBIC)
              for _ in range(30)]
    m = measure(images, _FakeEmbedder(), copies_per_kind=5, pairs=2000)
    st, th = m["stats"], m["thresholds"]
    assert st["copy"]["q50"] > st["unrelated"]["q99"]
    assert th["unrelated_median"] < th["member_floor"] and th["cos_threshold"] < th["cos_alone"]
    assert th["copy_min_cos"] <= th["member_floor"]
    from clustering.calibration import Calibration, save

    path = str(tmp_path / "c.json")
    save(Calibration(embedder="fake", source="test", stats=st, **th), path)
    cal = load(path)
    assert cal.member_floor == th["member_floor"] and resolve(path, "openclip:x:y").embedder == "fake"
    assert resolve("none", "offline") is None and resolve("auto", "openclip:x:y") is None
    (tmp_path / "bad.json").write_text(json.dumps({"embedder": "x", "member_floor": 7}))
    with pytest.raises(ValueError, match="not a calibration file"):
        load(str(tmp_path / "bad.json"))


def test_thresholds_follow_the_distributions():
    rng = np.random.default_rng(0)
    copy = rng.uniform(0.9, 1.0, 500)
    unrelated = rng.normal(0.3, 0.1, 5000)
    nearest = rng.uniform(0.5, 0.8, 300)
    th = thresholds(copy, unrelated, nearest)
    assert abs(th["member_floor"] - np.quantile(unrelated, 0.95)) < 1e-3
    assert 0.8 < th["cos_alone"] <= 0.999 and th["cos_threshold"] <= th["cos_alone"] - 0.005
    shifted = thresholds(copy * 0.5 + 0.5, unrelated + 0.3, nearest + 0.1)
    assert shifted["member_floor"] > th["member_floor"] + 0.25

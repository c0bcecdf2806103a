"""5-pair retrieval clusters inside one k-means group: kNN, near-duplicate removal, truncation.

Seeds: every pair that survives deduplication is a seed (``seeds="all"``), visited in rank
order; with ``seeds="cover"`` a pair already placed in a kept cluster is not used as a seed
again. A cluster is the seed plus its nearest non-duplicate neighbours, best first, taken
from its ``neighbours`` nearest neighbours; it is kept only with exactly ``size`` pairs. A
pair may therefore appear in several clusters (as a seed once, as a member of others).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from clustering.copy_features import layout_neighbours
from clustering.dedup import CopyScores, DedupConfig, neighbour_duplicates, pair_is_duplicate, rank_key
from clustering.knn import knn
from core.config import knob, section

REASONS = {1: "cosine", 2: "phash", 3: "caption", 4: "copy"}


@dataclass(frozen=True)
class ClusterConfig:
    """kNN, 5-pair clusters and their coherence rule inside one k-means group. ``member_floor`` and
    ``unrelated_median`` left at ``None`` come from the embedder's calibration (:meth:`resolved`)."""

    neighbours: int = field(default=10, metadata=knob("nearest neighbours searched per seed (the paper's 10)",
                                                      min=1))
    size: int = field(default=5, metadata=knob("pairs per cluster; smaller ones are discarded",
                                               flag="--cluster-size", min=1))
    min_similarity: float = field(default=0.0, metadata=knob("minimum cosine of a member to its seed"))
    max_distance_ratio: float = field(
        default=2.0,
        metadata=knob(
            "discard a cluster whose weakest member is more than this many times farther (1 - cosine) "
            "from the seed than its closest member (scale-free; 0: off)",
            min=0,
        ),
    )
    member_floor: float | None = field(default=None, metadata=knob(
        "calibrated cosine a member must reach (none: the calibration's, else -1 = off)", hidden=True))
    unrelated_median: float | None = field(
        default=None,
        metadata=knob(
            "median cosine of unrelated pairs, the coherence scale's 0 (none: the calibration's, else 0)",
            hidden=True,
        ),
    )
    reciprocal: int = field(default=5, metadata=knob(
        "a member must have the seed among its this many nearest kept neighbours (0: off)", min=0))
    shared: float = field(default=0.75, metadata=knob(
        "... and at least this share of the members taken so far", hidden=True))
    mutual_members: int = field(default=3, metadata=knob(
        "how many non-seed members must pass the mutual test (the rest: floor only)", hidden=True))
    strict_coherence: float = field(default=1.5, metadata=knob(
        "'coherent' flag (subject tasks): weakest member's cosine at least this on the calibrated scale "
        "(0 = median unrelated pair, 1 = floor)"))
    seeds: str = field(
        default="all",
        metadata=knob(
            "every deduplicated pair seeds a cluster, or only pairs not yet in a kept cluster",
            choices=("all", "cover"),
        ),
    )
    knn_method: str = field(default="auto", metadata=knob("kNN method inside a group", flag="--knn",
                                                          choices=("auto", "flat", "ivf", "bf16")))
    ivf_threshold: int = field(
        default=100_000, metadata=knob("group size from which kNN uses IVF", hidden=True)
    )
    dedup: DedupConfig = section(DedupConfig, "near-duplicate rules")

    def resolved(self, cal=None) -> ClusterConfig:
        """Every calibrated value a number: from ``cal`` (a ``Calibration``) where left ``None``,
        else the historical ones (floor off, median 0, ``dedup.HISTORICAL``)."""
        floor = self.member_floor if self.member_floor is not None else (cal.member_floor if cal else -1.0)
        median = self.unrelated_median if self.unrelated_median is not None else (
            cal.unrelated_median if cal else 0.0)
        dedup = self.dedup.resolved(cal.dedup_overrides() if cal else None)
        if (floor, median, dedup) == (self.member_floor, self.unrelated_median, self.dedup):
            return self
        return replace(self, member_floor=floor, unrelated_median=median, dedup=dedup)


def cluster_id(domain: str, seed_key: str) -> str:
    return "c" + hashlib.sha1(f"{domain}\x00{seed_key}".encode()).hexdigest()[:16]


def stack_points(points: list[dict]) -> tuple[list[dict], np.ndarray, np.ndarray | None, np.ndarray | None,
                                              np.ndarray]:
    """Points in rank order with their embedding matrix, pHash arrays and caption hashes
    (thumbnails for copy verification stay in the points: ``p["thumb"]``)."""
    pts = sorted(points, key=rank_key)
    x = (
        np.stack([np.asarray(p["embedding"], dtype=np.float32) for p in pts])
        if pts
        else np.zeros((0, 1), np.float32)
    )
    if pts and all(p.get("phash") is not None for p in pts):
        ph = np.array([p["phash"] for p in pts], dtype=np.int64)
        phf = np.array([p["phash_flip"] for p in pts], dtype=np.int64)
    else:
        ph = phf = None
    caps = np.array([p.get("caption_hash") for p in pts] + [None], dtype=object)[:-1]
    return pts, x, ph, phf, caps


def _one_blas_thread():
    """Copy verification does many tiny matrix products: threaded BLAS only adds overhead."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def merge_candidates(x: np.ndarray, sims: np.ndarray, idx: np.ndarray, extra: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """kNN lists plus extra candidate indices (-1 padded), de-duplicated, with exact cosines, best first."""
    n = len(x)
    width = idx.shape[1] + extra.shape[1]
    out_s = np.full((n, width), -np.inf, dtype=np.float32)
    out_i = np.full((n, width), -1, dtype=np.int64)
    for i in range(n):
        cand = np.unique(np.concatenate([idx[i][idx[i] >= 0], extra[i][extra[i] >= 0]]))
        cand = cand[cand != i]
        cs = x[cand] @ x[i]
        order = np.lexsort((cand, -cs))
        out_i[i, :len(cand)], out_s[i, :len(cand)] = cand[order], cs[order]
    return out_s, out_i


def cluster_group(points: list[dict], domain: str, cfg: ClusterConfig) -> tuple[list[dict], list[dict], dict]:
    """Clusters and duplicate rows of one group; ``points`` carry key, url, embedding, quality, phash."""
    cfg = cfg.resolved()
    pts, x, ph, phf, caps = stack_points(points)
    n = len(pts)
    stats = {"points": n, "duplicates": 0, "clusters_kept": 0, "clusters_too_small": 0, "clusters_weak": 0,
             "clusters_incoherent": 0, "clusters_coherent": 0}
    if n == 0:
        return [], [], stats
    ranks = np.arange(n)  # pts are in rank order
    k = min(cfg.neighbours, max(n - 1, 0))
    if k == 0:
        stats["clusters_too_small"] = 1
        return [], [], stats
    sims, idx = knn(
        x,
        k,
        method=cfg.knn_method,
        ivf_threshold=cfg.ivf_threshold,
        rescore_above=min(
            cfg.dedup.cos_threshold,
            cfg.dedup.phash_min_cos,
            cfg.dedup.caption_min_cos,
            cfg.dedup.copy_min_cos if cfg.dedup.use_copy else 1.01,
        ),
    )
    thumbs = [p.get("thumb") for p in pts]
    copies = (
        CopyScores(
            thumbs,
            cfg.dedup.copy_threshold,
            cfg.dedup.copy_gate,
            cfg.dedup.copy_max_colour_change,
            cfg.dedup.copy_max_residual,
        )
        if cfg.dedup.use_copy and any(t is not None for t in thumbs)
        else None
    )
    d_sims, d_idx = sims, idx
    if copies is not None and cfg.dedup.layout_neighbours > 0:
        d_sims, d_idx = merge_candidates(
            x, sims, idx, layout_neighbours(thumbs, min(cfg.dedup.layout_neighbours, n - 1))
        )
    with _one_blas_thread():
        dup_of, reason, root = neighbour_duplicates(ranks, d_sims, d_idx, cfg.dedup, ph, phf, caps, copies)
    duplicates = [
        {"key": pts[i]["key"], "duplicate_of": pts[root[i]]["key"], "reason": REASONS[int(reason[i])]}
        for i in np.nonzero(dup_of >= 0)[0]
    ]
    stats["duplicates"] = len(duplicates)
    kept = dup_of < 0
    with _one_blas_thread():
        clusters = build_clusters(pts, x, sims, idx, kept, domain, cfg, ph, phf, caps, copies, stats)
    stats["clusters_kept"] = len(clusters)
    return clusters, duplicates, stats


def weak_cluster(member_sims: list[float], max_ratio: float) -> bool:
    """Ratio test: the weakest member is more than ``max_ratio`` times farther (1 - cosine) from the
    seed than the closest member. Scale-free, so one default serves embedders whose cosines live
    on different scales (an absolute floor calibrated on one corpus removes every cluster of another)."""
    if not max_ratio or len(member_sims) < 2:
        return False
    return (1.0 - min(member_sims)) > max_ratio * max(1.0 - max(member_sims), 1e-6)


def coherence_score(sim: float, cfg: ClusterConfig) -> float:
    """A cosine on the calibrated scale: 0 = median unrelated pair, 1 = ``member_floor``."""
    if cfg.member_floor <= -1:
        return float(sim)
    return (float(sim) - cfg.unrelated_median) / max(cfg.member_floor - cfg.unrelated_median, 1e-6)


def vote_domain(pts: list[dict], members: list[int]) -> str:
    """Most common mined domain of the members; ties go to the seed's (members[0])."""
    doms = [pts[m].get("domain") or "all" for m in members]
    counts = {d: doms.count(d) for d in doms}
    best = max(counts.values())
    return doms[0] if counts[doms[0]] == best else min(d for d, c in counts.items() if c == best)


def kept_neighbours(idx: np.ndarray, kept: np.ndarray, j: int, r: int) -> list[int]:
    """``j``'s ``r`` nearest kept neighbours, best first."""
    out = []
    for t in idx[j]:
        if t >= 0 and kept[t]:
            out.append(int(t))
            if len(out) == r:
                break
    return out


def mutual(near: list[int], members: list[int], shared: float) -> tuple[bool, int]:
    """(whether ``near`` (a candidate's nearest kept neighbours) holds the seed ``members[0]`` and at
    least ``shared`` of the members, the seed's position in ``near`` (large when absent))."""
    if members[0] not in near:
        return False, 1 << 30
    hits = sum(m in near for m in members)
    return hits >= max(1, int(np.ceil(shared * len(members) - 1e-9))), near.index(members[0])


def build_clusters(pts, x, sims, idx, kept, domain, cfg, ph, phf, caps, copies, stats) -> list[dict]:
    """Seed + nearest kept real neighbours that are no near-duplicate of any member, truncated to
    ``cfg.size``."""
    n = len(pts)
    clusters: list[dict] = []
    used = np.zeros(n, dtype=bool)
    for s in np.nonzero(kept)[0]:
        if cfg.seeds == "cover" and used[s]:
            continue
        members, msims, ranks, refused = [int(s)], [1.0], [0], 0
        for j, sim in zip(idx[s], sims[s]):
            if len(members) == cfg.size:
                break
            if j < 0 or not kept[j] or sim < cfg.min_similarity:
                continue
            if any(pair_is_duplicate(int(j), m, x, cfg.dedup, ph, phf, caps, copies) for m in members):
                continue
            ok, rank = mutual(kept_neighbours(idx, kept, int(j), cfg.reciprocal), members, cfg.shared) if (
                cfg.reciprocal) else (True, 0)
            if not ok and len(members) > cfg.mutual_members:  # a last member past the mutual core: floor only
                ok = True
            if sim < cfg.member_floor or not ok:
                refused += 1
                continue
            members.append(int(j))
            msims.append(float(sim))
            ranks.append(rank)
        if len(members) < cfg.size:
            stats["clusters_incoherent" if refused else "clusters_too_small"] += 1
            continue
        if weak_cluster(msims[1:], cfg.max_distance_ratio):
            stats["clusters_weak"] += 1
            continue
        used[members] = True
        seed_key = pts[s]["key"]
        coherence = min(coherence_score(v, cfg) for v in msims[1:])
        coherent = bool((cfg.member_floor <= -1 or coherence >= cfg.strict_coherence)
                        and (not cfg.reciprocal or max(ranks) < cfg.size - 1))
        stats["clusters_coherent"] += int(coherent)
        dom = domain if domain is not None else vote_domain(pts, members)
        clusters.append({
            "cluster_id": cluster_id(dom, seed_key),
            "domain": dom,
            "keys": [pts[m]["key"] for m in members],
            "urls": [pts[m].get("url") for m in members],
            "similarities": [round(v, 6) for v in msims],
            "coherence": round(coherence, 6),
            "coherent": coherent,
        })
    return clusters

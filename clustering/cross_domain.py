"""Global near-duplicate pass across domains (before the per-domain k-means groups).

The per-domain groups only compare records of one domain, so a copy that mining put in another
domain than its original survives them. This pass compares records of *different* domains with
the same evidence and rules as the per-domain pass (``clustering/dedup.py``: cosine >= threshold,
flip-aware pHash + cosine floor, aligned-thumbnail copy score + cosine floor; sha256/URL are
already global exact keys): candidates are each record's ``neighbours`` nearest records over all
domains (embedding kNN, plus the layout kNN used for copy verification), pairs of one domain are
dropped (the per-domain pass owns them), and SemDeDup's order rule applies (a record goes when a
better-ranked record of another domain matches it).

Scale (IVF as Beam stages): records are split into ``k = round(n / group)`` global lists by a
spherical k-means on a hash sample (one list, i.e. exact, below ``1.5 * group`` records); each
record is *judged* in its home list and also placed as a *guest* in its second-best list when
that centroid scores within ``spill`` of the best (nprobe 2 with a margin). A copy pair is found
when both land in one list: approximate for k > 1, like any IVF search, and near-copies (cosine
>= 0.9) share their best centroid almost always.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clustering.dedup import CopyScores, DedupConfig, neighbour_duplicates, rank_key
from clustering.knn import knn
from core.config import knob

REASONS = {1: "cosine", 2: "phash", 3: "caption", 4: "copy"}
PREFIX = "cross_domain_"


@dataclass(frozen=True)
class CrossDomainConfig:
    """The global near-duplicate pass (flags ``--cross-domain-*``)."""

    enabled: bool = field(
        default=True,
        metadata=knob(
            "the global near-duplicate pass across domains (--no-cross-domain: skip it)",
            flag="--no-cross-domain",
        ),
    )
    neighbours: int | None = field(default=None, metadata=knob(
        "candidates per record over all domains (embedding kNN; plus layout kNN; none: --neighbours)", min=1))
    group: int = field(default=20_000, metadata=knob(
        "records per global list of the cross-domain pass (one exact list below 1.5x this)", min=1))
    spill: float = field(default=0.05, metadata=knob(
        "a record also joins its second global list when that centroid scores within this of its best"))


def list_assignments(scores: np.ndarray, spill: float) -> list[list[tuple[int, bool]]]:
    """(list id, is home) of each row from centroid scores (n, k): home = best; guest = second
    best when within ``spill``."""
    if scores.shape[1] == 1:
        return [[(0, True)] for _ in range(len(scores))]
    top = np.argsort(-scores, axis=1, kind="stable")[:, :2]
    out = []
    for r, (a, b) in enumerate(top):
        row = [(int(a), True)]
        if scores[r, a] - scores[r, b] <= spill:
            row.append((int(b), False))
        out.append(row)
    return out


def cross_domain_duplicates(points: list[dict], home: list[bool], dedup: DedupConfig, neighbours: int = 10
                            ) -> tuple[list[dict], list[dict], dict]:
    """Judge the ``home`` points of one global list against all its points (other domains only).

    Returns (kept home points, duplicate rows {key, duplicate_of, reason}, stats). ``duplicate_of``
    is the matching better-ranked record (it may itself be removed later: chains are resolved when
    the duplicates table is written).
    """
    from clustering.build import merge_candidates, stack_points
    from clustering.copy_features import layout_neighbours

    dedup = dedup.resolved()
    order = sorted(range(len(points)), key=lambda i: rank_key(points[i]))
    pts, x, ph, phf, caps = stack_points([points[i] for i in order])
    is_home = np.array([home[i] for i in order], dtype=bool)
    n = len(pts)
    stats = {"cross_domain_points": int(is_home.sum()), "cross_domain_duplicates": 0}
    doms = np.array([p.get("domain") for p in pts], dtype=object)
    if n < 2 or len(set(doms.tolist())) < 2:
        return [p for p, h in zip(pts, is_home) if h], [], stats
    k = min(neighbours, n - 1)
    sims, idx = knn(x, k, rescore_above=min(dedup.cos_threshold, dedup.phash_min_cos,
                                            dedup.copy_min_cos if dedup.use_copy else 1.01))
    thumbs = [p.get("thumb") for p in pts]
    copies = None
    if dedup.use_copy and any(t is not None for t in thumbs):
        copies = CopyScores(thumbs, dedup.copy_threshold, dedup.copy_gate, dedup.copy_max_colour_change,
                            dedup.copy_max_residual)
        if dedup.layout_neighbours > 0:
            sims, idx = merge_candidates(
                x, sims, idx, layout_neighbours(thumbs, min(dedup.layout_neighbours, n - 1))
            )
    same = (idx < 0) | (doms[np.maximum(idx, 0)] == doms[:, None])
    idx = np.where(same, -1, idx)
    sims = np.where(same, -np.inf, sims).astype(np.float32)
    o = np.argsort(-sims, axis=1, kind="stable")  # valid candidates first, best first
    sims, idx = np.take_along_axis(sims, o, 1), np.take_along_axis(idx, o, 1)
    from clustering.build import _one_blas_thread

    with _one_blas_thread():
        dup_of, reason, _ = neighbour_duplicates(np.arange(n), sims, idx, dedup, ph, phf, caps, copies)
    dups = [
        {
            "key": pts[i]["key"],
            "duplicate_of": pts[int(dup_of[i])]["key"],
            "reason": PREFIX + REASONS[int(reason[i])],
        }
        for i in np.nonzero((dup_of >= 0) & is_home)[0]
    ]
    stats["cross_domain_duplicates"] = len(dups)
    kept = [p for i, p in enumerate(pts) if is_home[i] and dup_of[i] < 0]
    return kept, dups, stats


def resolve_roots(rows: list[dict]) -> list[dict]:
    """Point every duplicate row at a kept record (follow ``duplicate_of`` chains; ranks make them
    acyclic)."""
    parent = {r["key"]: r["duplicate_of"] for r in rows}
    out = []
    for r in rows:
        d, seen = r["duplicate_of"], {r["key"]}
        while d in parent and d not in seen:
            seen.add(d)
            d = parent[d]
        out.append(dict(r, duplicate_of=d))
    return out

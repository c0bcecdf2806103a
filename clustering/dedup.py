"""Near-duplicate removal: exact keys (sha256, URL) and kNN neighbours (cosine above a
threshold; a perceptual-hash match, an aligned-thumbnail copy match (crop/flip/colour robust,
``clustering/copy_features.py``) or the same normalised caption, each backed by a looser
cosine: captions alone repeat across distinct images).

Rule (SemDeDup-style, order based): records are ranked (higher quality first, then key);
a record is a duplicate when a better-ranked record matches it. ``duplicate_of`` is resolved
to the kept record at the root of that chain, so every duplicate points at a kept record.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

from clustering.copy_features import aligned_similarity, layout_pair
from clustering.phash import flip_hamming


@dataclass(frozen=True)
class DedupConfig:
    cos_threshold: float = 0.97  # cosine at or above which two images are near-duplicates
    phash_threshold: int = 4  # flip-aware pHash Hamming distance at or below which ...
    phash_min_cos: float = 0.45  # ... a pair is a duplicate when cosine also reaches this
    phash_min_copy: float = 0.9  # ... and (with thumbnails) the aligned copy score reaches this (<= -1: off)
    use_phash: bool = True
    caption_min_cos: float = 1.01  # (off by default: >1) same normalised caption + at least this cosine = duplicate
    use_copy: bool = True
    copy_threshold: float = 0.985  # aligned-thumbnail correlation at or above which ...
    copy_min_cos: float = 0.5  # ... a pair is a duplicate when cosine also reaches this
    copy_gate: float = 0.5  # unaligned 8x8 layout correlation below which a pair is not verified (cheap pre-filter)
    layout_neighbours: int = 10  # extra candidates per record from kNN on unaligned layout vectors (0: off)


class CopyScores:
    """Aligned-thumbnail scores of index pairs, computed on demand and cached (one group).

    Pairs whose unaligned layout correlation (plain or mirrored) is below ``gate`` score -1
    without the aligned search."""

    def __init__(self, thumbs, threshold: float, gate: float = -1.0):
        self.thumbs, self.threshold, self.gate, self.cache = thumbs, threshold, gate, {}
        self.layouts = [None if t is None else layout_pair(t) for t in thumbs]
        self.verified = 0

    def __call__(self, i: int, j: int) -> float:
        key = (i, j) if i < j else (j, i)
        if key not in self.cache:
            la, lb = self.layouts[i], self.layouts[j]
            if la is None or lb is None or max(float(la[0] @ lb[0]), float(la[0] @ lb[1])) < self.gate:
                self.cache[key] = -1.0
            else:
                self.verified += 1
                self.cache[key] = aligned_similarity(self.thumbs[i], self.thumbs[j], early=self.threshold)
        return self.cache[key]

    def score(self, i: int, j: int) -> float:
        """Copy score without the layout gate (corroborates a pHash match; records without a
        thumbnail score 1, i.e. the pHash rule alone decides)."""
        if self.thumbs[i] is None or self.thumbs[j] is None:
            return 1.0
        key = ("full",) + ((i, j) if i < j else (j, i))
        if key not in self.cache:
            self.cache[key] = aligned_similarity(self.thumbs[i], self.thumbs[j], early=self.threshold)
        return self.cache[key]

    def match(self, i: int, j: int) -> bool:
        return self(i, j) >= self.threshold


_WS = re.compile(r"\s+")


def caption_hash(caption: str | None) -> str | None:
    """Hash of a normalised caption (lower case, collapsed whitespace); None for empty captions."""
    if not caption:
        return None
    text = _WS.sub(" ", caption.strip().lower())
    if not text:
        return None
    return hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:16]


def rank_key(point: dict) -> tuple:
    """Sort key: best first (higher quality, then smaller key)."""
    q = point.get("quality")
    return (-(q if q is not None and q == q else 0.0), point["key"])


def exact_duplicates(points: list[dict], field: str) -> tuple[list[dict], list[dict]]:
    """Points sharing one value of ``field``: keep the best-ranked, the rest become duplicate rows.

    Returns (kept points, duplicate rows {key, duplicate_of, reason}). Points without a value
    are kept.
    """
    ordered = sorted(points, key=rank_key)
    if not ordered or ordered[0].get(field) is None:
        return ordered, []
    head = ordered[0]
    dups = [{"key": p["key"], "duplicate_of": head["key"], "reason": field} for p in ordered[1:]]
    return [head], dups


def neighbour_duplicates(ranks: np.ndarray, sims: np.ndarray, idx: np.ndarray, cfg: DedupConfig,
                         phash: np.ndarray | None = None, phash_flip: np.ndarray | None = None,
                         captions: np.ndarray | None = None, copies: CopyScores | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Duplicates among kNN lists of one group.

    ranks: (n,) position in rank order (0 = best); sims/idx: (n, k) neighbours, best first.
    captions: (n,) caption hashes (object array, None for none). copies: aligned-thumbnail
    scorer; it is only asked about earlier candidates with cosine >= ``copy_min_cos`` that come
    before the row's first cheaper match.
    Returns (dup_of (n,) int64, -1 when kept; reason (n,) 0 kept / 1 cosine / 2 phash / 3 caption
    / 4 copy; root (n,) index of the kept record each duplicate resolves to).
    """
    n = len(ranks)
    valid = idx >= 0
    safe = np.where(valid, idx, 0)
    earlier = valid & (ranks[safe] < ranks[:, None])
    is_cos = earlier & (sims >= cfg.cos_threshold)
    is_ph = np.zeros_like(is_cos)
    if cfg.use_phash and phash is not None:
        dist = flip_hamming(phash[:, None], phash[safe], phash_flip[safe])
        is_ph = earlier & ~is_cos & (dist <= cfg.phash_threshold) & (sims >= cfg.phash_min_cos)
        if copies is not None and cfg.phash_min_copy > -1:  # 64-bit pHash collides for distinct renders
            for r, c in zip(*np.nonzero(is_ph)):
                is_ph[r, c] = copies.score(int(r), int(safe[r, c])) >= cfg.phash_min_copy
    is_cap = np.zeros_like(is_cos)
    if captions is not None:
        same = (captions[safe] == captions[:, None]) & (captions[:, None] != None)  # noqa: E711
        is_cap = earlier & ~is_cos & ~is_ph & same & (sims >= cfg.caption_min_cos)
    match = is_cos | is_ph | is_cap
    is_copy = np.zeros_like(is_cos)
    if cfg.use_copy and copies is not None:
        cheap_first = np.where(match.any(1), match.argmax(1), match.shape[1])
        ask = earlier & ~match & (sims >= cfg.copy_min_cos) & (np.arange(match.shape[1])[None] < cheap_first[:, None])
        for r, c in zip(*np.nonzero(ask)):
            is_copy[r, c] = copies.match(int(r), int(safe[r, c]))
        match = match | is_copy
    has = match.any(1)
    first = match.argmax(1)  # lists are best first: the most similar earlier match
    rows = np.arange(n)
    dup_of = np.where(has, safe[rows, first], -1)
    reason = np.where(has, np.select([is_cos[rows, first], is_ph[rows, first], is_cap[rows, first]], [1, 2, 3], 4), 0)
    root = np.arange(n)
    for i in np.argsort(ranks, kind="stable"):
        if dup_of[i] >= 0:
            root[i] = root[dup_of[i]]
    return dup_of, reason, root


def pair_is_duplicate(i: int, j: int, x: np.ndarray, cfg: DedupConfig,
                      phash: np.ndarray | None, phash_flip: np.ndarray | None,
                      captions: np.ndarray | None = None, copies: CopyScores | None = None) -> bool:
    """Whether two records of a group are near-duplicates under ``cfg`` (used inside clusters)."""
    c = float(x[i] @ x[j])
    if c >= cfg.cos_threshold:
        return True
    if captions is not None and captions[i] is not None and captions[i] == captions[j] and c >= cfg.caption_min_cos:
        return True
    if cfg.use_phash and phash is not None and c >= cfg.phash_min_cos:
        if int(flip_hamming(phash[i], phash[j], phash_flip[j])) <= cfg.phash_threshold and (
                copies is None or cfg.phash_min_copy <= -1 or copies.score(i, j) >= cfg.phash_min_copy):
            return True
    return bool(cfg.use_copy and copies is not None and c >= cfg.copy_min_cos and copies.match(i, j))

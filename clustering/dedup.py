"""Near-duplicate removal: exact keys (sha256, URL) and kNN neighbours (cosine above a threshold,
corroborated by the aligned thumbnails below a higher cosine; a perceptual-hash match, an
aligned-thumbnail copy match (crop/flip/colour robust, ``clustering/copy_features.py``) or the same
normalised caption, each backed by a looser cosine: captions alone repeat across distinct images).

Rule (SemDeDup-style, order based): records are ranked (higher quality first, then key);
a record is a duplicate when a better-ranked record matches it. ``duplicate_of`` is resolved
to the kept record at the root of that chain, so every duplicate points at a kept record.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace

import numpy as np

from clustering.copy_features import CopyMatch, aligned_match, layout_pair
from clustering.phash import flip_hamming
from core.config import knob

# Thresholds used when no calibration applies (chosen for the ImageNet-pooled offline features).
HISTORICAL = {"cos_threshold": 0.97, "cos_alone": 0.985, "copy_min_cos": 0.5, "phash_min_cos": 0.45}


@dataclass(frozen=True)
class DedupConfig:
    """Near-duplicate rules. The four cosines left at ``None`` come from the embedder's calibration
    (``clustering/calibration.py``), else :data:`HISTORICAL`: :meth:`resolved` fills them."""

    cos_threshold: float | None = field(default=None, metadata=knob(
        "cosine at/above which images are near-duplicates (none: calibration, else 0.97) ..."))
    cos_min_copy: float = field(default=0.9, metadata=knob(
        "... when their aligned-thumbnail copy score also reaches this (another view of one subject can be "
        "that close; <= -1: off, plain SemDeDup) ..."))
    cos_alone: float | None = field(
        default=None,
        metadata=knob(
            "... or their cosine reaches this (no thumbnail corroboration needed; "
            "none: calibration, else 0.985)"
        ),
    )
    phash_threshold: int = field(default=4, metadata=knob("flip-aware pHash distance at/below which ..."))
    phash_min_cos: float | None = field(default=None, metadata=knob(
        "... pairs with at least this cosine are duplicates (none: calibration, else 0.45)"))
    phash_min_copy: float = field(default=0.9, metadata=knob(
        "... and whose aligned-thumbnail copy score reaches this (corroboration; <= -1: off)"))
    use_phash: bool = field(default=True, metadata=knob("use the pHash rule"))
    caption_min_cos: float = field(default=1.01, metadata=knob(
        "pairs with the same normalised caption and at least this cosine are duplicates (>1: off)"))
    use_copy: bool = field(default=True, metadata=knob(
        "use aligned-thumbnail copy verification (also off when --copy-threshold > 1)"))
    copy_threshold: float = field(default=0.985, metadata=knob(
        "aligned-thumbnail correlation (crop/flip/colour robust) at/above which ... (>1: off)"))
    copy_min_cos: float | None = field(default=None, metadata=knob(
        "... pairs with at least this cosine are duplicates (none: calibration, else 0.5)"))
    copy_max_colour_change: float = field(default=0.2, metadata=knob(
        "... and whose colour channels' contrast ratios, at that alignment, spread by at most this log ratio "
        "(0.2: about +-10%% gain per channel; recoloured renders are not copies)"))
    copy_max_residual: float = field(
        default=5.0,
        metadata=knob(
            "... and whose mean absolute difference after a per-channel gain/offset map, at that "
            "alignment, is at most this many grey levels (of 255, on 16x16 views)"
        ),
    )
    copy_gate: float = field(default=0.5, metadata=knob(
        "unaligned layout correlation below which a pair is not verified (pre-filter)"))
    layout_neighbours: int = field(default=10, metadata=knob(
        "extra dedup candidates per record from kNN on layout vectors (0: off)", min=0))

    def resolved(self, calibrated: dict[str, float] | None = None) -> DedupConfig:
        """Every threshold a number: ``None`` ones from ``calibrated`` (a calibration's
        ``dedup_overrides()``), else :data:`HISTORICAL`; copy verification off above 1."""
        base = calibrated or HISTORICAL
        fill = {k: base[k] for k in HISTORICAL if getattr(self, k) is None}
        use_copy = self.use_copy and self.copy_threshold <= 1.0
        if not fill and use_copy == self.use_copy:
            return self
        return replace(self, use_copy=use_copy, **fill)


class CopyScores:
    """Aligned-thumbnail matches of index pairs, computed on demand and cached (one group).

    A copy match needs the unaligned layout correlation (plain or mirrored) to reach ``gate``
    (else no aligned search is run), the aligned score to reach ``threshold``, and at that alignment
    the colour change and the affine residual to stay within ``max_colour_change`` and
    ``max_residual`` (``copy_features.CopyMatch``)."""

    def __init__(self, thumbs, threshold: float, gate: float = -1.0, max_colour_change: float = float("inf"),
                 max_residual: float = float("inf")):
        self.thumbs, self.threshold, self.gate, self.cache = thumbs, threshold, gate, {}
        self.max_colour_change, self.max_residual = max_colour_change, max_residual
        self.layouts = [None if t is None else layout_pair(t) for t in thumbs]

    def _aligned(self, i: int, j: int) -> CopyMatch:
        """``aligned_match`` stopped early at the threshold (cached); searched fully when the early
        alignment fails the colour or residual test (a finer alignment of a crop can pass it)."""
        key = (i, j) if i < j else (j, i)
        if key not in self.cache:
            m = aligned_match(self.thumbs[i], self.thumbs[j], early=self.threshold)
            if m.score >= self.threshold and (m.colour_change > self.max_colour_change
                                              or m.residual > self.max_residual):
                m = aligned_match(self.thumbs[i], self.thumbs[j])
            self.cache[key] = m
        return self.cache[key]

    def corroborates(self, i: int, j: int, min_score: float) -> bool:
        """Whether the thumbnails back a pHash or cosine match (no layout gate): copy score >=
        ``min_score`` and residual <= ``max_residual`` (True when either record has no thumbnail)."""
        if self.thumbs[i] is None or self.thumbs[j] is None:
            return True
        m = self._aligned(i, j)
        return m.score >= min_score and m.residual <= self.max_residual

    def match(self, i: int, j: int) -> bool:
        la, lb = self.layouts[i], self.layouts[j]
        if la is None or lb is None or max(float(la[0] @ lb[0]), float(la[0] @ lb[1])) < self.gate:
            return False
        m = self._aligned(i, j)
        return (
            m.score >= self.threshold
            and m.colour_change <= self.max_colour_change
            and m.residual <= self.max_residual
        )


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
    cfg = cfg.resolved()
    n = len(ranks)
    valid = idx >= 0
    safe = np.where(valid, idx, 0)
    earlier = valid & (ranks[safe] < ranks[:, None])
    is_cos = earlier & (sims >= cfg.cos_threshold)
    if copies is not None and cfg.cos_min_copy > -1:  # one subject from another view can be this close
        for r, c in zip(*np.nonzero(is_cos & (sims < cfg.cos_alone))):
            is_cos[r, c] = copies.corroborates(int(r), int(safe[r, c]), cfg.cos_min_copy)
    is_ph = np.zeros_like(is_cos)
    if cfg.use_phash and phash is not None:
        dist = flip_hamming(phash[:, None], phash[safe], phash_flip[safe])
        is_ph = earlier & ~is_cos & (dist <= cfg.phash_threshold) & (sims >= cfg.phash_min_cos)
        if copies is not None and cfg.phash_min_copy > -1:  # 64-bit pHash collides for distinct renders
            for r, c in zip(*np.nonzero(is_ph)):
                is_ph[r, c] = copies.corroborates(int(r), int(safe[r, c]), cfg.phash_min_copy)
    is_cap = np.zeros_like(is_cos)
    if captions is not None:
        same = (captions[safe] == captions[:, None]) & (captions[:, None] != None)  # noqa: E711
        is_cap = earlier & ~is_cos & ~is_ph & same & (sims >= cfg.caption_min_cos)
    match = is_cos | is_ph | is_cap
    is_copy = np.zeros_like(is_cos)
    if cfg.use_copy and copies is not None:
        cheap_first = np.where(match.any(1), match.argmax(1), match.shape[1])
        ask = (
            earlier
            & ~match
            & (sims >= cfg.copy_min_cos)
            & (np.arange(match.shape[1])[None] < cheap_first[:, None])
        )
        for r, c in zip(*np.nonzero(ask)):
            is_copy[r, c] = copies.match(int(r), int(safe[r, c]))
        match = match | is_copy
    has = match.any(1)
    first = match.argmax(1)  # lists are best first: the most similar earlier match
    rows = np.arange(n)
    dup_of = np.where(has, safe[rows, first], -1)
    reason = np.where(
        has, np.select([is_cos[rows, first], is_ph[rows, first], is_cap[rows, first]], [1, 2, 3], 4), 0
    )
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
    if c >= cfg.cos_threshold and (copies is None or cfg.cos_min_copy <= -1 or c >= cfg.cos_alone
                                   or copies.corroborates(i, j, cfg.cos_min_copy)):
        return True
    if (
        captions is not None
        and captions[i] is not None
        and captions[i] == captions[j]
        and c >= cfg.caption_min_cos
    ):
        return True
    if cfg.use_phash and phash is not None and c >= cfg.phash_min_cos:
        if int(flip_hamming(phash[i], phash[j], phash_flip[j])) <= cfg.phash_threshold and (
                copies is None or cfg.phash_min_copy <= -1 or copies.corroborates(i, j, cfg.phash_min_copy)):
            return True
    return bool(cfg.use_copy and copies is not None and c >= cfg.copy_min_cos and copies.match(i, j))

"""Crop-, flip- and colour-robust copy verification from a tiny colour thumbnail.

Why not the embedding: the clustering embedding is semantic, so distinct views of one subject
can be closer (cosine 0.96 on the demo corpus) than a crop or a re-encoded copy of one image
(0.80-0.91). A copy keeps the *layout* of its original; distinct views do not. So each record
stores a ``THUMB`` x ``THUMB`` RGB thumbnail (the whole image, area-averaged, 3 KB; computed once
in the embed step), and a candidate pair is verified by the best normalised correlation of
``CMP`` x ``CMP`` views over:

* a grid of crop boxes of one thumbnail (each side trimmed by 0-``MAX_TRIM``; a coarse grid
  compared at ``COARSE_SIDE`` pixels, then two finer grids around the best box at ``CMP``),
  matched against the whole other thumbnail, in both directions (either may be the crop);
* the other image mirrored (horizontal flip);
* per-channel standardisation (removes a colour gain/offset shift; re-encoding and resizing
  barely change an area-averaged thumbnail).

A copy may shift its colours a little, but evenly, and what is left after a per-channel gain/offset
map is small. So at the best alignment two more measures are returned: ``colour_change`` (spread of
the per-channel log contrast ratios; 0.2 is a +-10% gain per channel) and ``affine_residual`` (mean
absolute difference in grey levels after that map). Two renders of one design, recoloured or
redrawn, can correlate as well as a crop does (0.985-0.991 against 0.989 for the weakest planted
crop on the demo corpus) yet fail one of them (docs/clustering.md has the measurements).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from PIL import Image

THUMB = 32  # stored thumbnail side (pixels)
CMP = 16  # side of the compared views
MAX_TRIM = 0.2  # largest fraction cut off one side of a crop that is still searched
COARSE = 0.05  # coarse search step (fraction of the side)
COARSE_SIDE = 8  # side of the views compared in the coarse search
FINE = 0.02  # refinement step around the best coarse box (then FINE / 3 around the best fine box)
ORIENT_MARGIN = 0.05  # both mirror orientations are searched when their unaligned correlations are this close
LAYOUT = 8  # side of the unaligned layout vector
LAYOUT_DIM = LAYOUT * LAYOUT * 3


def thumbnail(image: Image.Image) -> bytes:
    """``THUMB`` x ``THUMB`` RGB uint8 bytes of the whole image (area-averaged, aspect squashed)."""
    im = image if image.mode == "RGB" else image.convert("RGB")
    return np.asarray(im.resize((THUMB, THUMB), Image.Resampling.BOX), dtype=np.uint8).tobytes()


def thumb_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8).reshape(THUMB, THUMB, 3).astype(np.float32)


def _standardize(v: np.ndarray) -> np.ndarray:
    """(..., h, w, 3) -> (..., h*w*3): per-channel zero mean, unit variance, then unit L2 norm."""
    v = v - v.mean(axis=(-3, -2), keepdims=True)
    v = v / (v.std(axis=(-3, -2), keepdims=True) + 2.0)  # +2: flat channels stay near zero, not noise
    flat = v.reshape(*v.shape[:-3], -1)
    return flat / (np.linalg.norm(flat, axis=-1, keepdims=True) + 1e-6)


def layout_vector(data: bytes) -> np.ndarray:
    """Unaligned ``LAYOUT_DIM`` layout descriptor (standardised 8x8 colour thumbnail), float32."""
    t = thumb_array(data)
    f = THUMB // LAYOUT
    small = t.reshape(LAYOUT, f, LAYOUT, f, 3).mean(axis=(1, 3))
    return _standardize(small).astype(np.float32)


def layout_pair(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(layout vector, layout vector of the mirrored thumbnail)."""
    t = thumb_array(data)
    return layout_vector(data), layout_vector(np.ascontiguousarray(t[:, ::-1]).astype(np.uint8).tobytes())


@functools.lru_cache(maxsize=4096)
def _axis_matrix(u0: float, u1: float, out: int = CMP) -> np.ndarray:
    """(out, THUMB) weights resampling the span [u0, u1] (fractions) of a THUMB axis to ``out`` pixels.

    Each output pixel averages ``64 // out`` linearly interpolated sub-samples (an area filter)."""
    m = np.zeros((out, THUMB), dtype=np.float32)
    sub = max(2, 64 // out)
    step = (u1 - u0) / (out * sub)
    for k in range(out):
        for s in range(sub):
            p = (u0 + (k * sub + s + 0.5) * step) * THUMB - 0.5
            p = min(max(p, 0.0), THUMB - 1.0)
            i = int(np.floor(p))
            f = p - i
            m[k, i] += (1 - f) / sub
            if f > 0 and i + 1 < THUMB:
                m[k, i + 1] += f / sub
    return m


@functools.lru_cache(maxsize=8192)
def _spans(step: float, centre: tuple[float, float] | None = None) -> list[tuple[float, float]]:
    """Spans (u0, u1), u0 in [0, MAX_TRIM], u1 in [1 - MAX_TRIM, 1]: a full grid, or +-1 step
    around ``centre``."""
    if centre is None:
        starts = np.arange(0.0, MAX_TRIM + 1e-9, step)
        ends = 1.0 - starts
    else:
        starts = np.clip(centre[0] + step * np.arange(-1, 2), 0.0, MAX_TRIM)
        ends = np.clip(centre[1] + step * np.arange(-1, 2), 1.0 - MAX_TRIM, 1.0)
    return sorted({(round(float(a), 4), round(float(b), 4)) for a in starts for b in ends})


def _crop_views(src: np.ndarray, ys: list, xs: list, out: int) -> np.ndarray:
    """(Y, X, out*out*3) standardised crops of ``src`` (THUMB, THUMB, 3) over the span grids."""
    my = np.concatenate([_axis_matrix(*s, out) for s in ys])  # (Y*out, THUMB)
    mx = np.concatenate([_axis_matrix(*s, out) for s in xs])  # (X*out, THUMB)
    ny, nx = len(ys), len(xs)
    rows = (my @ src.reshape(THUMB, THUMB * 3)).reshape(ny * out, THUMB, 3)
    rows = rows.transpose(0, 2, 1).reshape(ny * out * 3, THUMB)  # (Y*k*c, u)
    views = (rows @ mx.T).reshape(ny, out, 3, nx, out).transpose(0, 3, 1, 4, 2)  # (Y, X, k, l, c)
    return _standardize(views)


def _best_crop(views: np.ndarray, target: np.ndarray, ys: list, xs: list) -> tuple[float, tuple, tuple]:
    """Max correlation of ``target`` (standardised) with the standardised crop ``views`` (Y, X, d)
    and that crop's spans."""
    corr = views @ target  # (Y, X)
    yi, xi = np.unravel_index(int(np.argmax(corr)), corr.shape)
    return float(corr[yi, xi]), ys[yi], xs[xi]


class _Thumb(NamedTuple):
    """One thumbnail in one orientation, with what every comparison of it needs (computed once)."""

    array: np.ndarray  # (THUMB, THUMB, 3) float32
    whole: np.ndarray  # the whole thumbnail standardised at CMP x CMP
    whole_coarse: np.ndarray  # ... at COARSE_SIDE x COARSE_SIDE


# Caches sized for dedup's access pattern (each record against its ~10 neighbours, in record
# order): prepared thumbnails ~13 KB each, coarse crop grids ~480 KB each, so at most ~30 MB and
# ~30 MB per process.
@functools.lru_cache(maxsize=2048)
def _thumb(data: bytes, mirror: bool) -> _Thumb:
    t = thumb_array(data)
    if mirror:
        t = np.ascontiguousarray(t[:, ::-1])
    return _Thumb(t, _standardize(_resample(t)), _standardize(_resample(t, COARSE_SIDE)))


@functools.lru_cache(maxsize=64)
def _coarse_views(data: bytes, mirror: bool) -> np.ndarray:
    coarse = _coarse_spans()
    return _crop_views(_thumb(data, mirror).array, coarse, coarse, COARSE_SIDE)


@functools.lru_cache(maxsize=1)
def _coarse_spans() -> list[tuple[float, float]]:
    return _spans(COARSE)


def _directed(src: tuple[bytes, bool], dst: tuple[bytes, bool]) -> tuple[float, tuple, tuple]:
    """Best correlation of the whole ``dst`` with a crop of ``src`` (each ``(thumbnail bytes,
    mirrored)``) and that crop's (y, x) spans: coarse grid at ``COARSE_SIDE`` pixels, then two finer
    grids at ``CMP`` pixels around the best box."""
    coarse = _coarse_spans()
    target = _thumb(*dst)
    _, by, bx = _best_crop(_coarse_views(*src), target.whole_coarse, coarse, coarse)
    array = _thumb(*src).array
    best = (-1.0, by, bx)
    for step in (FINE, FINE / 3):
        ys, xs = _spans(step, by), _spans(step, bx)
        score, by, bx = _best_crop(_crop_views(array, ys, xs, CMP), target.whole, ys, xs)
        best = max(best, (score, by, bx), key=lambda t: t[0])
    return best


def _resample(t: np.ndarray, out: int = CMP) -> np.ndarray:
    """Whole thumbnail resampled to out x out (area filter)."""
    m = _axis_matrix(0.0, 1.0, out)
    rows = (m @ t.reshape(THUMB, THUMB * 3)).reshape(out, THUMB, 3)
    return m @ rows  # (k, u, c) -> (k, l, c): each row resampled along its other axis


class CopyMatch(NamedTuple):
    """How well one thumbnail explains the other as a copy (``aligned_match``)."""

    score: float  # best aligned correlation in [-1, 1] (crop, mirror, per-channel colour standardisation)
    colour_change: float  # spread over channels of log contrast ratios at that alignment (0: an even shift)
    residual: float  # mean |difference| in grey levels after a per-channel gain/offset map at that alignment


def _aligned_views(src: np.ndarray, dst: np.ndarray, ys: tuple, xs: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(the ``ys``/``xs`` crop of ``src``, the whole ``dst``), both resampled to CMP x CMP x 3."""
    rows = (_axis_matrix(*ys) @ src.reshape(THUMB, THUMB * 3)).reshape(CMP, THUMB, 3)
    return _axis_matrix(*xs) @ rows, _resample(dst)


def colour_change(view: np.ndarray, other: np.ndarray) -> float:
    """How unevenly the colour channels' contrast differs between two aligned views: max minus min
    over channels of log(std ratio). A gain/offset colour shift of a few per cent per channel stays
    near 0; a recoloured part (a stripe, a garment) moves one channel's contrast more than the others."""
    g = np.log((view.std(axis=(0, 1)) + 2.0) / (other.std(axis=(0, 1)) + 2.0))
    return float(g.max() - g.min())


def affine_residual(view: np.ndarray, other: np.ndarray) -> float:
    """Mean absolute difference (grey levels) between ``view`` and the best per-channel gain/offset
    map of ``other`` (least squares): what a colour shift cannot explain."""
    a = other.reshape(-1, 3) - other.reshape(-1, 3).mean(0)
    b = view.reshape(-1, 3) - view.reshape(-1, 3).mean(0)
    gain = (a * b).sum(0) / np.maximum((a * a).sum(0), 1e-6)
    return float(np.abs(b - a * gain).mean())


def aligned_match(a: bytes, b: bytes, early: float | None = None) -> CopyMatch:
    """How well thumbnail ``b`` matches thumbnail ``a`` as a copy.

    Score: the best aligned correlation over crops, the mirror image and per-channel colour
    standardisation. The mirror orientation is chosen by the unaligned correlation (both are
    searched when they are within ``ORIENT_MARGIN``: a crop can make the wrong one look better);
    then crops of either image are searched against the whole other one. ``early``: stop as soon as
    a score reaches it. Colour change and residual are measured at the best alignment found."""
    ka, kb, km = (a, False), (b, False), (b, True)
    va = _thumb(*ka).whole
    plain, mirrored = float(va @ _thumb(*kb).whole), float(va @ _thumb(*km).whole)
    orients = [km, kb] if mirrored > plain else [kb, km]
    if abs(plain - mirrored) >= ORIENT_MARGIN:
        orients = orients[:1]
    best = (max(plain, mirrored), ka, orients[0], (0.0, 1.0), (0.0, 1.0))
    for ob in orients:
        for src, dst in ((ka, ob), (ob, ka)):
            if early is not None and best[0] >= early:
                break
            score, by, bx = _directed(src, dst)
            if score > best[0]:
                best = (score, src, dst, by, bx)
    score, src, dst, by, bx = best
    view, other = _aligned_views(_thumb(*src).array, _thumb(*dst).array, by, bx)
    return CopyMatch(score, colour_change(view, other), affine_residual(view, other))


def aligned_similarity(a: bytes, b: bytes, early: float | None = None) -> float:
    """Copy similarity in [-1, 1] of two thumbnails (``aligned_match`` without the colour change)."""
    return aligned_match(a, b, early).score


def layout_neighbours(thumbs: list, k: int) -> np.ndarray:
    """(n, 2k) indices of each record's nearest layouts (plain and mirrored queries), -1 padded.

    Candidates for copy verification that the semantic kNN may miss (a copy can be semantically
    farther than distinct views of one subject). Records without a thumbnail get no candidates."""
    import faiss

    n = len(thumbs)
    out = np.full((n, 2 * k), -1, dtype=np.int64)
    have = [i for i, t in enumerate(thumbs) if t is not None]
    if k <= 0 or len(have) < 2:
        return out
    pairs = [layout_pair(thumbs[i]) for i in have]
    vecs, flips = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    kk = min(k + 1, len(have))
    ids = np.array(have, dtype=np.int64)
    for q, vq in enumerate((vecs, flips)):
        _, nb = index.search(vq, kk)
        nb = np.where(nb >= 0, ids[np.maximum(nb, 0)], -1)
        for row, i in enumerate(have):
            others = [j for j in nb[row] if j >= 0 and j != i][:k]
            out[i, q * k:q * k + len(others)] = others
    return out

"""Perceptual hashes (pHash, dHash) as 64-bit integers, and flip-aware Hamming distances.

pHash: greyscale 32x32, 2-D DCT, the 8x8 lowest frequencies (DC excluded from the median),
bit = coefficient > median. dHash: greyscale 9x8, bit = pixel brighter than its right
neighbour. Both survive re-encoding, resizing and small colour shifts; a horizontal flip is
handled by also hashing the mirrored image (``phash_flip``) and taking the smaller distance.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.fft import dctn

_BITS = (1 << np.arange(64, dtype=np.uint64)).astype(np.uint64)


def _bits_to_int(bits: np.ndarray) -> int:
    return int(np.bitwise_or.reduce(_BITS[bits.ravel().astype(bool)], initial=np.uint64(0)))


def _grey(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(image.convert("L").resize(size, Image.Resampling.LANCZOS), dtype=np.float32)


def phash_from_grey(grey32: np.ndarray) -> int:
    """pHash of a 32x32 greyscale array."""
    coeffs = dctn(grey32, norm="ortho")[:8, :8]
    flat = coeffs.ravel()
    med = np.median(flat[1:])
    return _bits_to_int(flat > med)


def phash(image: Image.Image) -> int:
    """64-bit DCT perceptual hash."""
    return phash_from_grey(_grey(image, (32, 32)))


def phash_pair(image: Image.Image) -> tuple[int, int]:
    """(pHash, pHash of the horizontally mirrored image), from one resize."""
    g = _grey(image, (32, 32))
    return phash_from_grey(g), phash_from_grey(g[:, ::-1].copy())


def dhash(image: Image.Image) -> int:
    """64-bit difference hash (horizontal gradient signs)."""
    g = _grey(image, (9, 8))
    return _bits_to_int(g[:, 1:] > g[:, :-1])


def to_signed(h: int) -> int:
    """uint64 hash as int64 (Parquet/Arrow friendly; ``h % 2**64`` inverts it)."""
    return h - (1 << 64) if h >= (1 << 63) else h


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Bitwise Hamming distance of (arrays of) 64-bit hashes, signed or unsigned."""
    x = np.bitwise_xor(
        np.asarray(a).astype(np.int64).view(np.uint64), np.asarray(b).astype(np.int64).view(np.uint64)
    )
    return np.bitwise_count(x).astype(np.int32)


def flip_hamming(ph_a, ph_b, ph_b_flip) -> np.ndarray:
    """min(distance to b, distance to mirrored b): flip-invariant pHash distance."""
    return np.minimum(hamming(ph_a, ph_b), hamming(ph_a, ph_b_flip))

"""BRISQUE (Mittal et al. 2012) with the ``brisque`` package's bundled SVR model.

The package's own feature code breaks on numpy 2 (object arrays of 0-d arrays) and uses slow
``scipy.signal.convolve2d``; this module re-implements the same 36 features (MSCN coefficients
and four pairwise products, asymmetric generalised Gaussian fits, at full and half scale) with
OpenCV filtering, scales them with the package's ``normalize.pickle`` and predicts with its
``svm.txt`` through libsvm. The raw score is ~0 (best) to ~100 (worst); ``score()`` maps it to
[0, 1] as ``1 - raw / 100`` clipped. Images are analysed at most ``MAX_SIDE`` px on the long side.
"""

from __future__ import annotations

import os
import pickle

import cv2
import numpy as np
from scipy import special

MAX_SIDE = 768
_ALPHAS = np.arange(0.2, 10.0, 0.001)
_R_ALPHA = special.gamma(2 / _ALPHAS) ** 2 / (special.gamma(1 / _ALPHAS) * special.gamma(3 / _ALPHAS))


def _mscn(gray: np.ndarray) -> np.ndarray:
    mu = cv2.GaussianBlur(gray, (7, 7), 7 / 6, borderType=cv2.BORDER_CONSTANT)
    var = cv2.GaussianBlur(gray * gray, (7, 7), 7 / 6, borderType=cv2.BORDER_CONSTANT) - mu * mu
    return (gray - mu) / (np.sqrt(np.abs(var)) + 1.0 / 255.0)


def _aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    """(alpha, mean, sigma_l^2, sigma_r^2) of an asymmetric generalised Gaussian, by moment matching."""
    x = x.ravel().astype(np.float64)
    left, right = x[x < 0], x[x >= 0]
    sl = np.sqrt(np.mean(left**2)) if left.size else 1e-6
    sr = np.sqrt(np.mean(right**2)) if right.size else 1e-6
    gamma = sl / max(sr, 1e-12)
    r_hat = np.mean(np.abs(x)) ** 2 / max(np.mean(x**2), 1e-12)
    big_r = r_hat * (gamma**3 + 1) * (gamma + 1) / (gamma**2 + 1) ** 2
    alpha = float(_ALPHAS[np.argmin((_R_ALPHA - big_r) ** 2)])
    const = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    mean = (sr - sl) * const * special.gamma(2 / alpha) / special.gamma(1 / alpha)
    return alpha, float(mean), float(sl**2), float(sr**2)


def features_one_scale(gray: np.ndarray) -> list[float]:
    m = _mscn(gray)
    alpha, _, l2, r2 = _aggd(m)
    feats = [alpha, (l2 + r2) / 2]
    for a, b in (
        (m[:, :-1], m[:, 1:]),
        (m[:-1, :], m[1:, :]),
        (m[:-1, :-1], m[1:, 1:]),
        (m[1:, :-1], m[:-1, 1:]),
    ):
        feats.extend(_aggd(a * b))
    return feats


def brisque_features(rgb: np.ndarray) -> np.ndarray:
    """36 BRISQUE features of an RGB uint8 array (gray in [0, 1], full and half scale)."""
    h, w = rgb.shape[:2]
    if max(h, w) > MAX_SIDE:
        s = MAX_SIDE / max(h, w)
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64) / 255.0
    half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    return np.array(features_one_scale(gray) + features_one_scale(half), dtype=np.float64)


class Brisque:
    """The bundled BRISQUE SVR; ``raw(rgb)`` ~0..100 (lower is better), ``score(rgb)`` in [0, 1]."""

    def __init__(self):
        from brisque.models import MODEL_PATH
        from libsvm import svmutil

        self._svm = svmutil
        self.model = svmutil.svm_load_model(os.path.join(MODEL_PATH, "svm.txt"))
        with open(os.path.join(MODEL_PATH, "normalize.pickle"), "rb") as fh:
            p = pickle.load(fh)
        self.lo = np.array([float(v) for v in p["min_"]])
        self.hi = np.array([float(v) for v in p["max_"]])

    def raw(self, rgb: np.ndarray) -> float:
        f = brisque_features(rgb)
        scaled = -1 + 2.0 * (f - self.lo) / (self.hi - self.lo)
        x, _ = self._svm.gen_svm_nodearray([float(v) for v in scaled], isKernel=False)
        est = (self._svm.c_double * 1)()
        return float(self._svm.libsvm.svm_predict_probability(self.model, x, est))

    def score(self, rgb: np.ndarray) -> float:
        return float(np.clip(1.0 - self.raw(rgb) / 100.0, 0.0, 1.0))

    def __getstate__(self):  # libsvm models are ctypes: rebuild after unpickling (Beam workers)
        return {}

    def __setstate__(self, _):
        self.__init__()

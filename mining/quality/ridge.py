"""The ridge head of the learned quality predictor: fit (training only) and predict.

Its own module because three others need it and must not need each other: ``scorer`` applies the
feature transform at run time, ``train`` fits the head on BIQ2021 and ``finetune`` fits a head on
the tuned trunk's features, while ``train`` also uses ``finetune``'s tuned predictor. With the fit
here, none of them imports another in a loop (tests/test_import_cycles.py).
"""

from __future__ import annotations

import numpy as np

ALPHAS = (100.0, 300.0, 1000.0, 2000.0, 3000.0, 5000.0, 10000.0, 30000.0)


def signed_power(x: np.ndarray, p: float) -> np.ndarray:
    """``sign(x) * |x| ** p`` (p = 1: unchanged): damps the heavy tails of pooled activations before
    the ridge head, so a few extreme images do not dominate its fit."""
    x = np.asarray(x, dtype=np.float64)
    return x if p == 1 else np.sign(x) * np.abs(x) ** p


def ridge_predict(head: dict, feats: np.ndarray) -> np.ndarray:
    """The head's (unclipped) ridge output: standardise the signed-power features, dot ``w``."""
    return ((signed_power(feats, float(head.get("power", 1.0))) - head["mu"]) / head["sd"]) @ head[
        "w"
    ] + head["b"]


def fit_head(x: np.ndarray, y: np.ndarray, x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
             alphas: tuple[float, ...] = ALPHAS, scale: np.ndarray | None = None, power: float = 1.0,
             relative: bool = False) -> dict[str, np.ndarray]:
    """Ridge on standardised features (``signed_power(x, power)``, each column then times ``scale``); the
    penalty is the one with the best SRCC on (x_val, y_val) (every alpha from one eigendecomposition of
    the Gram matrix), or leave-one-out CV on train when no val set is given. ``relative``: ``alphas``
    are multiples of the mean squared norm of a standardised training row. With one alpha and no val
    set the fit uses that alpha (the refit on train + val)."""
    x = signed_power(x, power)
    x_val = None if x_val is None else signed_power(x_val, power)
    mu = x.mean(0)
    sd = (x.std(0) + 1e-6) / (1.0 if scale is None else scale)
    z = (x - mu) / sd
    if relative:
        alphas = tuple(float(a * (z * z).sum(1).mean()) for a in alphas)
    if x_val is None and len(alphas) == 1:
        x_val, y_val = x[:1], y[:1]  # one alpha: nothing to choose
    if x_val is None:
        from sklearn.linear_model import RidgeCV

        model = RidgeCV(alphas=alphas).fit(z, y)
        w, b, alpha = model.coef_, model.intercept_, model.alpha_
    else:
        from scipy import stats

        ym = y.mean()
        s, u = np.linalg.eigh(z @ z.T)  # dual form: fast when features outnumber images
        uty = u.T @ (y - ym)
        zv = (x_val - mu) / sd
        best = None
        for a in alphas:
            wa = z.T @ (u @ (uty / (np.maximum(s, 0) + a)))
            r = stats.spearmanr(zv @ wa, y_val).statistic
            if best is None or r > best[0]:
                best = (r, a, wa)
        _, alpha, w = best
        b = ym
    return {"mu": mu.astype(np.float32), "sd": sd.astype(np.float32), "w": np.asarray(w, np.float32),
            "b": np.float32(b), "alpha": np.float32(alpha), "power": np.float32(power)}

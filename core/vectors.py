"""Vector helpers every stage shares (numpy only, so importing this costs nothing).

``l2_normalize`` lives here, not in one stage's embedder module, so embedders, the ITM space and
the retrieval pooling all use one definition without importing each other.
"""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """float32 rows of unit L2 norm along the last axis (all-zero rows stay zero, no NaN)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

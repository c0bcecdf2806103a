"""The torch device for model inference and tensor math: ``cuda`` when a CUDA GPU is present.

Chosen automatically; ``IIDATA_DEVICE=cpu`` forces the CPU, the tested default path (machines
without CUDA take it anyway). Outputs on a GPU equal the CPU ones up to float summation order
(same labels and neighbours except at exact ties), not the same bytes: compare runs on one kind
of device. ``bench/gpu_check.py`` exercises and times each GPU path on a CUDA machine.
"""

from __future__ import annotations

import functools
import os

DEVICE_ENV = "IIDATA_DEVICE"


@functools.cache
def cuda_available() -> bool:
    if os.environ.get(DEVICE_ENV, "").lower() == "cpu":
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return bool(torch.cuda.is_available())


def torch_device() -> str:
    """``cuda`` when a CUDA GPU is usable (and not disabled by ``IIDATA_DEVICE=cpu``), else ``cpu``."""
    return "cuda" if cuda_available() else "cpu"

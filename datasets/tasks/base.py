"""Shared pieces of task synthesis: jobs, planning inputs, the tool box, image helpers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from datasets.instruction import ContextItem, Sample, decode_image, encode_image
from datasets.templates import render

log = logging.getLogger(__name__)


class TaskSkip(Exception):
    """A sample can't be made; ``reason`` is a short code for the reject row."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Job:
    """One planned sample: which input records (by key) and style files it uses, and why."""

    task: str
    target_key: str
    context_keys: list[str] = field(default_factory=list)  # input record keys, one per slot (may be "")
    values: dict[str, Any] = field(default_factory=dict)  # template fields (caption, style, ...)
    style_key: str | None = None  # key of a style-folder image, when the task uses one
    order: int = 0  # position in the mixed output (set by the mixture)

    @property
    def record_keys(self) -> list[str]:
        return sorted({self.target_key, *(k for k in self.context_keys if k)} - {""})

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        return cls(**d)


@dataclass
class PlanInputs:
    """What planning sees: light rows (no image bytes), clusters, style images."""

    rows: dict[str, dict[str, Any]]  # key -> {caption, quality, domain, ...}
    clusters: list[dict[str, Any]] = field(default_factory=list)  # cluster_id, keys[5], ...
    styles: list[dict[str, Any]] = field(default_factory=list)  # key, path, style (text)
    depth_available: bool = False
    faces: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # task -> people (datasets.faces)


class Tools:
    """Models used by synthesis, built lazily; each can be injected (stand-ins in tests).

    hed: object with ``edges(rgb uint8 HxWx3) -> float32 HxW in [0,1]``
    sketch: callable(edge map) -> float32 HxW in [0,1]
    masker: object with ``mask(rgb uint8 HxWx3) -> HxW`` (bool/uint8/float)
    depth: ``datasets.control.depth.DepthModel``-like (``predict(rgb) -> HxW``) or None (offline: absent)
    style: ``datasets.style.ArbitraryStyleTransfer``-like (``transfer``, ``style_vector``)
    quality: callable(PIL image) -> float in [0,1]
    styles: style key -> encoded bytes loader (callable)
    """

    def __init__(self, hed=None, sketch=None, masker=None, depth=None, style=None, quality=None,
                 style_loader=None, max_side: int = 384, style_threshold: float = 0.35,
                 control_side: int = 256, hed_backend: str = "auto"):
        self._hed, self._sketch, self._masker, self._depth = hed, sketch, masker, depth
        self._style, self._quality = style, quality
        self.style_loader = style_loader
        self.max_side = max_side
        self.style_threshold = style_threshold
        self.style_vectors: dict = {}  # style key -> cached style vector
        self.control_side = control_side  # longer side of control maps (the cascade's largest size)
        self.hed_backend = hed_backend  # auto (onnx when importable) | onnx | torch
        self.edge_cache: dict = {}  # target key -> HED map of the current batch (control.prepare_batch)

    @property
    def hed(self):
        if self._hed is None:
            from datasets.control.hed import HEDDetector

            self._hed = HEDDetector(backend=hed_backend(self.hed_backend))
        return self._hed

    @property
    def sketch(self):
        if self._sketch is None:
            from datasets.control.edges import sketch

            self._sketch = sketch
        return self._sketch

    @property
    def masker(self):
        if self._masker is None:
            from datasets.control.masks import SaliencyMasker

            self._masker = SaliencyMasker()
        return self._masker

    @property
    def depth(self):
        if self._depth is None:
            raise TaskSkip("depth_unavailable", "no depth model weights were given")
        return self._depth

    @property
    def style(self):
        if self._style is None:
            from datasets.style import ArbitraryStyleTransfer

            self._style = ArbitraryStyleTransfer()
        return self._style

    @property
    def quality(self):
        if self._quality is None:
            from datasets.tasks.quality import default_scorer

            self._quality = default_scorer()
        return self._quality


def hed_backend(choice: str) -> str:
    """``auto`` -> onnx when onnx + onnxruntime import (about 2x faster on CPU,
    bench/control_hed_speed.py), else torch."""
    if choice != "auto":
        return choice
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    return "onnx"


def load(images: dict[str, bytes], key: str, tools: Tools) -> Image.Image:
    """Decoded RGB image of input record ``key`` (shrunk to tools.max_side), or TaskSkip."""
    data = images.get(key)
    if not data:
        raise TaskSkip("missing_image", f"no bytes for record {key}")
    try:
        return decode_image(data, tools.max_side)
    except Exception as exc:  # noqa: BLE001 - any undecodable input becomes a reject
        raise TaskSkip("undecodable_image", f"{key}: {type(exc).__name__}: {exc}") from exc


def build(task: str, job: Job, seed: int, target: Image.Image, ctx_images: list[tuple[Image.Image, str]],
          ctx_keys: list[str], extra_lineage: list[str] | None = None, meta: dict | None = None) -> Sample:
    """Render the templates and assemble the Sample (images encoded JPEG/PNG)."""
    instruction, ctx_text, idx = render(task, job.values, seed, job.target_key + "|" + "|".join(ctx_keys))
    if len(ctx_text) != len(ctx_images):
        raise TaskSkip(
            "template_context_mismatch", f"{task}: {len(ctx_text)} texts, {len(ctx_images)} images"
        )
    context = [
        ContextItem(marker=m, text=t, kind=kind, key=k, image=encode_image(img, ext), ext=ext)
        for (m, t, kind), (img, ext), k in zip(ctx_text, ctx_images, ctx_keys)
    ]
    lineage = sorted({job.target_key, *ctx_keys, *(extra_lineage or [])} - {""})
    return Sample(
        task=task, instruction=instruction, target=encode_image(target, "jpg"),
        target_caption=str(job.values.get("caption", "")), target_key=job.target_key, context=context,
        lineage=lineage, meta={"template": idx, **(meta or {})},
    )


def captioned(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Keys of rows with a usable caption, sorted."""
    return sorted(k for k, r in rows.items() if (r.get("caption") or "").strip())

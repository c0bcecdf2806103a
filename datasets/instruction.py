"""The multi-modal instruction sample: build, validate, encode to / decode from WebDataset fields.

A sample is a payload instruction with reference markers (``[ref#1]`` ...) plus a context of
(marker + text, image) items, a target image, and the lineage (input record keys) of
everything in it. See docs/FORMATS.md "Task shards" and docs/datasets.md.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from core.samples import MARKER_RE, decode_instruction_sample, encode_instruction_sample, marker, markers_in

TEXT_ENCODER = "all-MiniLM-L6-v2"
__all__ = ["MARKER_RE", "marker", "markers_in", "ContextItem", "Sample", "InvalidSample", "validate",
           "sample_json", "to_wds", "from_wds", "encode_image", "decode_image"]


@dataclass
class ContextItem:
    """One (marker + text, image) context pair. ``image`` holds encoded bytes, ``ext`` jpg or png."""

    marker: str
    text: str
    kind: str
    key: str
    image: bytes
    ext: str = "jpg"


@dataclass
class Sample:
    """One multi-modal instruction with its target image (encoded JPEG bytes)."""

    task: str
    instruction: str
    target: bytes
    target_caption: str
    target_key: str
    context: list[ContextItem] = field(default_factory=list)
    lineage: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def sample_id(self) -> str:
        """``{task}-{hash}``: stable over the task, instruction, keys and template choice."""
        h = hashlib.sha1()
        for part in [self.task, self.instruction, self.target_key, *(c.key for c in self.context)]:
            h.update(part.encode("utf-8"))
            h.update(b"\0")
        h.update(json.dumps(self.meta, sort_keys=True, default=str).encode())
        return f"{self.task}-{h.hexdigest()[:16]}"


class InvalidSample(ValueError):
    """A sample breaking the format contract; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def validate(sample: Sample) -> Sample:
    """Check the contract; raise InvalidSample. Returns the sample for chaining."""
    if not sample.instruction.strip():
        raise InvalidSample("empty_instruction")
    if not sample.target:
        raise InvalidSample("missing_target")
    expected = [marker(k + 1) for k in range(len(sample.context))]
    got = [c.marker for c in sample.context]
    if got != expected:
        raise InvalidSample("bad_context_order", f"markers {got}, expected {expected}")
    used = markers_in(sample.instruction)
    missing = [m for m in used if m not in expected]
    if missing:
        raise InvalidSample("dangling_marker", f"{missing} not in context")
    unused = [m for m in expected if m not in used]
    if unused:
        raise InvalidSample("unreferenced_context", f"{unused} not in instruction")
    for c in sample.context:
        if not c.text.startswith(c.marker):
            raise InvalidSample("context_text_marker", f"{c.text!r} must start with {c.marker}")
        if not c.image:
            raise InvalidSample("missing_context_image", c.marker)
        if c.ext not in ("jpg", "png"):
            raise InvalidSample("bad_context_ext", c.ext)
    keys = {sample.target_key, *(c.key for c in sample.context)}
    if not keys <= set(sample.lineage):
        raise InvalidSample("incomplete_lineage", f"{sorted(keys - set(sample.lineage))}")
    return sample


def sample_json(sample: Sample, text_encoder: str | None = None) -> dict[str, Any]:
    """The ``json`` field of a task-shard sample."""
    doc = {
        "task": sample.task,
        "instruction": sample.instruction,
        "target_caption": sample.target_caption,
        "context": [
            {"marker": c.marker, "text": c.text, "kind": c.kind, "key": c.key, "ext": c.ext}
            for c in sample.context
        ],
        "target_key": sample.target_key,
        "lineage": list(sample.lineage),
        "meta": sample.meta,
    }
    if text_encoder:
        doc["text_encoder"] = text_encoder
    return doc


def to_wds(sample: Sample) -> dict[str, bytes | str]:
    """WebDataset members (extension -> bytes) of ``sample`` (``core.samples`` format
    ``iidata.instruction/1``); validates first."""
    validate(sample)
    encoder = TEXT_ENCODER if sample.embeddings else None
    return encode_instruction_sample(sample.sample_id, sample_json(sample, encoder), sample.target,
                                     [(c.ext, c.image) for c in sample.context], sample.embeddings)


def from_wds(fields: dict[str, Any]) -> Sample:
    """A Sample back from raw (undecoded) WebDataset members."""
    got = decode_instruction_sample(fields)
    doc = got.doc
    ctx = [
        ContextItem(marker=c["marker"], text=c["text"], kind=c["kind"], key=c["key"], image=img, ext=c["ext"])
        for c, img in zip(doc["context"], got.context)
    ]
    return Sample(
        task=doc["task"], instruction=doc["instruction"], target=got.target,
        target_caption=doc["target_caption"], target_key=doc["target_key"], context=ctx,
        lineage=doc["lineage"], meta=doc.get("meta", {}), embeddings=got.embeddings,
    )


def encode_image(img: Image.Image, ext: str = "jpg", quality: int = 90) -> bytes:
    """Deterministic JPEG (RGB) or PNG (L or RGB) bytes."""
    buf = io.BytesIO()
    if ext == "png":
        img.save(buf, format="PNG", optimize=False)
    else:
        img.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=False)
    return buf.getvalue()


def decode_image(data: bytes, max_side: int | None = None) -> Image.Image:
    """RGB PIL image from bytes, EXIF-rotated, optionally shrunk so its longer side <= max_side."""
    from PIL import ImageOps

    img = Image.open(io.BytesIO(data))
    img.load()
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    img = img.convert("RGB")
    if max_side and max(img.size) > max_side:
        scale = max_side / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.BICUBIC)
    return img

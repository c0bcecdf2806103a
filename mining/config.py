"""Mining configuration: decode limits, quality thresholds, the domain list. One dataclass, JSON-able."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from core.decode import DecodeLimits

DEFAULT_DOMAINS: tuple[str, ...] = ("art", "products", "animals", "scenery", "food", "vehicles", "people", "other")


@dataclass(frozen=True)
class MiningConfig:
    # decode / validation (defaults and meaning: core.decode.DecodeLimits)
    max_pixels: int = DecodeLimits.max_pixels
    min_side: int = DecodeLimits.min_side
    max_aspect: float = DecodeLimits.max_aspect
    max_caption_chars: int = DecodeLimits.max_caption_chars
    truncate_long_captions: bool = DecodeLimits.truncate_long_captions
    reject_non_utf8_captions: bool = DecodeLimits.reject_non_utf8_captions
    work_side: int = DecodeLimits.work_side  # larger images are decoded shrunk to this short side; 0: full size
    # filtering
    min_quality: float = 0.35  # combined quality below this -> low_quality
    domains: tuple[str, ...] = DEFAULT_DOMAINS  # the label set of the classifier
    allowed_domains: tuple[str, ...] | None = None  # None: every domain; else others -> domain_excluded
    min_domain_score: float = 0.0  # best domain probability below this -> domain_uncertain
    # models
    clip_model: str | None = None  # open_clip name, e.g. "ViT-B-32"; None -> offline classifier
    clip_pretrained: str | None = None  # open_clip pretrained tag or a local checkpoint path
    quality_weights: str | None = None  # head .npz; None -> mining/weights/quality_head.npz
    use_brisque: bool = True  # False skips BRISQUE (its column is null; the blend uses its val mean)
    batch_size: int = 16  # images per model call
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict | None) -> MiningConfig:
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        for k in ("domains", "allowed_domains"):
            if isinstance(d.get(k), list | str):
                v = d[k]
                d[k] = tuple(x.strip() for x in (v.split(",") if isinstance(v, str) else v) if x.strip())
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown mining options: {sorted(unknown)}")
        return cls(**d)

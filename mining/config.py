"""Mining configuration: decode limits, quality thresholds, the domain list. One dataclass, JSON-able.

Each field is written once, with its help in ``knob(...)``: ``pipelines.mine``'s flags, YAML and
``--set`` keys and the summary's ``config`` all come from here (``core.config``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core import config as cfgsys
from core.config import knob
from core.decode import DecodeLimits

DEFAULT_DOMAINS: tuple[str, ...] = (
    "art",
    "products",
    "animals",
    "scenery",
    "food",
    "vehicles",
    "people",
    "other",
)
D = DecodeLimits


@dataclass(frozen=True)
class MiningConfig:
    # decode / validation (defaults: core.decode.DecodeLimits, which decode_record also takes)
    max_pixels: int = field(default=D.max_pixels, metadata=knob(
        "refuse images whose header says more pixels (decompression bombs)", min=1))
    min_side: int = field(
        default=D.min_side, metadata=knob("minimum decoded short side in px (too_small)", min=1)
    )
    max_aspect: float = field(default=D.max_aspect, metadata=knob(
        "maximum long/short side ratio (extreme_aspect)", min=1))
    max_caption_chars: int = field(default=D.max_caption_chars, metadata=knob(
        "longer captions are rejected as caption_too_long (or truncated)", min=1))
    truncate_long_captions: bool = field(default=D.truncate_long_captions, metadata=knob(
        "cut long captions at a word boundary instead of rejecting them", flag="--truncate-long-captions"))
    reject_non_utf8_captions: bool = field(default=D.reject_non_utf8_captions, metadata=knob(
        "reject captions whose bytes were not UTF-8 (off: keep them with U+FFFD, only counted)"))
    work_side: int = field(
        default=D.work_side,
        metadata=knob(
            "images with a larger short side are decoded shrunk to it (width/height stay true); 0: full size",
            min=0,
        ),
    )
    # filtering
    min_quality: float = field(default=0.35, metadata=knob("combined quality below this -> low_quality"))
    domains: tuple[str, ...] = field(default=DEFAULT_DOMAINS, metadata=knob("comma-separated domain labels"))
    allowed_domains: tuple[str, ...] | None = field(default=None, metadata=knob(
        "comma-separated allow-list; others -> domain_excluded (none: every domain)"))
    min_domain_score: float = field(default=0.0, metadata=knob(
        "best domain probability below this -> domain_uncertain"))
    # models
    clip_model: str | None = field(default=None, metadata=knob(
        "open_clip model name, e.g. ViT-B-32 (none: the offline classifier)"))
    clip_pretrained: str | None = field(
        default=None, metadata=knob("open_clip pretrained tag or checkpoint path")
    )
    quality_weights: str | None = field(default=None, metadata=knob(
        "quality head .npz (none: mining/weights/quality_head.npz)"))
    use_brisque: bool = field(
        default=True,
        metadata=knob(
            "skip BRISQUE (faster; its column is null and the blend uses its validation mean)",
            flag="--no-brisque",
        ),
    )
    batch_size: int = field(default=16, metadata=knob("images per model call", min=1))
    extra: dict = field(
        default_factory=dict
    )  # backend options (YAML/--set only), e.g. extra.domain_backend=itm

    def to_json(self) -> str:
        return cfgsys.to_json(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> MiningConfig:
        """From a summary's / manifest's ``config`` (or keyword options): strict on unknown keys."""
        return cfgsys.replace_leaves(cls(), **dict(d or {}))

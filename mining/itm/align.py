"""Caption-image alignment in a shared image-text space (offline projection or CLIP).

Absolute cosines mean different things in different spaces, so the rules here are relative:

* **caption match** (``caption_rank``): the share of a fixed bank of generic captions (the
  domain descriptions, "a photo of ...") that the image matches *less* well than its own
  caption. 1.0: the caption beats every generic one; a caption that does not describe the image
  sits among the bank. ``caption_ok`` = rank >= ``min_caption_rank``.
* **style match** (styled generation): the stylised target must be closer to the style image
  than the content image was (stylising moved it towards the style) and its caption rank must
  still pass (the content survived), at its own threshold ``styled_min_caption_rank``.

``caption_scores`` gives a column for t2i filtering (``itm_score`` = cosine, ``itm_rank``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The highest rank of the grid 0.25/0.5/0.75/0.9 keeping >= 95% of val pairs with their own caption
# (val: 0.957 kept with their own caption, 0.293 with another image's; bench/itm_coco.py).
MIN_CAPTION_RANK = 0.75
# Stylised targets are far from the photos the projection was trained on, so their caption ranks are
# lower; their threshold is chosen separately, on stylised COCO val images (bench/itm_coco.py --styled).
STYLED_MIN_CAPTION_RANK = 0.6  # best val balanced accuracy of 0.25/0.5/0.6/0.75 (0.667)


def caption_bank() -> list[str]:
    from mining.domains import DOMAIN_DESCRIPTIONS

    return [f"a photo of {s}" for descs in DOMAIN_DESCRIPTIONS.values() for s in descs]


class Aligner:
    """Alignment scores in ``space`` (``embed_images``/``embed_texts``, see :mod:`mining.itm.model`)."""

    def __init__(self, space, min_caption_rank: float = MIN_CAPTION_RANK, bank: list[str] | None = None,
                 styled_min_caption_rank: float = STYLED_MIN_CAPTION_RANK):
        self.space = space
        self.min_caption_rank = min_caption_rank
        self.styled_min_caption_rank = styled_min_caption_rank
        self._bank_texts = bank or caption_bank()
        self._bank: np.ndarray | None = None  # embedded on first use (no model load when unused)

    @property
    def bank(self) -> np.ndarray:
        if self._bank is None:
            self._bank = self.space.embed_texts(self._bank_texts).astype(np.float32)
        return self._bank

    def caption_rank_from_vectors(self, iv: np.ndarray, tv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cosine image-caption, rank among the bank) per row of image vectors ``iv`` and text
        vectors ``tv``."""
        cos = (iv * tv).sum(1)
        rank = ((iv @ self.bank.T) < cos[:, None]).mean(1)
        return cos, rank

    def caption_scores(self, images: list, captions: list[str]) -> list[dict]:
        """Per pair: ``itm_score`` (cosine), ``itm_rank`` (in [0, 1]) and ``itm_ok``."""
        if not images:
            return []
        cos, rank = self.caption_rank_from_vectors(
            self.space.embed_images(images), self.space.embed_texts(captions)
        )
        return [
            {
                "itm_score": round(float(c), 4),
                "itm_rank": round(float(r), 4),
                "itm_ok": bool(r >= self.min_caption_rank),
            }
            for c, r in zip(cos, rank)
        ]

    def styled(self, target, style, content, caption: str) -> StyledCheck:
        """Whether a stylised ``target`` matches both its ``style`` image and its ``caption``."""
        t, s, c = self.space.embed_images([target, style, content])
        cos, rank = self.caption_rank_from_vectors(t[None], self.space.embed_texts([caption]))
        return StyledCheck(
            style_gain=float(t @ s - c @ s),
            caption_rank=float(rank[0]),
            caption_cos=float(cos[0]),
            min_caption_rank=self.styled_min_caption_rank,
        )


@dataclass
class StyledCheck:
    style_gain: float  # cos(target, style) - cos(content, style): > 0 when stylising moved towards the style
    caption_rank: float
    caption_cos: float
    min_caption_rank: float

    @property
    def reason(self) -> str | None:
        """None when aligned, else the reject reason code."""
        if self.style_gain <= 0:
            return "style_misaligned"
        if self.caption_rank < self.min_caption_rank:
            return "caption_misaligned"
        return None

    def detail(self) -> str:
        return (f"style gain {self.style_gain:.3f}, caption rank {self.caption_rank:.2f} "
                f"(min {self.min_caption_rank}), caption cos {self.caption_cos:.3f}")

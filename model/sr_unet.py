"""Text-conditioned super-resolution UNet (64 -> 256 by default) with noise-conditioning augmentation.

The low-resolution image is upsampled to the target size, corrupted with the forward diffusion
process at an augmentation level ``aug_t`` (random in training, fixed at sampling), concatenated to
the noisy target channel-wise, and ``aug_t`` is embedded and added to the timestep embedding.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from model.blocks import timestep_embedding
from model.schedules import NoiseSchedule
from model.unet import UNet, UNetConfig


class SRUNet(UNet):
    def __init__(self, cfg: UNetConfig, lowres_size: int = 64):
        cfg.use_context = False
        super().__init__(cfg, extra_in_channels=cfg.in_channels)
        self.lowres_size = lowres_size
        self.aug_mlp = nn.Sequential(nn.Linear(cfg.base_channels, self.emb_dim), nn.SiLU(),
                                     nn.Linear(self.emb_dim, self.emb_dim))

    def prepare_lowres(
        self,
        lowres: torch.Tensor,
        aug_t: torch.Tensor,
        schedule: NoiseSchedule,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Upsample to the output size and apply noise-conditioning augmentation at level ``aug_t``."""
        up = F.interpolate(lowres, size=(self.cfg.image_size,) * 2, mode="bilinear", align_corners=False)
        if noise is None:
            noise = torch.randn_like(up)
        return schedule.q_sample(up, aug_t, noise)

    def forward(self, x, t, text_tokens, text_mask, lowres_aug=None, aug_t=None, **_):  # noqa: D401
        emb = self.aug_mlp(timestep_embedding(aug_t, self.cfg.base_channels))
        return super().forward(torch.cat([x, lowres_aug], dim=1), t, text_tokens, text_mask, extra_emb=emb)

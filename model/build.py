"""Build the base or super-resolution UNet and its diffusion process from config dicts."""

from __future__ import annotations

from model.diffusion import Diffusion
from model.schedules import NoiseSchedule
from model.sr_unet import SRUNet
from model.unet import BaseUNet, UNet, UNetConfig


def build_unet(
    model_cfg: dict, stage: str = "base", text_dim: int | None = None, lowres_size: int = 64
) -> UNet:
    d = dict(model_cfg)
    if text_dim is not None:
        d["text_dim"] = text_dim
    cfg = UNetConfig.from_dict(d)
    if stage == "sr":
        return SRUNet(cfg, lowres_size=lowres_size)
    if stage != "base":
        raise ValueError(f"stage must be base or sr, got {stage!r}")
    return BaseUNet(cfg)


def build_diffusion(cfg: dict) -> Diffusion:
    cfg = dict(cfg or {})
    sched = NoiseSchedule(cfg.get("schedule", "cosine"), int(cfg.get("timesteps", 1000)))
    return Diffusion(sched, cfg.get("prediction", "x0"), cfg.get("weighting", "min_snr"),
                     float(cfg.get("snr_gamma", 5.0)))

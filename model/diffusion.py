"""Diffusion training objective: x0 (default, time-reweighted), eps or v prediction."""

from __future__ import annotations

from collections.abc import Callable

import torch

from model.schedules import NoiseSchedule

PREDICTIONS = ("x0", "eps", "v")
WEIGHTINGS = ("min_snr", "snr", "const")


class Diffusion:
    """Squared-error denoising loss over uniformly drawn discrete timesteps.

    ``prediction="x0"`` regresses the clean image with the time-reweighted loss
    ``w(t) * ||x0_hat - x0||^2``; the default weight ``min(SNR(t), snr_gamma)`` equals the
    eps-prediction loss at high noise and caps it at low noise (Hang et al. 2023).
    ``"snr"`` reproduces the eps loss exactly, ``"const"`` is the plain x0 error.
    eps and v predictions use the unweighted loss in their own space.
    """

    def __init__(self, schedule: NoiseSchedule, prediction: str = "x0", weighting: str = "min_snr",
                 snr_gamma: float = 5.0):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}")
        self.schedule, self.prediction, self.weighting, self.snr_gamma = (
            schedule,
            prediction,
            weighting,
            snr_gamma,
        )

    @property
    def timesteps(self) -> int:
        return self.schedule.timesteps

    def sample_t(self, batch: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randint(0, self.timesteps, (batch,), generator=generator, device="cpu").to(device)

    def to_x0(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = self.schedule.coefs(t, x_t.ndim)
        if self.prediction == "x0":
            return out
        if self.prediction == "eps":
            return (x_t - s * out) / a
        return a * x_t - s * out  # v

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        if self.prediction != "x0" or self.weighting == "const":
            return torch.ones_like(t, dtype=torch.float32)
        snr = self.schedule.snr_at(t)
        return snr.clamp(max=self.snr_gamma) if self.weighting == "min_snr" else snr

    def loss(
        self,
        model_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        x0: torch.Tensor,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Per-sample loss (B,). ``model_fn(x_t, t)`` returns the network output."""
        b = x0.shape[0]
        if t is None:
            t = self.sample_t(b, x0.device, generator)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device="cpu").to(x0.device)
        x_t = self.schedule.q_sample(x0, t, noise)
        out = model_fn(x_t, t).float()
        if self.prediction == "x0":
            target = x0
        elif self.prediction == "eps":
            target = noise
        else:
            a, s = self.schedule.coefs(t, x0.ndim)
            target = a * noise - s * x0
        mse = (out - target).pow(2).flatten(1).mean(1)
        return mse * self.weight(t)

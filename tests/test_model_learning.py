"""The tiny base UNet learns: loss on a fixed batch falls 10x; context cross-attention carries information."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from model.build import build_diffusion
from model.unet import BaseUNet, UNetConfig


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the CI box is a shared 2-core machine
    yield
    torch.set_num_threads(n)


def tiny_cfg(use_context: bool) -> UNetConfig:
    return UNetConfig(
        image_size=16,
        base_channels=16,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(8,),
        heads=2,
        text_dim=8,
        cond_dim=16,
        max_context=1,
        use_context=use_context,
    )


def blocky(g: torch.Generator, b: int) -> torch.Tensor:
    """Random 8x8 colour blocks upsampled to 16x16 (content the noisy target alone cannot reveal)."""
    return F.interpolate(torch.rand(b, 3, 8, 8, generator=g) * 2 - 1, size=(16, 16), mode="nearest")


def fixed_eval_loss(diffusion, model, x0, kw, seed=123, reps=4) -> float:
    """The training loss at fixed timesteps and noise (comparable across models and steps)."""
    g = torch.Generator().manual_seed(seed)
    xs = x0.repeat(reps, 1, 1, 1)
    kw = {k: v.repeat(reps, *([1] * (v.ndim - 1))) for k, v in kw.items()}
    t = torch.randint(0, diffusion.timesteps, (xs.shape[0],), generator=g)
    noise = torch.randn(xs.shape, generator=g)
    with torch.no_grad():
        return diffusion.loss(lambda a, tt: model(a, tt, **kw), xs, t=t, noise=noise).mean().item()


def test_loss_falls_10x_on_fixed_batch():
    torch.manual_seed(0)
    model = BaseUNet(tiny_cfg(False))
    diffusion = build_diffusion({})  # default: x0 prediction, min-SNR time reweighting, cosine
    g = torch.Generator().manual_seed(0)
    x0 = F.interpolate(torch.rand(4, 3, 4, 4, generator=g) * 2 - 1, size=(16, 16), mode="bilinear")
    kw = {"text_tokens": torch.randn(4, 3, 8, generator=g), "text_mask": torch.ones(4, 3, dtype=torch.bool)}
    before = fixed_eval_loss(diffusion, model, x0, kw)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(150):
        loss = diffusion.loss(lambda a, t: model(a, t, **kw), x0, generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = fixed_eval_loss(diffusion, model, x0, kw)
    assert after < before / 10, (before, after)


def retrieval_batch(g: torch.Generator, b: int):
    """Toy retrieval: the target is the colour-negated copy of the single context image."""
    src = blocky(g, b)
    kw = {
        "text_tokens": torch.zeros(b, 1, 8),
        "text_mask": torch.ones(b, 1, dtype=torch.bool),
        "ctx_images": src[:, None],
        "ctx_tokens": torch.zeros(b, 1, 1, 8),
        "ctx_text_mask": torch.ones(b, 1, 1, dtype=torch.bool),
        "ctx_mask": torch.ones(b, 1, dtype=torch.bool),
    }
    return -src, kw


def test_context_matters_on_toy_retrieval():
    diffusion = build_diffusion({"weighting": "const"})
    losses = {}
    for use_context in (True, False):
        torch.manual_seed(0)
        model = BaseUNet(tiny_cfg(use_context))
        g = torch.Generator().manual_seed(1)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        for _ in range(200):
            target, kw = retrieval_batch(g, 8)
            loss = diffusion.loss(lambda a, t: model(a, t, **kw), target, generator=g).mean()  # noqa: B023
            opt.zero_grad()
            loss.backward()
            opt.step()
        target, kw = retrieval_batch(torch.Generator().manual_seed(99), 16)  # unseen images
        losses[use_context] = fixed_eval_loss(diffusion, model, target, kw)
    assert losses[True] <= 0.5 * losses[False], losses

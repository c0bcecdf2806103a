"""Unit behaviour of the model package: schedules, losses, samplers, guidance, SR UNet, text encoders."""

from __future__ import annotations

import pytest
import torch

from model.build import build_diffusion, build_unet
from model.diffusion import Diffusion
from model.samplers import dynamic_threshold, guided_output, sample
from model.schedules import NoiseSchedule
from model.sr_unet import SRUNet


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core CI machine
    yield
    torch.set_num_threads(n)


TINY = {"image_size": 16, "base_channels": 16, "channel_mults": [1, 2], "num_res_blocks": 1,
        "attn_resolutions": [8], "heads": 2, "cond_dim": 16, "max_context": 2}


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_schedules_are_monotone_variance_preserving(kind):
    s = NoiseSchedule(kind, 1000)
    assert torch.all(s.alpha[1:] <= s.alpha[:-1]) and s.alpha[0] > 0.99 and s.alpha[-1] < 0.1
    assert torch.allclose(s.alpha**2 + s.sigma**2, torch.ones(1000), atol=1e-5)


@pytest.mark.parametrize("pred", ["x0", "eps", "v"])
def test_perfect_prediction_has_zero_loss_and_inverts(pred):
    d = Diffusion(NoiseSchedule("cosine"), prediction=pred)
    x0, noise = torch.rand(3, 3, 8, 8) * 2 - 1, torch.randn(3, 3, 8, 8)
    t = torch.tensor([10, 500, 900])
    a, s = d.schedule.coefs(t)
    oracle = {"x0": x0, "eps": noise, "v": a * noise - s * x0}[pred]
    assert d.loss(lambda xt, tt: oracle, x0, t=t, noise=noise).max() < 1e-8
    x_t = d.schedule.q_sample(x0, t, noise)
    assert torch.allclose(d.to_x0(oracle, x_t, t), x0, atol=1e-3)
    wrong = d.loss(lambda xt, tt: torch.zeros_like(xt), x0, t=t, noise=noise)
    assert (wrong > 0).all()


def test_min_snr_weight_caps_low_noise():
    d = Diffusion(NoiseSchedule("cosine"), weighting="min_snr", snr_gamma=5.0)
    w = d.weight(torch.tensor([0, 999]))
    assert w[0] == 5.0 and w[1] < 0.01


def test_dynamic_threshold_and_guidance_arithmetic():
    x = torch.tensor([[0.5, -3.0, 2.0, 0.1]]).view(1, 1, 2, 2)
    y = dynamic_threshold(x, 0.9)
    assert y.abs().max() <= 1.0 + 1e-6 and y[0, 0, 0, 0] < 0.5  # scaled down, not just clipped
    assert torch.equal(dynamic_threshold(torch.full((1, 4), 0.5), 0.9), torch.full((1, 4), 0.5))
    u, t, f = torch.zeros(2), torch.ones(2), torch.full((2,), 3.0)
    assert torch.equal(guided_output([u, t, f], 2.0, 1.5), torch.full((2,), 2.0 + 1.5 * 2.0))
    assert torch.equal(guided_output([u, t], 4.0, 9.0), torch.full((2,), 4.0))


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_samplers_recover_oracle_x0(sampler):
    d = build_diffusion({"timesteps": 100})
    target = torch.rand(2, 3, 8, 8) * 1.6 - 0.8
    out = sample(d, lambda x, t: target, (2, 3, 8, 8), steps=10, sampler=sampler,
                 generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, target, atol=1e-5)


def test_base_unet_context_changes_output_and_null_context_is_safe():
    torch.manual_seed(0)
    m = build_unet(TINY, "base", text_dim=8)
    for p in m.parameters():  # leave zero-init; perturb so every path is live
        p.data.add_(torch.randn_like(p) * 0.05)
    b = 2
    x, t = torch.randn(b, 3, 16, 16), torch.tensor([3, 700])
    tt, tm = torch.randn(b, 4, 8), torch.ones(b, 4, dtype=torch.bool)
    ci, ct = torch.randn(b, 2, 3, 16, 16), torch.randn(b, 2, 3, 8)
    ctm, cm = torch.ones(b, 2, 3, dtype=torch.bool), torch.tensor([[True, False], [True, True]])
    y1 = m(x, t, tt, tm, ci, ct, ctm, cm)
    y2 = m(x, t, tt, tm, ci + 1, ct, ctm, cm)
    y0 = m(x, t, tt, tm)  # no context at all
    ynull = m(x, t, tt, torch.zeros_like(tm), ci, ct, ctm, torch.zeros_like(cm))  # everything dropped
    assert torch.isfinite(ynull).all()
    assert not torch.allclose(y1, y2) and not torch.allclose(y1, y0)
    y3 = m(x, t, tt, tm, ci.clone().index_fill_(1, torch.tensor([1]), 5.0), ct, ctm, cm)
    assert torch.allclose(y1[0], y3[0], atol=1e-5)  # masked slot of sample 0 is ignored
    feats = m.encode_context(ci, ct, ctm, cm)
    assert torch.allclose(m(x, t, tt, tm, ctx_feats=feats), y1, atol=1e-5)


def test_sr_unet_shapes_and_noise_augmentation():
    cfg = dict(TINY, image_size=32)
    m = build_unet(cfg, "sr", text_dim=8, lowres_size=16)
    assert isinstance(m, SRUNet) and not m.cfg.use_context
    d = build_diffusion({})
    low = torch.rand(2, 3, 16, 16) * 2 - 1
    aug0 = m.prepare_lowres(low, torch.zeros(2, dtype=torch.long), d.schedule, torch.randn(2, 3, 32, 32))
    aug9 = m.prepare_lowres(low, torch.full((2,), 900), d.schedule, torch.randn(2, 3, 32, 32))
    up = torch.nn.functional.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)
    assert (aug0 - up).abs().mean() < 0.05 < (aug9 - up).abs().mean()
    y = m(
        torch.randn(2, 3, 32, 32),
        torch.tensor([1, 2]),
        torch.randn(2, 3, 8),
        torch.ones(2, 3, dtype=torch.bool),
        lowres_aug=aug0,
        aug_t=torch.zeros(2, dtype=torch.long),
    )
    assert y.shape == (2, 3, 32, 32)


def test_open_clip_text_tower_tiny_random_config():
    from model.text_encoder import build_text_encoder

    enc = build_text_encoder({"kind": "open_clip", "model_cfg": "tiny", "max_len": 12})
    tok, mask = enc.encode(["a dog on a beach", "[ref#1] a red car parked", "a dog on a beach"])
    assert tok.shape == (3, 12, enc.dim) and mask[0].sum() == 7  # sot + 5 words + eot
    assert torch.equal(tok[0], tok[2]) and not torch.equal(tok[0], tok[1])
    with pytest.raises(RuntimeError, match="unavailable offline"):
        build_text_encoder({"kind": "open_clip", "arch": "ViT-B-32", "pretrained": "/nonexistent/ckpt.bin"})


def test_minilm_token_embeddings_offline():
    from model.text_encoder import MINILM_NAME, build_text_encoder

    enc = build_text_encoder({"kind": "minilm", "max_len": 16})
    tok, mask = enc.encode(["a dog on a beach", "a photo of a cat", ""])
    assert enc.name == MINILM_NAME and tok.shape == (3, 16, 384)
    assert mask[0].sum() == 7 and mask[2].sum() == 2  # [CLS] ... [SEP]
    cos = torch.nn.functional.cosine_similarity(tok[0, 1], tok[1, 1], dim=0)
    assert cos < 0.99

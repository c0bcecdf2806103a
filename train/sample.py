"""Sampling with classifier-free guidance, and a PNG grid writer.

    python -m train.sample --checkpoint OUT/checkpoints --prompt "a dog on a beach" --prompt "a red car" \\
        --context "ref.jpg::[ref#1] a photo of my dog" --output grid.png

Guidance: three passes per step for the base model (unconditional; text only; text + context),
combined as ``uncond + text_scale * (text - uncond) + ctx_scale * (full - text)``.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field

import torch
from PIL import Image
from torchvision.utils import make_grid

from core import cli, storage
from core import config as cfgsys
from core.config import knob, section
from model.build import build_diffusion, build_unet
from model.samplers import guided_output, sample
from model.sr_unet import SRUNet
from model.text_encoder import TextEncoder, build_text_encoder
from train import checkpoint as ckpt
from train.config import SampleSection

SAMPLE_DEFAULTS = cfgsys.to_dict(
    SampleSection()
)  # a training config's ``sample`` section fills in over these


@dataclass(frozen=True)
class SampleCommand:
    """``python -m train.sample`` options besides its inputs (flags, ``--config`` YAML, ``--set``)."""

    sampling: SampleSection = section(SampleSection, "sampling")
    use_ema: bool = field(default=True, metadata=knob(
        "use the raw weights instead of the EMA weights", flag="--no-ema"))
    seed: int = field(default=0, metadata=knob("sampling seed"))


@torch.no_grad()
def generate(model, diffusion, text_tokens, text_mask, ctx=None, lowres=None, opts: dict | None = None,
             generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """Images in [-1, 1]. ``ctx`` = (images, tokens, text_mask, slot_mask) for the base model;
    ``lowres`` (B,3,h,w) for the super-resolution model."""
    o = {**SAMPLE_DEFAULTS, **(opts or {})}
    model.eval()
    dev = next(model.parameters()).device
    b = text_tokens.shape[0]
    tt, tm = text_tokens.to(dev), text_mask.to(dev)
    null_tm = torch.zeros_like(tm)
    size = model.cfg.image_size
    if isinstance(model, SRUNet):
        aug_t = torch.full((b,), int(o["sr_aug"] * (diffusion.timesteps - 1)), dtype=torch.long, device=dev)
        noise = torch.randn(lowres.shape[0], 3, size, size, generator=generator).to(dev)
        low = model.prepare_lowres(lowres.to(dev), aug_t, diffusion.schedule, noise)

        def run(x, t):
            out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([tt, tt]), torch.cat([null_tm, tm]),
                        lowres_aug=torch.cat([low, low]), aug_t=torch.cat([aug_t, aug_t]))
            return list(out.chunk(2))
    else:
        use_ctx = model.cfg.use_context and ctx is not None and bool(ctx[3].any())
        if model.cfg.use_context:
            if use_ctx:
                feats, fmask = model.encode_context(*(c.to(dev) for c in ctx))
            else:
                feats, fmask = model.encode_context(
                    None, None, None, torch.zeros(b, model.cfg.max_context, dtype=torch.bool, device=dev)
                )
            null_fmask = torch.zeros_like(fmask)
            null_fmask[:, 0] = True
        groups = 3 if use_ctx else 2

        def run(x, t):
            kw = {}
            if model.cfg.use_context:
                kw["ctx_feats"] = (torch.cat([feats] * groups),
                                   torch.cat([null_fmask, null_fmask, fmask][:groups]))
            out = model(torch.cat([x] * groups), torch.cat([t] * groups), torch.cat([tt] * groups),
                        torch.cat([null_tm, tm, tm][:groups]), **kw)
            return list(out.chunk(groups))

    def x0_fn(x, t):
        return diffusion.to_x0(guided_output(run(x, t), o["text_scale"], o["ctx_scale"]), x, t)

    return sample(diffusion, x0_fn, (b, 3, size, size), steps=int(o["steps"]), sampler=o["sampler"],
                  eta=float(o["eta"]), threshold=float(o["threshold"]), generator=generator, device=dev,
                  progress=progress)


def to_grid(images: torch.Tensor, nrow: int = 4) -> torch.Tensor:
    return make_grid(((images.float().clamp(-1, 1) + 1) / 2).cpu(), nrow=nrow, padding=2)


def save_grid(images: torch.Tensor, path: str, nrow: int = 4) -> str:
    """Write images in [-1, 1] as a PNG grid (atomically)."""
    arr = (to_grid(images, nrow) * 255).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return storage.atomic_write_bytes(path, buf.getvalue())


def load_for_sampling(path: str, ema: bool = True, text_encoder: TextEncoder | None = None):
    """(model, diffusion, text encoder, config) from a checkpoint file or checkpoints folder."""
    state = ckpt.load(ckpt.resolve(path))
    cfg = state.get("config")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        raise ckpt.CheckpointError(f"{path}: checkpoint has no model config")
    enc = text_encoder or build_text_encoder(cfg.get("text_encoder", {}))
    stage = cfg.get("stage", "base")
    lowres = int(cfg.get("sr", {}).get("lowres_size", 64))
    model = build_unet(cfg["model"], stage, text_dim=state["text_dim"], lowres_size=lowres)
    try:
        model.load_state_dict(state["ema" if ema else "model"])
    except (RuntimeError, KeyError) as e:
        raise ckpt.CheckpointError(
            f"{path}: weights do not fit the stored config ({str(e).splitlines()[0][:200]})"
        ) from e
    return model.eval(), build_diffusion(cfg.get("diffusion", {})), enc, cfg


def main(argv=None) -> int:
    from train.data import load_image

    ap = cfgsys.parser_for("python -m train.sample", __doc__)
    ap.add_argument(
        "--checkpoint", required=True, help="checkpoint file, or a run's checkpoints/ folder (latest)"
    )
    ap.add_argument("--prompt", action="append", required=True, help="text prompt (repeat for several)")
    ap.add_argument("--context", action="append", default=[],
                    help="context pair IMAGE::TEXT shared by all prompts (repeat, in marker order)")
    ap.add_argument(
        "--lowres", action="append", default=[], help="low-res image per prompt (super-resolution model)"
    )
    ap.add_argument("--output", required=True, help="PNG grid path")
    cfgsys.add_flags(ap, SampleCommand, "sampling options")
    cfgsys.add_config_args(ap)
    a, cmd, _ = cfgsys.parse(ap, SampleCommand, argv)

    try:
        model, diffusion, enc, cfg = load_for_sampling(a.checkpoint, ema=cmd.use_ema)
    except ckpt.CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tt, tm = enc.encode(a.prompt)
    b = len(a.prompt)
    ctx = None
    if a.context:
        size = model.cfg.image_size
        pairs = [c.split("::", 1) if "::" in c else (c, f"[ref#{i + 1}]") for i, c in enumerate(a.context)]
        k = model.cfg.max_context
        imgs = torch.zeros(b, k, 3, size, size)
        mask = torch.zeros(b, k, dtype=torch.bool)
        texts = [""] * k
        for i, (p, txt) in enumerate(pairs[:k]):
            imgs[:, i] = load_image(storage.read_bytes(p), size)
            mask[:, i] = True
            texts[i] = txt
        ct, ctm = enc.encode(texts * b)
        ctm[torch.tensor([t == "" for t in texts] * b)] = False
        ctx = (imgs, ct.view(b, k, *ct.shape[1:]), ctm.view(b, k, -1), mask)
    lowres = None
    if a.lowres:
        lr_size = getattr(model, "lowres_size", 64)
        lowres = torch.stack([load_image(storage.read_bytes(p), lr_size) for p in a.lowres])
    images = generate(model, diffusion, tt, tm, ctx=ctx, lowres=lowres, opts=cfgsys.to_dict(cmd.sampling),
                      generator=torch.Generator().manual_seed(cmd.seed), progress=True)
    print(save_grid(images, a.output, nrow=min(4, b)))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))

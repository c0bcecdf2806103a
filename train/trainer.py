"""Two-stage trainer for the compact cascade (stage 1 cluster shards, stage 2 task shards, or the SR model).

Fixed step count over infinite per-stream data, so DDP ranks stay in lockstep with any shard count.
Every step reseeds its RNGs from (seed, rank, step); with the saved data positions this makes a
resumed run bit-identical to an uninterrupted one on CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from core import config as cfgsys
from core import storage
from model.build import build_diffusion, build_unet
from model.text_encoder import TextEncoder, build_text_encoder, pad_tokens
from train import checkpoint as ckpt
from train.config import CONFIG_DIR, TRAIN_DEFAULTS, checked, config_path, resolved  # noqa: F401 (CONFIG_DIR: API)
from train.data import expand_shards, make_loader
from train.logging import RunLogger
from train.sample import generate, save_grid, to_grid

log = logging.getLogger("train")


class TrainingDiverged(RuntimeError):
    """More than ``train.max_skipped_steps`` optimizer steps had a non-finite loss or gradient."""


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str, overrides: dict | None = None) -> dict:
    """A YAML config (a bare name is looked up in train/configs), deep-merged with ``overrides``.

    Both are checked against :class:`train.config.TrainRunConfig` (an unknown key or a bad value
    is a ConfigError naming the closest key); the result is the plain nested dict the checkpoint
    header records, with ``train`` filled from the schema's defaults."""
    path = config_path(path)
    cfg = checked(cfgsys.load_yaml(path), path)
    cfg = deep_merge(cfg, checked(overrides, "overrides"))
    cfg["train"] = {**TRAIN_DEFAULTS, **cfg.get("train", {})}
    return cfg


def _dist_info() -> tuple[int, int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


class Trainer:
    def __init__(
        self,
        cfg: dict,
        shards: str | list[str],
        output: str,
        text_encoder: TextEncoder | None = None,
        progress: bool = True,
    ):
        self.cfg, self.output, self.progress = cfg, output, progress
        # typed, defaults-filled view (train/config.py); self.cfg stays the dict the checkpoint records
        self.run_cfg = resolved(cfg)
        self.tr = self.run_cfg.train
        self._own_pg = False
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
            self._own_pg = True
        self.rank, self.world, local = _dist_info()
        self.device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu" and self.tr.cpu_threads > 0:
            torch.set_num_threads(self.tr.cpu_threads)
        run = self.run_cfg
        self.stage = run.stage
        self.enc = text_encoder or build_text_encoder(cfg.get("text_encoder", {}))
        mcfg = dict(cfg["model"])
        self.sr_aug_max = run.sr.aug_max
        given = cfg.get("data", {})  # the data section, with what the other sections decide filled in
        self.data_cfg = dataclasses.replace(
            run.data,
            image_size=given.get("image_size", run.model.image_size),
            max_context=run.model.max_context,
            seed=given.get("seed", self.tr.seed),
            lowres_size=run.sr.lowres_size if self.stage == "sr" else run.data.lowres_size,
        )
        self.shards = expand_shards(shards)
        torch.manual_seed(self.tr.seed)
        self.model = build_unet(
            mcfg, self.stage, text_dim=self.enc.dim, lowres_size=self.data_cfg.lowres_size or 64
        )
        self.model.to(self.device)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.diffusion = build_diffusion(cfg.get("diffusion", {}))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=self.tr.lr, betas=self.tr.betas,
                                     weight_decay=self.tr.weight_decay)
        warm = max(1, self.tr.warmup_steps)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(1.0, (s + 1) / warm))
        prec = self.tr.precision
        if prec == "auto":
            prec = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
        self.bf16 = prec == "bf16"
        self.step, self.batches, self.data_pos, self.data_stats = 0, 0, {}, {}
        self.skipped_steps = 0  # steps whose loss or gradient was not finite (weights untouched)
        self.recent_losses: list[float] = []  # last max(10, log_every) step losses (logged means, final_loss)
        self.ckpt_dir = storage.join(output, "checkpoints")
        self.last_ckpt = None
        path = ckpt.latest(self.ckpt_dir)
        if path:
            self._restore(ckpt.load(path))
            self.last_ckpt = path
        elif self.tr.init_from:
            state = ckpt.load(ckpt.resolve(self.tr.init_from))
            self._load_weights(state)
        self.net = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[local] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.logger = RunLogger(output, enabled=self.rank == 0, resume_step=self.step,
                                tensorboard=self.tr.tensorboard)
        self.sample_batch = None

    # -- state ------------------------------------------------------------------------------------
    def _load_weights(self, state: dict) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.ema.load_state_dict(state.get("ema", state["model"]))
        except (RuntimeError, KeyError, TypeError) as e:
            raise ckpt.CheckpointError(
                f"checkpoint does not fit this model config: {str(e).splitlines()[0][:200]}"
            ) from e

    def _restore(self, state: dict) -> None:
        self._load_weights(state)
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.step, self.batches = state["step"], state["batches"]
        self.data_pos = {int(k): v for k, v in state["data_positions"].items()}
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.recent_losses = [float(x) for x in state.get("recent_losses", [])]
        ckpt.set_rng_state(state["rng"])

    def save_checkpoint(self) -> str | None:
        pos = dict(self.data_pos)
        if self.world > 1:
            gathered: list = [None] * self.world
            dist.all_gather_object(gathered, pos)
            pos = {k: v for g in gathered for k, v in g.items()}
        path = None
        if self.rank == 0:
            payload = {"model": self.model.state_dict(), "ema": self.ema.state_dict(),
                       "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                       "step": self.step, "batches": self.batches, "data_positions": pos,
                       "skipped_steps": self.skipped_steps, "recent_losses": list(self.recent_losses),
                       "rng": ckpt.rng_state(), "config": self.cfg, "text_encoder": self.enc.name,
                       "text_dim": self.enc.dim}
            path = ckpt.save(self.ckpt_dir, self.step, payload, keep=self.tr.keep_checkpoints)
        if self.world > 1:
            dist.barrier()
        self.last_ckpt = path or ckpt.latest(self.ckpt_dir)
        return self.last_ckpt

    # -- batches ----------------------------------------------------------------------------------
    def encode_texts(self, texts: list[str], embs: list) -> tuple[torch.Tensor, torch.Tensor]:
        """Precomputed shard embeddings when present (and of the encoder's width), else the frozen encoder."""
        d = self.enc.dim
        need = [t for t, e in zip(texts, embs) if t and (e is None or e.shape[-1] != d)]
        enc = dict(zip(need, self.enc.encode_list(need))) if need else {}
        seqs = []
        for t, e in zip(texts, embs):
            if e is not None and e.shape[-1] == d:
                seqs.append(torch.from_numpy(np.asarray(e, dtype=np.float32)))
            elif t:
                seqs.append(enc[t])
            else:
                seqs.append(torch.zeros(0, d))
        return pad_tokens(seqs, self.enc.max_len, d)

    def prepare(self, batch: dict, gen: torch.Generator | None, dropout: bool = True) -> dict:
        tt, tm = self.encode_texts(batch["text"], batch["text_emb"])
        b, k = batch["ctx_mask"].shape
        ct, ctm = self.encode_texts([t for row in batch["ctx_text"] for t in row],
                                    [e for row in batch["ctx_emb"] for e in row])
        cm = batch["ctx_mask"].clone()
        if dropout:
            u = torch.rand(b, generator=gen)
            p_all, p_ctx = self.tr.drop_all_prob, self.tr.drop_context_prob
            drop_all = u < p_all
            tm[drop_all] = False
            cm[drop_all | ((u >= p_all) & (u < p_all + p_ctx))] = False
        dev = self.device
        out = {"image": batch["image"].to(dev), "tt": tt.to(dev), "tm": tm.to(dev),
               "ci": batch["ctx_images"].to(dev), "ct": ct.view(b, k, *ct.shape[1:]).to(dev),
               "ctm": ctm.view(b, k, -1).to(dev), "cm": cm.to(dev)}
        if "lowres" in batch:
            out["lowres"] = batch["lowres"].to(dev)
        return out

    def loss(self, inp: dict, gen: torch.Generator | None, net=None) -> torch.Tensor:
        net = net or self.net
        x0 = inp["image"]
        if self.stage == "sr":
            tmax = max(1, int(self.sr_aug_max * (self.diffusion.timesteps - 1)))
            aug_t = torch.randint(0, tmax + 1, (x0.shape[0],), generator=gen).to(x0.device)
            noise = torch.randn(x0.shape, generator=gen).to(x0.device)
            low = self.model.prepare_lowres(inp["lowres"], aug_t, self.diffusion.schedule, noise)

            def fn(x, t):
                return net(x, t, inp["tt"], inp["tm"], lowres_aug=low, aug_t=aug_t)
        else:
            def fn(x, t):
                return net(x, t, inp["tt"], inp["tm"], inp["ci"], inp["ct"], inp["ctm"], inp["cm"])
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.diffusion.loss(fn, x0, generator=gen).mean()

    @torch.no_grad()
    def update_ema(self) -> None:
        decay = min(self.tr.ema_decay, (1 + self.step) / (10 + self.step))
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            e.lerp_(p.detach(), 1 - decay)
        for e, p in zip(self.ema.buffers(), self.model.buffers()):
            e.copy_(p)

    def step_seed(self) -> int:
        return (self.tr.seed * 1_000_003 + self.rank * 7_919 + self.step) % (2**63)

    def loader(self):
        W = max(1, self.data_cfg.num_workers)
        return make_loader(self.shards, self.data_cfg, self.rank, self.world, self.data_pos,
                           rotation=self.batches % W)

    # -- loop -------------------------------------------------------------------------------------
    def write_samples(self) -> str | None:
        if self.rank != 0 or self.sample_batch is None:
            return None
        n = self.tr.num_samples
        inp = self.sample_batch
        gen = torch.Generator().manual_seed(self.tr.seed)
        ctx = (inp["ci"][:n], inp["ct"][:n], inp["ctm"][:n], inp["cm"][:n])
        imgs = generate(self.ema, self.diffusion, inp["tt"][:n], inp["tm"][:n], ctx=ctx,
                        lowres=inp.get("lowres", None)[:n] if "lowres" in inp else None,
                        opts=self.cfg.get("sample", {}), generator=gen)
        both = torch.cat([inp["image"][:n].cpu(), imgs.cpu()])
        path = save_grid(
            both, storage.join(self.output, "samples", f"step-{self.step:08d}.png"), nrow=len(imgs)
        )
        self.logger.image("samples", self.step, to_grid(both, nrow=len(imgs)))
        return path

    def train(self, steps: int | None = None) -> dict:
        total = int(steps if steps is not None else self.tr.steps)
        accum = self.tr.grad_accum
        it = iter(self.loader())
        losses = (
            self.recent_losses
        )  # restored on resume: logged means and final_loss match an uninterrupted run
        keep = max(10, self.tr.log_every)
        t0, seen = time.perf_counter(), 0
        samples_png = None
        pbar = tqdm(total=total, initial=self.step, disable=not self.progress or self.rank != 0, desc="train")
        self.model.train()
        while self.step < total:
            seed = self.step_seed()
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            self.opt.zero_grad(set_to_none=True)
            loss_val = 0.0
            for micro in range(accum):
                batch = next(it)
                self.batches += 1
                self.data_pos[batch["_stream"]] = batch["_pos"]
                self.data_stats[batch["_stream"]] = batch["_stats"]
                inp = self.prepare(batch, gen)
                if self.sample_batch is None:
                    self.sample_batch = self.prepare(batch, None, dropout=False)
                sync = self.net.no_sync() if self.world > 1 and micro < accum - 1 else nullcontext()
                with sync:
                    loss = self.loss(inp, gen) / accum
                    loss.backward()
                loss_val += float(loss.detach())
                seen += inp["image"].shape[0]
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tr.grad_clip)
            if not self._finite_step(loss_val, gnorm):
                continue  # the same step number retries on the next batch; weights, EMA, LR untouched
            self.opt.step()
            self.sched.step()
            self.step += 1
            self.update_ema()
            losses.append(loss_val)
            del losses[:-keep]
            pbar.update(1)
            if self.step % self.tr.log_every == 0 or self.step == total:
                vals = torch.tensor([float(np.mean(losses[-self.tr.log_every:])), float(gnorm)])
                if self.world > 1:
                    dist.all_reduce(vals)
                    vals /= self.world
                rate = seen * self.world / max(time.perf_counter() - t0, 1e-9)
                self.logger.scalars(self.step, {"loss": float(vals[0]), "grad_norm": float(vals[1]),
                                                "lr": self.sched.get_last_lr()[0], "samples_per_s": rate})
                pbar.set_postfix(loss=f"{float(vals[0]):.4f}")
            if self.tr.checkpoint_every and self.step % self.tr.checkpoint_every == 0:
                self.save_checkpoint()
            if self.tr.sample_every and self.step % self.tr.sample_every == 0:
                samples_png = self.write_samples() or samples_png
        pbar.close()
        if not self.last_ckpt or not self.last_ckpt.endswith(f"ckpt-{self.step:08d}{ckpt.SUFFIX}"):
            self.save_checkpoint()
        elapsed = time.perf_counter() - t0
        stats: dict = {}
        for s in self.data_stats.values():
            for k, v in s.items():
                stats[k] = stats.get(k, 0) + v
        return {
            "steps": self.step,
            "final_loss": float(np.mean(losses[-10:])) if losses else math.nan,
            "checkpoint": self.last_ckpt,
            "samples_png": samples_png,
            "samples_per_s": seen / max(elapsed, 1e-9),
            "data": stats,
            "skipped_steps": self.skipped_steps,
        }

    def _finite_step(self, loss_val: float, gnorm: torch.Tensor) -> bool:
        """False (and the step is dropped) when the loss or gradient norm is NaN/Inf.

        Ranks agree (all-reduce) so DDP stays in lockstep; after ``max_skipped_steps`` such steps
        the run stops with ``TrainingDiverged`` (non-zero exit) instead of looping on bad data.
        """
        ok = torch.tensor([float(math.isfinite(loss_val) and bool(torch.isfinite(gnorm)))])
        if self.world > 1:
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if bool(ok[0]):
            return True
        self.opt.zero_grad(set_to_none=True)
        self.skipped_steps += 1
        if self.rank == 0:
            log.warning("step %d: non-finite loss or gradient (loss %s); step skipped (%d so far)",
                        self.step + 1, loss_val, self.skipped_steps)
        if self.skipped_steps > self.tr.max_skipped_steps:
            raise TrainingDiverged(
                f"{self.skipped_steps} steps had a non-finite loss or gradient "
                f"(train.max_skipped_steps={self.tr.max_skipped_steps}); stopping, the last "
                f"good checkpoint is {self.last_ckpt}"
            )
        return False

    def close(self) -> None:
        self.logger.close()
        if self._own_pg:
            dist.destroy_process_group()

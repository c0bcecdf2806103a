"""The training config: nested frozen dataclasses (``core.config``); train/configs/*.yaml are values for it.

One definition gives ``python -m train``'s flags (``--model-base-channels``, ``--data-batch-size``,
``--steps``, ``--init``...), the keys a YAML file and ``--set a.b=v`` may use (a misspelled one is an
error naming the closest), bounds and choices. Precedence: the class defaults < the YAML file <
``--set`` < explicit flags.

The trainer keeps reading the config as the plain nested dict the YAML gave (with overrides
merged), which is also what the checkpoint header and the run summary record: :func:`load_config`
checks that dict against this schema and returns it, so checkpoints and resume see the same JSON
as before. :func:`resolved` gives the typed, defaults-filled view.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

from core import config as cfgsys
from core.config import knob, section
from model.unet import UNetConfig
from train.data import DataConfig

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "configs")


@dataclass(frozen=True)
class SRSection:
    """Super-resolution stage only."""

    lowres_size: int = field(default=64, metadata=knob("low-resolution input size", min=1))
    aug_max: float = field(default=0.2, metadata=knob(
        "training noise-augmentation level drawn from U[0, aug_max] (fraction of T)", min=0, max=1))


@dataclass(frozen=True)
class DiffusionSection:
    schedule: str = field(default="cosine", metadata=knob("noise schedule", choices=("cosine", "linear")))
    timesteps: int = field(default=1000, metadata=knob("discrete diffusion steps", min=1))
    prediction: str = field(default="x0", metadata=knob(
        "network target (x0: time-reweighted loss)", choices=("x0", "eps", "v")))
    weighting: str = field(default="min_snr", metadata=knob(
        "x0 loss weight: min_snr (min(SNR, snr_gamma)), snr (= eps loss), const",
        choices=("min_snr", "snr", "const")))
    snr_gamma: float = field(default=5.0, metadata=knob("cap of the min_snr weight", min=0))


@dataclass(frozen=True)
class TextEncoderSection:
    kind: str = field(default="minilm", metadata=knob(
        "minilm (offline all-MiniLM-L6-v2 tokens, D=384), open_clip, or precomputed (shard embeddings only)",
        choices=("minilm", "open_clip", "precomputed")))
    max_len: int = field(default=32, metadata=knob("text tokens kept per string", min=1))
    path: str | None = field(default=None, metadata=knob("minilm: model folder (default: the pip package's)"))
    arch: str | None = field(default=None, metadata=knob("open_clip: model name, e.g. ViT-B-32"))
    pretrained: str | None = field(
        default=None, metadata=knob("open_clip: pretrained tag or checkpoint path")
    )
    dim: int | None = field(default=None, metadata=knob("precomputed: embedding width", min=1))
    model_cfg: dict = field(default_factory=dict)  # open_clip: "tiny" or a model config mapping (YAML only)


@dataclass(frozen=True)
class TrainSection:
    steps: int = field(default=1000, metadata=knob(
        "optimizer steps (fixed count; data streams are infinite)", flag="--steps", min=0))
    lr: float = field(default=1e-4, metadata=knob("AdamW peak learning rate", min=0))
    weight_decay: float = field(default=0.01, metadata=knob("AdamW weight decay", min=0))
    betas: tuple[float, ...] = field(default=(0.9, 0.99), metadata=knob("AdamW betas, comma-separated"))
    warmup_steps: int = field(default=100, metadata=knob("linear learning-rate warm-up", min=0))
    grad_clip: float = field(default=1.0, metadata=knob("max global gradient norm", min=0))
    grad_accum: int = field(default=1, metadata=knob("micro-batches per optimizer step", min=1))
    ema_decay: float = field(
        default=0.999, metadata=knob("EMA decay (warmed up as (1+s)/(10+s))", min=0, max=1)
    )
    precision: str = field(default="auto", metadata=knob(
        "auto (bf16 on CUDA when supported, else fp32), bf16, fp32", choices=("auto", "bf16", "fp32")))
    drop_all_prob: float = field(default=0.1, metadata=knob(
        "condition dropout: drop text AND context (classifier-free guidance)", min=0, max=1))
    drop_context_prob: float = field(default=0.1, metadata=knob(
        "condition dropout: drop only the context", min=0, max=1))
    checkpoint_every: int = field(default=500, metadata=knob(
        "steps between atomic checkpoints (0 = only at the end)", min=0))
    keep_checkpoints: int = field(default=3, metadata=knob("checkpoint files kept", min=1))
    log_every: int = field(
        default=10, metadata=knob("steps between scalar logs (TensorBoard + log.csv)", min=1)
    )
    sample_every: int = field(default=0, metadata=knob("steps between sample grids (0 = never)", min=0))
    num_samples: int = field(default=4, metadata=knob("images in a sample grid", min=1))
    seed: int = field(default=0, metadata=knob("seeds init, data order, noise, dropout"))
    tensorboard: bool = field(default=True, metadata=knob("write TensorBoard events under OUTPUT/tb"))
    init_from: str | None = field(
        default=None,
        metadata=knob(
            "stage-1 checkpoint file or checkpoints/ folder to start from (default: none = scratch)",
            flag="--init",
        ),
    )
    cpu_threads: int = field(default=0, metadata=knob("torch CPU threads (0 = torch default)", min=0))
    max_skipped_steps: int = field(default=10, metadata=knob(
        "more steps with a non-finite loss or gradient than this stop the run", min=0))


@dataclass(frozen=True)
class SampleSection:
    """Sample grids written during and after training."""

    steps: int = field(default=50, metadata=knob("sampling steps", min=1))
    sampler: str = field(default="ddim", metadata=knob("sampler", choices=("ddim", "ddpm")))
    eta: float = field(default=0.0, metadata=knob("DDIM eta", min=0))
    text_scale: float = field(default=3.0, metadata=knob("classifier-free guidance scale for text"))
    ctx_scale: float = field(default=2.0, metadata=knob("classifier-free guidance scale for context"))
    threshold: float = field(
        default=0.995, metadata=knob("dynamic thresholding percentile (>= 1: static clip)")
    )
    sr_aug: float = field(
        default=0.1, metadata=knob("SR: noise-augmentation level of the low-res input", min=0)
    )


@dataclass(frozen=True)
class TrainRunConfig:
    """Everything one training run takes (the sections of train/configs/*.yaml)."""

    stage: str = field(default="base", metadata=knob("which UNet is trained", choices=("base", "sr")))
    model: UNetConfig = section(UNetConfig, "UNet", prefix=True)
    sr: SRSection = section(SRSection, "super-resolution", prefix=True)
    diffusion: DiffusionSection = section(DiffusionSection, "diffusion", prefix=True)
    text_encoder: TextEncoderSection = section(TextEncoderSection, "text encoder", prefix=True)
    data: DataConfig = section(DataConfig, "data", prefix=True)
    train: TrainSection = section(TrainSection, "optimisation", prefix=True)
    sample: SampleSection = section(SampleSection, "sample grids", prefix=True)


TRAIN_DEFAULTS: dict[str, Any] = cfgsys.to_dict(TrainSection())


def config_path(name: str) -> str:
    """A YAML path, or a bare name looked up in train/configs (``tiny``, ``tiny.yaml``)."""
    for p in (name, os.path.join(CONFIG_DIR, name), os.path.join(CONFIG_DIR, f"{name}.yaml")):
        if os.path.exists(p):
            return p
    names = sorted(f[: -len(".yaml")] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml"))
    raise cfgsys.ConfigError(f"--config {name}: no such file or config name{cfgsys.closest(name, names)}"
                             f"; names: {', '.join(names)}")


def checked(data: dict | None, source: str) -> dict:
    """``data`` (a nested mapping) after checking every key and value against :class:`TrainRunConfig`.

    Unknown keys and bad values are ConfigErrors naming the closest key; a value given as text
    (``--set train.lr=1e-4``) is replaced by its typed value, every other value is kept as given."""
    data = copy.deepcopy(data or {})
    typed = cfgsys.values_from_mapping(TrainRunConfig, data, source)
    cfgsys.build(TrainRunConfig, typed)  # bounds
    for path, value in typed.items():
        keys = path.split(".")
        node = data
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if (
            isinstance(node, dict)
            and isinstance(node.get(keys[-1]), str)
            and not isinstance(value, str | dict)
        ):
            node[keys[-1]] = list(value) if isinstance(value, tuple) else value
    return data


def nested(values: dict[str, Any]) -> dict:
    """{dotted path: value} -> nested dict (tuples as lists, as YAML gives them)."""
    out: dict = {}
    for path, v in values.items():
        node = out
        keys = path.split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = list(v) if isinstance(v, tuple) else v
    return out


def resolved(cfg: dict) -> TrainRunConfig:
    """The typed view of a config dict, defaults filled in."""
    return cfgsys.build(TrainRunConfig, cfgsys.values_from_mapping(TrainRunConfig, cfg, "config"))

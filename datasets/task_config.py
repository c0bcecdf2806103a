"""Tasks-stage configuration: every knob of ``python -m pipelines.build_tasks``, written once.

``core.config`` builds the flags (same names as before), YAML / ``--set`` keys (``tasks.seed``...)
and the summary's ``config`` from this dataclass; ``pipelines.build_tasks.run`` takes its fields as
keyword overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core import config as cfgsys
from core.config import knob

TOKEN_LIMIT = 77  # the text_encoder.max_len of every training config (datasets.build.TokenLimit.DEFAULT)
CONTROL_SIDE = 256  # the largest model size of the default cascade (sr.yaml: 64 -> 256)


@dataclass(frozen=True)
class TasksConfig:
    style_dir: str | None = field(default=None, metadata=knob(
        "folder of style images (metadata.csv file,style optional)"))
    faces_dir: str | None = field(default=None, metadata=knob(
        "faces grouped by person (CelebA-style metadata.csv file,identity,attributes or DIR/<person>/*)"))
    faces_hq_dir: str | None = field(default=None, metadata=knob(
        "a second, high-resolution face folder (CelebA-HQ row)"))
    seed: int = field(default=0, metadata=knob("seed for selection, templates and order"))
    shard_size: int = field(default=64, metadata=knob("samples per shard", min=1))
    max_samples: int | None = field(default=None, metadata=knob(
        "total samples, shared by the mixture's weights (none: one per captioned input pair)", min=0))
    mixture: str | None = field(default=None, metadata=knob(
        "mixture YAML (none: datasets/config/mixture.yaml)"))
    tasks: tuple[str, ...] | None = field(default=None, metadata=knob(
        "comma-separated subset of tasks (none: all)"))
    max_side: int = field(default=384, metadata=knob("longer side of stored images, pixels", min=1))
    embed_text: bool = field(default=False, metadata=knob(
        "store MiniLM token embeddings (.npy)", flag="--embed-text"))
    depth_weights: str | None = field(default=None, metadata=knob(
        "MiDaS/DPT weights; without them depth is skipped"))
    quality_scorer: str | None = field(
        default=None, metadata=knob("module:function scoring stylised targets")
    )
    style_threshold: float = field(default=0.35, metadata=knob("minimum quality of stylised targets"))
    align_space: str = field(default="itm", metadata=knob(
        "styled alignment filter space: itm (offline projection), itm:PATH, openclip:MODEL:PRETRAINED, off"))
    control_side: int = field(default=CONTROL_SIDE, metadata=knob(
        "longer side of control maps, pixels (match the largest model size of the cascade)", min=1))
    hed_backend: str = field(default="auto", metadata=knob(
        "HED runtime (auto: onnxruntime when installed, faster on CPU)", choices=("auto", "onnx", "torch")))
    batch_size: int = field(
        default=8, metadata=knob("jobs per synthesis batch (HED runs once per batch)", min=1)
    )
    plan_json: bool = field(default=True, metadata=knob(
        "merge the graph's per-shard plan parts (plan.parts/jobs-NNNNN.json) into one plan.json (off at "
        "web scale: one file of every job, written by the launcher; the parts are the plan)"))
    max_tokens: int = field(
        default=TOKEN_LIMIT,
        metadata=knob(
            "text-encoder token limit (training text_encoder.max_len); longer texts are rejected "
            "(0: no limit)",
            min=0,
        ),
    )

    def to_json(self) -> str:
        return cfgsys.to_json(self)

    def tool_args(self, depth_weights: str | None) -> dict:
        """What the synthesis workers build their models from (``depth_weights``: checked by the launcher)."""
        return {"max_side": self.max_side, "style_threshold": self.style_threshold,
                "quality_scorer": self.quality_scorer, "depth_weights": depth_weights,
                "align_space": self.align_space, "control_side": self.control_side,
                "hed_backend": self.hed_backend}

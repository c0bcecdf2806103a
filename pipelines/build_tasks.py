"""Beam pipeline: mined pairs + 5-pair clusters + style images -> mixed task shards + dataset card.

    python -m pipelines.build_tasks --input RUN --output OUT [--style-dir DIR] [--faces-dir DIR] \\
        [--seed 0] ...
    python -m pipelines.build_tasks --mined DIR [--clusters DIR] --output OUT ...

``RUN`` is a run folder (``core.contracts.RunLayout``): mined ``RUN/mined/kept/*.parquet`` and,
optionally, ``RUN/clusters/clusters.parquet`` (+ ``duplicates.parquet``, or their parts); ``--mined`` /
``--clusters`` point at other folders. Knobs: ``datasets/task_config.py`` (also ``--config FILE``,
``--set tasks.seed=1``); the per-sample work is ``datasets.stage.TaskStage``.

Planning runs in the graph (``pipelines/task_plan.py``), in two passes, with the launcher holding only
counts: pass 1 counts candidates per task and rank bucket; the launcher allocates Table 1's ratios on
the counts; pass 2 chooses and orders the jobs shard by shard, writes each shard's plan part, skips
shards whose unit manifest matches, joins each pending job to its input images (needed keys grouped by
the mined file holding them, each file read once), batches jobs (``--batch-size``) and synthesises
samples (control maps, style transfer, crops) in a DoFn that loads its models once per worker and runs
HED once per batch, groups them by shard and writes every shard atomically with its manifest and
reject rows; the same graph counts kept + rejected = read per mined row. The jobs, their order and
``plan.json`` are the bytes the one-process planner (``datasets.run.prepare``, used by the local path
``datasets.local.build_tasks_local``) gives. Progress (samples done, rejected, rate) goes to stderr
every ``datasets.run.PROGRESS_EVERY_S`` seconds, whatever the logging configuration.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from core import cli, storage
from core import config as cfgsys
from core.cli import require, stdout_to_stderr
from core.config import section
from datasets import build
from datasets.mixture import plan_counts
from datasets.plan_parts import cuts as plan_cuts
from datasets.run import (
    Prepared,
    Progress,
    base_fingerprint,
    finish,
    gather_inputs,
    remove_stale_shards,
    require_models,
    route_images,
    write_shard,
)
from datasets.task_config import TasksConfig
from datasets.tasks.base import Job, Tools
from pipelines.runners import RunnerConfig

log = logging.getLogger(__name__)
NAMESPACE = "build_tasks"
WORKER_RATES: list[float] = []  # samples/s of each finished synthesis worker in this process (bench/)


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
    """(shard, [("fp", fingerprint) | ("res", (kind, payload))]) -> the shard written, its manifest."""

    def __init__(self, output: str):
        self.output = output

    def process(self, element):
        index, items = element
        fp, results = None, []
        for tag, value in items:
            if tag == "fp":
                fp = value
            else:
                results.append(value)
        yield write_shard(self.output, index, results, fp)


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
    from pipelines import task_plan as TP
    from pipelines.runners import make_pipeline

    cfg = cfgsys.replace_leaves(config or TasksConfig(), **options)
    ins = gather_inputs(cfg, input=input, mined=mined, clusters=clusters, tools=tools)
    src = TP.PlanSources.of(ins)
    with make_pipeline(runner, beam_args or [], workers=workers) as p:  # pass 1: counts only
        TP.count_pass(p, src, output)
    counted = TP.read_counts(output)
    stats = counted["stats"]
    reasons = build.skip_reasons_for(
        depth_available=src.depth_available, has_clusters=stats["clusters"] > 0, has_art=stats["art"] > 0,
        faces={t: bool(people) for t, people in ins.faces.items()}, has_styles=bool(ins.styles),
        tasks=ins.tasks)
    available = {t: sum(h.values()) for t, h in counted["hist"].items()}
    plan = plan_counts(available, ins.config, cfg.max_samples, reasons, default_total=stats["pairs"])
    task_names = tuple(sorted(t for t, n in plan.counts.items() if n))
    require_models(task_names, tools)
    n_jobs = sum(plan.counts.values())
    n_shards = -(-n_jobs // cfg.shard_size)
    remove_stale_shards(output, n_shards)
    TP.remove_stale_parts(output, n_shards)
    base_fp = base_fingerprint(ins.files, ins.options, ins.style_bytes)
    print(f"tasks: {n_jobs} jobs in {n_shards} shards (planned in the graph, which skips finished shards)",
          file=sys.stderr, flush=True)
    with make_pipeline(runner, beam_args or [], workers=workers) as p:  # pass 2: plan, synthesise, write
        cuts = plan_cuts(plan.counts, counted["hist"])
        planned = TP.plan_jobs(p, src, output, cuts, cfg.shard_size, base_fp)
        jobs = planned.jobs
        needs = jobs | "Needs" >> beam.FlatMap(
            lambda oj: [(k, oj[0]) for k in Job.from_dict(oj[1]).record_keys])
        images = TP.needed_images(planned, needs, src.files)
        per_job = ({"need": needs, "img": images} | "JoinKeys" >> beam.CoGroupByKey()
                   | "Route" >> beam.FlatMap(route_images))
        styles_side = p | "Styles" >> beam.Create(sorted(ins.style_bytes.items()))
        results = (
            {"job": jobs, "imgs": per_job}
            | "JoinJobs" >> beam.CoGroupByKey()
            | "AsPairs" >> beam.Map(lambda e: (e[0], (e[1]["job"], e[1]["imgs"])))
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=max(1, cfg.batch_size))
            | "Synthesize" >> beam.ParDo(
                SynthesizeFn(cfg.to_json(), ins.depth_weights, tools, total=n_jobs, task_names=task_names),
                beam.pvalue.AsList(styles_side))
        )
        manifests = (
            (results | "Result" >> beam.Map(lambda kv: (kv[0], ("res", kv[1]))),
             planned.fps | "ShardFp" >> beam.Map(lambda kv: (kv[0], ("fp", kv[1]))))
            | "WithFp" >> beam.Flatten()
            | "ByShard" >> beam.GroupByKey()
            | "WriteShards" >> beam.ParDo(WriteShardFn(output))
        )
        TP.account(planned, manifests, output)
    acc, skipped = TP.read_account(output)
    if cfg.plan_json:
        TP.write_plan_json(output, plan.summary(), cfg.seed, n_shards)
    elif storage.exists(storage.join(output, "plan.json")):  # an earlier run's: it would not match the parts
        storage.remove_unit([storage.join(output, "plan.json")])
    prep = Prepared(
        cfg=cfg, where=ins.where, config=ins.config, files=ins.files, rows={}, clusters_rows=[],
        styles=ins.styles, style_bytes=ins.style_bytes, style_rejects=ins.style_rejects,
        face_stats=ins.face_stats,
        depth_weights=ins.depth_weights, depth_note=ins.depth_note, duplicates=set(), plan=plan,
        n_shards=n_shards, fps={}, done=set(), skipped=skipped, pending=[], tasks=ins.tasks,
        counts={k: stats[k] for k in ("records", "clusters", "duplicates")},
        account=acc,
    )
    return finish(prep, output)


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
    require(
        args.input is not None or args.mined is not None, "give --input RUN (a run folder) or --mined DIR"
    )
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
    from pipelines.runners import exit_after

    exit_after(cli.run(main))

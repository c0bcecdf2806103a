"""Beam pipeline: mined pairs + 5-pair clusters + style images -> mixed task shards + dataset card.

    python -m pipelines.build_tasks --input RUN --output OUT [--style-dir DIR] [--faces-dir DIR] \\
        [--seed 0] ...
    python -m pipelines.build_tasks --mined DIR [--clusters DIR] --output OUT ...

``RUN`` is a run folder (``core.contracts.RunLayout``): mined ``RUN/mined/kept/*.parquet`` and,
optionally, ``RUN/clusters/clusters.parquet`` (+ ``duplicates.parquet``); ``--mined`` /
``--clusters`` point at other folders. Knobs: ``datasets/task_config.py`` (also ``--config FILE``,
``--set tasks.seed=1``); the per-sample work is ``datasets.stage.TaskStage``. Planning (keys and
text only) runs in the launcher and is deterministic for a seed; the Beam graph joins each planned
job to its input images by key (CoGroupByKey), batches jobs (``--batch-size``) and synthesises
samples (control maps, style transfer, crops) in a DoFn that loads its models once per worker and
runs HED once per batch,
groups them by shard and writes every shard atomically with its manifest and reject rows. Shards
already on disk are skipped on rerun. Progress (samples done, rejected, rate) goes to stderr
every ``datasets.run.PROGRESS_EVERY_S`` seconds, whatever the logging configuration. The launcher-side
steps (inputs, plan, done shards, card, summary) are ``datasets.run.prepare``/``finish``, shared with the
local path ``datasets.local.build_tasks_local``.
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
from datasets.run import Progress, finish, prepare, route_images, write_shard
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
    def __init__(self, output: str, fingerprints: dict[int, dict] | None = None):
        self.output, self.fingerprints = output, fingerprints or {}

    def process(self, element):
        index, items = element
        yield write_shard(self.output, index, list(items), self.fingerprints.get(index))


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
    from pipelines.runners import make_pipeline

    cfg = cfgsys.replace_leaves(config or TasksConfig(), **options)
    prep = prepare(cfg, output, input=input, mined=mined, clusters=clusters, tools=tools)
    if prep.pending:
        pending, files, style_bytes, fps = prep.pending, prep.files, prep.style_bytes, prep.fps
        wanted = set(prep.needed)
        with make_pipeline(runner, beam_args or [], workers=workers) as p:
            jobs = p | "Jobs" >> beam.Create([(j.order, j.to_dict()) for j in pending])
            needs = jobs | "Needs" >> beam.FlatMap(
                lambda oj: [(k, oj[0]) for k in Job.from_dict(oj[1]).record_keys])
            images = (p | "Files" >> beam.Create(files)
                      | "ReadImages" >> beam.FlatMap(lambda f: ((k, d) for k, d in build.iter_image_rows(f)
                                                                if k in wanted)))
            per_job = ({"need": needs, "img": images} | "JoinKeys" >> beam.CoGroupByKey()
                       | "Route" >> beam.FlatMap(route_images))
            styles_side = p | "Styles" >> beam.Create(sorted(style_bytes.items()))
            todo = {i: fps[i] for i in range(prep.n_shards) if i not in prep.done}
            (
                (
                    {"job": jobs, "imgs": per_job}
                    | "JoinJobs" >> beam.CoGroupByKey()
                    | "AsPairs" >> beam.Map(lambda e: (e[0], (e[1]["job"], e[1]["imgs"])))
                )
                | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=max(1, cfg.batch_size))
                | "Synthesize"
                >> beam.ParDo(
                    SynthesizeFn(
                        cfg.to_json(),
                        prep.depth_weights,
                        tools,
                        total=len(pending),
                        task_names=tuple(sorted({j.task for j in pending})),
                    ),
                    beam.pvalue.AsList(styles_side),
                )
                | "ByShard" >> beam.GroupByKey()
                | "WriteShards" >> beam.ParDo(WriteShardFn(output, todo))
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

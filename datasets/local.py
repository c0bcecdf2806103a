"""The whole tasks stage without Beam: the same launcher steps and TaskStage as the Beam graph.

``build_tasks_local(input, output, config)`` runs :func:`datasets.run.prepare`, synthesises the
pending jobs in job order with :class:`datasets.stage.TaskStage` (batches of ``batch_size``),
writes each shard with :func:`datasets.run.write_shard` and ends with :func:`datasets.run.finish`,
so its files match ``pipelines.build_tasks.run``'s. Benchmarks and small runs use it; nothing
here re-implements a step of the stage.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from core import config as cfgsys
from datasets import build
from datasets.run import finish, prepare, write_shard
from datasets.stage import TaskStage
from datasets.task_config import TasksConfig
from datasets.tasks.base import Tools


def build_tasks_local(
    input: str | None,
    output: str,
    config: TasksConfig | None = None,
    tools: Tools | None = None,
    mined: str | None = None,
    clusters: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Build the task shards in this process; returns the same summary as the Beam pipeline."""
    cfg = cfgsys.replace_leaves(config or TasksConfig(), **options)
    prep = prepare(cfg, output, input=input, mined=mined, clusters=clusters, tools=tools)
    if prep.pending:
        wanted = set(prep.needed)
        images: dict[str, bytes] = {}
        for f in prep.files:
            for k, d in build.iter_image_rows(f):
                if k in wanted and d and k not in images:
                    images[k] = d
        stage = TaskStage(cfg, prep.depth_weights, tools, tuple(sorted({j.task for j in prep.pending})))
        stage.side_images = dict(prep.style_bytes)
        by_shard: dict[int, list] = defaultdict(list)
        size = max(1, cfg.batch_size)
        for s in range(0, len(prep.pending), size):
            jobs = prep.pending[s:s + size]
            need = {k: images[k] for j in jobs for k in j.record_keys if k in images}
            for job, result in zip(jobs, stage.synthesize(jobs, need)):
                by_shard[job.order // cfg.shard_size].append(result)
        for i, items in sorted(by_shard.items()):
            write_shard(output, i, items, prep.fps.get(i) if i not in prep.done else None)
    return finish(prep, output)

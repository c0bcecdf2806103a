"""Retrieval-augmented text-to-image from 5-pair clusters: a target and three context pairs
(each cluster member is a candidate target once)."""

from __future__ import annotations

from datasets.tasks.base import Job, PlanInputs, Tools, build, load
from datasets.templates import pick

TASKS = ["retrieval"]
N_CTX = 3


def plan(inputs: PlanInputs, seed: int) -> dict[str, list[Job]]:
    jobs = []
    for cl in inputs.clusters:
        keys = [k for k in cl["keys"] if k in inputs.rows and (inputs.rows[k].get("caption") or "").strip()]
        if len(keys) < N_CTX + 1:
            continue
        for target in keys:  # like the trainer: any member is a target, 3 others its context
            others = sorted(
                (k for k in keys if k != target), key=lambda k: pick(seed, "retrieval", target, k, n=1 << 30)
            )
            ctx = others[:N_CTX]
            values = {"caption": inputs.rows[target]["caption"], "cluster_id": cl["cluster_id"]}
            values.update({f"ctx{i + 1}_caption": inputs.rows[k]["caption"] for i, k in enumerate(ctx)})
            jobs.append(Job("retrieval", target, ctx, values=values))
    return {"retrieval": jobs}


def make(job: Job, images: dict[str, bytes], tools: Tools, seed: int):
    target = load(images, job.target_key, tools)
    ctx = [(load(images, k, tools), "jpg") for k in job.context_keys]
    return build("retrieval", job, seed, target, ctx, list(job.context_keys),
                 meta={"cluster_id": job.values.get("cluster_id")})

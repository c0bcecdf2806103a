"""Text-to-image: the target's caption phrased as an instruction, no context images.

Two of the paper's datasets: ``t2i`` (natural images) and ``t2i_art`` (art, WikiArt in the paper).
A pair goes to ``t2i_art`` when mining put it in an art domain, else to ``t2i``.
"""

from __future__ import annotations

from datasets.tasks.base import Job, PlanInputs, Tools, build, captioned, load

TASKS = ["t2i", "t2i_art"]
ART_DOMAINS = frozenset({"art", "painting", "artwork"})


def is_art(row: dict) -> bool:
    return str(row.get("domain") or "").lower() in ART_DOMAINS


def plan(inputs: PlanInputs, seed: int) -> dict[str, list[Job]]:
    out: dict[str, list[Job]] = {t: [] for t in TASKS}
    for k in captioned(inputs.rows):
        task = "t2i_art" if is_art(inputs.rows[k]) else "t2i"
        out[task].append(Job(task, k, values={"caption": inputs.rows[k]["caption"]}))
    return out


def make(job: Job, images: dict[str, bytes], tools: Tools, seed: int):
    target = load(images, job.target_key, tools)
    return build(job.task, job, seed, target, [], [])

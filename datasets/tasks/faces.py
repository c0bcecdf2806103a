"""Face subject tasks (the paper's CelebA and CelebA-HQ rows): three photos of one person as
context, another photo of that person as the target, the target's caption (from CelebA attributes
or the folder's captions) as the scene.

Faces come from ``--faces-dir`` (``subject_faces``) and ``--faces-hq-dir`` (``subject_faces_hq``),
read by ``datasets.faces.load_faces``; each photo of a person is a candidate target once. Face
photos are already aligned crops, so references are used whole (no saliency crop).
"""

from __future__ import annotations

from datasets.tasks.base import Job, PlanInputs, Tools, build, load
from datasets.templates import pick

TASKS = ["subject_faces", "subject_faces_hq"]
N_REFS = 3


def plan(inputs: PlanInputs, seed: int) -> dict[str, list[Job]]:
    out: dict[str, list[Job]] = {}
    for task in TASKS:
        jobs = []
        for person in inputs.faces.get(task, []):
            keys = person["keys"]
            if len(keys) < N_REFS + 1:
                continue
            for target in keys:
                others = sorted(
                    (k for k in keys if k != target), key=lambda k: pick(seed, task, target, k, n=1 << 30)
                )
                jobs.append(
                    Job(
                        task,
                        target,
                        others[:N_REFS],
                        values={
                            "caption": person["captions"][target],
                            "subject": person["word"],
                            "person": person["person"],
                        },
                    )
                )
        out[task] = jobs
    return out


def make(job: Job, images: dict[str, bytes], tools: Tools, seed: int):
    target = load(images, job.target_key, tools)
    refs = [(load(images, k, tools), "jpg") for k in job.context_keys]
    return build(job.task, job, seed, target, refs, list(job.context_keys),
                 meta={"person": job.values.get("person")})

"""Style transfer: style image + content image -> the content rendered in the style."""

from __future__ import annotations

from datasets.tasks.base import Job, PlanInputs, Tools, build, captioned
from datasets.tasks.styled import style_for, stylize

TASKS = ["style_transfer"]


def plan(inputs: PlanInputs, seed: int) -> dict[str, list[Job]]:
    jobs = []
    for k in captioned(inputs.rows):
        st = style_for(inputs, seed, "style_transfer", k)
        if st is None:
            break
        jobs.append(
            Job(
                "style_transfer",
                k,
                [st["key"], k],
                values={"caption": inputs.rows[k]["caption"], "style": st["style"]},
                style_key=st["key"],
            )
        )
    return {"style_transfer": jobs}


def make(job: Job, images: dict[str, bytes], tools: Tools, seed: int):
    content, style, target, score = stylize(job, images, tools)
    return build("style_transfer", job, seed, target, [(style, "jpg"), (content, "jpg")],
                 [job.style_key, job.target_key], meta={"quality": round(score, 4)})

"""Styled generation: style image + caption -> the captioned content image rendered in that style.

Targets come from Magenta's arbitrary style transfer (``datasets.style``) of a captioned
content image, kept only when the quality scorer rates them >= tools.style_threshold, and, when
``tools.aligner`` is set (``mining.itm.align.Aligner``: the offline image-text projection or
CLIP), only when the target matches both the style image and the caption in that shared space
(reject reasons ``style_misaligned``, ``caption_misaligned``), as the paper keeps only aligned
examples.
"""

from __future__ import annotations

from datasets.tasks.base import Job, PlanInputs, TaskSkip, Tools, build, captioned, load
from datasets.templates import pick

TASKS = ["styled"]


def style_for(inputs: PlanInputs, seed: int, task: str, key: str) -> dict | None:
    """The style image a (task, content key) pair uses; style_transfer avoids styled's choice."""
    n = len(inputs.styles)
    if n == 0:
        return None
    i = pick(seed, "style", key, n=n)
    if task == "style_transfer" and n > 1:
        i = (i + 1 + pick(seed, task, key, n=n - 1)) % n
    return inputs.styles[i]


def plan(inputs: PlanInputs, seed: int) -> dict[str, list[Job]]:
    jobs = []
    for k in captioned(inputs.rows):
        st = style_for(inputs, seed, "styled", k)
        if st is None:
            break
        jobs.append(
            Job(
                "styled",
                k,
                [st["key"]],
                values={"caption": inputs.rows[k]["caption"], "style": st["style"]},
                style_key=st["key"],
            )
        )
    return {"styled": jobs}


def stylize(job: Job, images: dict[str, bytes], tools: Tools):
    """(content, style image, stylised target, quality) or TaskSkip when below the threshold."""
    content = load(images, job.target_key, tools)
    style = load(images, job.style_key, tools)
    vec = tools.style_vectors.get(job.style_key)
    if vec is None and hasattr(tools.style, "style_vector"):  # one style vector per style image, reused
        vec = tools.style_vectors[job.style_key] = tools.style.style_vector(style)
    target = tools.style.transfer(content, vec if vec is not None else style)
    score = float(tools.quality(target))
    if score < tools.style_threshold:
        raise TaskSkip("low_style_quality", f"quality {score:.3f} < {tools.style_threshold}")
    return content, style, target, score


def make(job: Job, images: dict[str, bytes], tools: Tools, seed: int):
    content, style, target, score = stylize(job, images, tools)
    meta = {"quality": round(score, 4), "content_key": job.target_key}
    aligner = getattr(tools, "aligner", None)
    if aligner is not None:
        check = aligner.styled(target, style, content, job.values.get("caption", ""))
        if check.reason:
            raise TaskSkip(check.reason, check.detail())
        meta |= {"style_gain": round(check.style_gain, 4), "caption_rank": round(check.caption_rank, 4)}
    return build("styled", job, seed, target, [(style, "jpg")], [job.style_key], meta=meta)

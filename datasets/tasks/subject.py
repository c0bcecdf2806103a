"""Subject-driven generation from 5-pair clusters: one pair is the target, three others are
subject references cropped to the subject by a saliency mask. Each member of a cluster is a
candidate target once (up to 5 candidates per cluster); the mixture picks among them. Only clusters
that clustering flags ``coherent`` (the stricter, calibrated test: every member a real neighbour of
the seed) are used, since a filler member would teach the model a wrong subject; cluster files
written before that column existed are used as they are."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from datasets.tasks.base import Job, PlanInputs, TaskSkip, Tools, build, load
from datasets.templates import pick

TASKS = ["subject"]
N_REFS = 3
MARGIN = 0.1  # crop margin around the mask box, as a fraction of the box side
_STOP = set(
    "a an the of on in at to and with for by from is are was were be its it this that some two three "
    "there their his her into near next while up down out over under front top side very large small "
    "big little white black red blue green yellow brown one other each several many".split()
)


def subject_name(captions: list[str], min_share: int = 3) -> str:
    """Most frequent content word shared by >= ``min_share`` captions, else "subject"."""
    counts: Counter[str] = Counter()
    for c in captions:
        words = {w for w in re.findall(r"[a-z]+", (c or "").lower()) if len(w) > 2 and w not in _STOP}
        counts.update(words)
    best = [w for w, n in sorted(counts.items(), key=lambda x: (-x[1], x[0])) if n >= min_share]
    return best[0] if best else "subject"


def plan(inputs: PlanInputs, seed: int) -> dict[str, list[Job]]:
    jobs = []
    for cl in inputs.clusters:
        if not cl.get("coherent", True):
            continue
        keys = [k for k in cl["keys"] if k in inputs.rows]
        if len(keys) < N_REFS + 1:
            continue
        name = subject_name([inputs.rows[k].get("caption") or "" for k in keys])
        for target in keys:  # every member can be the target once; refs: 3 of the others, seeded
            others = sorted(
                (k for k in keys if k != target), key=lambda k: pick(seed, "subject", target, k, n=1 << 30)
            )
            jobs.append(
                Job(
                    "subject",
                    target,
                    others[:N_REFS],
                    values={
                        "caption": inputs.rows[target].get("caption") or "",
                        "subject": name,
                        "cluster_id": cl["cluster_id"],
                    },
                )
            )
    return {"subject": jobs}


def crop_to_mask(img, mask: np.ndarray):
    """Crop ``img`` to the box of ``mask`` (plus margin); (image, cropped?)."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    m = m.astype(np.float32)
    if m.max() > 1.0:
        m = m / 255.0
    ys, xs = np.nonzero(m > 0.5)
    if len(ys) == 0:
        return img, False
    h, w = m.shape
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    my, mx = int((y1 - y0) * MARGIN), int((x1 - x0) * MARGIN)
    y0, y1, x0, x1 = max(0, y0 - my), min(h, y1 + my), max(0, x0 - mx), min(w, x1 + mx)
    if (y1 - y0) < 16 or (x1 - x0) < 16:
        return img, False
    sx, sy = img.width / w, img.height / h
    return img.crop((round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy))), True


def make(job: Job, images: dict[str, bytes], tools: Tools, seed: int):
    target = load(images, job.target_key, tools)
    refs, cropped = [], 0
    for k in job.context_keys:
        img = load(images, k, tools)
        crop, ok = crop_to_mask(img, tools.masker.mask(np.asarray(img)))
        cropped += ok
        refs.append((crop, "jpg"))
    if len(refs) != N_REFS:
        raise TaskSkip("too_few_references", f"{len(refs)} < {N_REFS}")
    return build("subject", job, seed, target, refs, list(job.context_keys),
                 meta={"cluster_id": job.values.get("cluster_id"), "cropped_refs": cropped})

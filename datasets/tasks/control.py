"""Control-to-image: edge (HED), sketch, saliency mask and depth maps of the target as context.

Maps are computed at the resolution training needs, not at the stored image size: the target is
shrunk so its longer side is ``tools.control_side`` (default 256, the largest model size of the
default cascade: the 64 -> 256 SR model; ``--control-side``), the map is computed and stored at
that size (same aspect as the target, so the trainer's centre crop aligns them). ``prepare_batch``
runs HED once per target for a whole batch of edge and sketch jobs (edge and sketch of one image
share it). Depth needs user-supplied MiDaS/DPT weights: without them the task is skipped with a
logged reason and reported absent in the dataset card (never a fake depth map).
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from datasets.tasks.base import Job, PlanInputs, TaskSkip, Tools, build, captioned, load

log = logging.getLogger(__name__)

TASKS = ["control_edge", "control_sketch", "control_mask", "control_depth"]
MIN_COVERAGE = 0.005  # a control map with less signal than this is useless as a condition


def plan(inputs: PlanInputs, seed: int) -> dict[str, list[Job]]:
    keys = captioned(inputs.rows)
    out = {t: [Job(t, k, values={"caption": inputs.rows[k]["caption"]}) for k in keys] for t in TASKS[:3]}
    if inputs.depth_available:
        out["control_depth"] = [
            Job("control_depth", k, values={"caption": inputs.rows[k]["caption"]}) for k in keys
        ]
    else:  # the launcher logs the skip once (datasets.run.gather_inputs); the card says why
        out["control_depth"] = []
    return out


def to_gray_png(arr: np.ndarray) -> Image.Image:
    """float [0,1] / bool / uint8 HxW -> 8-bit greyscale image."""
    a = np.asarray(arr)
    if a.ndim == 3:
        a = a[..., 0]
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(a, mode="L")


def control_input(target: Image.Image, side: int | None) -> Image.Image:
    """The target shrunk so its longer side is ``side`` (never enlarged; None/0 = as is)."""
    if not side or max(target.size) <= side:
        return target
    s = side / max(target.size)
    return target.resize((max(1, round(target.width * s)), max(1, round(target.height * s))), Image.BILINEAR)


def _edges(key: str, rgb: np.ndarray, tools: Tools) -> np.ndarray:
    cached = tools.edge_cache.get(key)
    if cached is not None and cached.shape == rgb.shape[:2]:
        return cached
    return tools.hed.edges(rgb)


def control_map(task: str, rgb: np.ndarray, tools: Tools, key: str = "") -> np.ndarray:
    if task == "control_edge":
        return _edges(key, rgb, tools)
    if task == "control_sketch":
        return tools.sketch(_edges(key, rgb, tools))
    if task == "control_mask":
        return tools.masker.mask(rgb)
    if task == "control_depth":
        return tools.depth.predict(rgb)
    raise ValueError(task)


def prepare_batch(jobs: list[Job], images: dict[str, bytes], tools: Tools) -> None:
    """Run HED once, batched, over the targets of the edge/sketch jobs; fills ``tools.edge_cache``.

    A target that can't be loaded is left out here; its job rejects it in ``make``.
    """
    keys, rgbs = [], []
    for j in jobs:
        if j.task in ("control_edge", "control_sketch") and j.target_key not in tools.edge_cache \
                and j.target_key not in keys:
            try:
                rgbs.append(np.asarray(control_input(load(images, j.target_key, tools), tools.control_side)))
                keys.append(j.target_key)
            except TaskSkip:
                continue
    if not keys:
        return
    batch = getattr(tools.hed, "edges_batch", None)
    maps = batch(rgbs) if batch else [tools.hed.edges(r) for r in rgbs]
    tools.edge_cache.update(zip(keys, maps))


def make(job: Job, images: dict[str, bytes], tools: Tools, seed: int):
    target = load(images, job.target_key, tools)
    rgb = np.asarray(control_input(target, tools.control_side))
    try:
        cmap = control_map(job.task, rgb, tools, job.target_key)
    except TaskSkip:
        raise
    except ImportError as exc:
        raise TaskSkip("control_unavailable", f"{job.task}: {exc}") from exc
    img = to_gray_png(cmap)
    if img.size != (rgb.shape[1], rgb.shape[0]):
        img = img.resize((rgb.shape[1], rgb.shape[0]), Image.BILINEAR)
    coverage = (
        float((np.asarray(img) > 127).mean())
        if job.task == "control_mask"
        else float(np.asarray(img).mean() / 255)
    )
    if coverage < MIN_COVERAGE:
        raise TaskSkip("empty_control_map", f"{job.task}: signal {coverage:.4f} < {MIN_COVERAGE}")
    return build(
        job.task,
        job,
        seed,
        target,
        [(img, "png")],
        [job.target_key],
        meta={"control_signal": round(coverage, 4)},
    )

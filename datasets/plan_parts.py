"""Task planning in pieces that a distributed graph runs shard by shard (``pipelines/task_plan.py``),
with the same jobs, job order and ``plan.json`` bytes as the one-process planner
(:func:`datasets.mixture.plan_mixture`).

Why that is possible: every planning rule is per job or per count.

- **Candidates** come from one mined row (t2i, control, styled, style transfer: the row and the small
  style list), one cluster and its members' rows (subject, retrieval), or the face folders (read by the
  launcher anyway): :func:`row_candidates`, :func:`cluster_candidates`, :func:`face_candidates` call
  the task modules' own ``plan`` on that piece.
- **How many per task** needs the candidate counts only (:func:`datasets.mixture.plan_counts`).
- **Which ones**: per task, the ``n`` candidates of smallest rank (a sha256 of seed, task and keys).
  A histogram of each rank's first :data:`BUCKET_HEX` hex digits (:func:`bucket`) tells, per task, the
  bucket holding the n-th smallest (:func:`cuts`): candidates below it are chosen where they are, and
  only that one bucket per task (about candidates / 65,536 jobs) is sorted in one place.
- **Output order**: the chosen jobs sorted by a second rank. A histogram of its buckets gives each
  bucket its first position (:func:`offsets`); each bucket is sorted alone, and a job's order is its
  bucket's offset plus its place in the bucket.

Ties (two identical candidates) break by the job's JSON, in both planners.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from datasets.mixture import job_rank, job_text
from datasets.tasks import control as control_task
from datasets.tasks import faces, retrieval, style_transfer, styled, subject, t2i
from datasets.tasks.base import Job, PlanInputs
from datasets.tasks.t2i import is_art

BUCKET_HEX = 4  # 65,536 buckets: at 1B candidates a task's cut bucket holds ~15k jobs
ROW_PLANNERS = (t2i, control_task, styled, style_transfer)
CLUSTER_PLANNERS = (subject, retrieval)


def bucket(rank: str) -> int:
    return int(rank[:BUCKET_HEX], 16)


def _wanted(out: dict[str, list[Job]], tasks: Iterable[str] | None) -> Iterator[Job]:
    for name, jobs in out.items():
        if tasks is None or name in tasks:
            yield from jobs


def row_candidates(key: str, row: dict[str, Any], seed: int, styles: list[dict[str, Any]],
                   depth_available: bool, tasks: Iterable[str] | None) -> list[Job]:
    """The candidate jobs made from one (non-duplicate) mined row."""
    inputs = PlanInputs(rows={key: row}, styles=styles, depth_available=depth_available)
    return [j for mod in ROW_PLANNERS for j in _wanted(mod.plan(inputs, seed), tasks)]


def cluster_candidates(cluster: dict[str, Any], members: dict[str, dict[str, Any]], seed: int,
                       tasks: Iterable[str] | None) -> list[Job]:
    """The candidate jobs of one cluster; ``members``: its non-duplicate members' mined rows."""
    inputs = PlanInputs(rows=members, clusters=[cluster])
    return [j for mod in CLUSTER_PLANNERS for j in _wanted(mod.plan(inputs, seed), tasks)]


def face_candidates(people: dict[str, list[dict[str, Any]]], seed: int,
                    tasks: Iterable[str] | None) -> list[Job]:
    return list(_wanted(faces.plan(PlanInputs(rows={}, faces=people), seed), tasks))


def row_flags(row: dict[str, Any], duplicate: bool) -> tuple[str, ...]:
    """What the planner's counts need from a row: ("records",), plus ("duplicates",) or, when it can be
    planned, ("pairs",) for a caption and ("art",) for the art domain."""
    if duplicate:
        return ("records", "duplicates")
    out = ["records"]
    if (row.get("caption") or "").strip():
        out.append("pairs")
    if is_art(row):
        out.append("art")
    return tuple(out)


def cuts(counts: dict[str, int], hist: dict[str, dict[int, int]]) -> dict[str, tuple[int, int]]:
    """Per task with a count: (bucket b, m): choose every candidate below b and the m smallest in b."""
    out = {}
    for task, n in counts.items():
        if n <= 0:
            continue
        seen = 0
        for b in sorted(hist.get(task, {})):
            size = hist[task][b]
            if seen + size >= n:
                out[task] = (b + 1, 0) if seen + size == n else (b, n - seen)
                break
            seen += size
        else:
            raise ValueError(f"{task}: {n} samples asked but only {seen} candidates counted")
    return out


def selection(seed: int, job: Job, task_cuts: dict[str, tuple[int, int]]) -> str | None:
    """"in" (chosen), "edge" (in its task's cut bucket: sorted there) or None (not chosen)."""
    cut = task_cuts.get(job.task)
    if cut is None:
        return None
    b = bucket(job_rank(seed, job))
    return "in" if b < cut[0] else "edge" if b == cut[0] else None


def smallest(seed: int, jobs: Iterable[Job], m: int) -> list[Job]:
    return sorted(jobs, key=lambda j: (job_rank(seed, j), job_text(j)))[:m]


def order_bucket(seed: int, job: Job) -> int:
    return bucket(job_rank(seed, job, "order"))


def offsets(hist: dict[int, int]) -> dict[int, int]:
    """Each order bucket's first output position."""
    out, at = {}, 0
    for b in sorted(hist):
        out[b] = at
        at += hist[b]
    return out


def ordered(seed: int, jobs: Iterable[Job], start: int) -> list[Job]:
    """One order bucket's jobs with ``order`` set, from ``start``."""
    out = sorted(jobs, key=lambda j: (job_rank(seed, j, "order"), job_text(j)))
    for i, j in enumerate(out):
        j.order = start + i
    return out


def account_reason(used: bool, duplicate: bool, captioned: bool, planned: bool) -> str:
    """The tasks stage's verdict on one mined row (``datasets.build.account``'s rule)."""
    if used:
        return "kept"
    if duplicate:
        return "near_duplicate"
    if not captioned:
        return "no_caption"
    return "synthesis_failed" if planned else "not_selected_by_mixture"


def plan_json_pieces(summary: dict[str, Any], seed: int) -> tuple[bytes, bytes]:
    """``plan.json`` around its job list: (prefix, suffix), so the list can be streamed between them
    with :func:`job_json` items joined by ", " (the bytes ``json.dumps(..., sort_keys=True)`` writes)."""
    mark = "\x00jobs\x00"
    text = json.dumps({**summary, "seed": seed, "jobs": mark}, sort_keys=True)
    head, tail = text.split(json.dumps(mark))
    return head.encode(), tail.encode()


def job_json(job: dict[str, Any]) -> str:
    """One job dict as ``plan.json`` writes it (no ``default=``: the bytes of ``json.dumps`` there)."""
    return json.dumps(job, sort_keys=True)

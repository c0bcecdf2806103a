"""The task mixture: target ratios (``datasets/config/mixture.yaml``, the paper's Table 1) ->
samples per task.

Planning is cheap (keys and text only). Every task lists its candidate jobs; ``allocate`` shares a
total of N samples (default: one per captioned input pair; ``--max-samples`` sets it) by weight:
task t gets ``N * r_t / sum(r)``. That is the expectation of drawing tasks with their ratios as
weights without replacement, so no abundant task is cut to fit the scarcest one. When a task has
fewer candidates than its share, all of them are used, it drops out, and the rest of N is shared
by the other tasks' weights (water-filling), repeated until every share fits. Shares are rounded by
largest remainder, so counts sum to ``min(N, all candidates)``. ``select`` then draws that many jobs
per task with a seeded shuffle and interleaves all tasks in one seeded order, so every shard mixes
tasks. Tasks with no candidates drop out and the remaining ratios are renormalised; the reason is
kept for the dataset card.

For an input of n captioned pairs, c 5-pair clusters, s style images and no depth weights (the
default offline run), n samples are written: the image tasks (t2i, control mask/edge/sketch, styled,
style transfer) each have n candidates, subject has 5c, so each gets ``n * r_t / R`` with R the sum
of the buildable ratios, and subject gets ``min(5c, n * 0.30 / R)``; see ``allocate``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from datasets.tasks.base import Job

DEFAULT_CONFIG = Path(__file__).with_name("config") / "mixture.yaml"


@dataclass
class MixturePlan:
    targets: dict[str, float]  # configured (paper) ratio per task
    effective: dict[str, float]  # renormalised over tasks that can be built
    available: dict[str, int]  # candidate jobs per task
    counts: dict[str, int]  # samples chosen per task
    skipped: dict[str, str] = field(default_factory=dict)  # task -> reason
    exhausted: list[str] = field(default_factory=list)  # tasks that used all their candidates (share cut)
    total: int = 0  # N asked for
    jobs: list[Job] = field(default_factory=list)  # chosen jobs, in output order

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "jobs"}


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    doc = yaml.safe_load(Path(path or DEFAULT_CONFIG).read_text(encoding="utf-8"))
    for name, spec in doc["tasks"].items():
        if float(spec["ratio"]) < 0:
            raise ValueError(f"negative ratio for {name}")
    return doc


def _rank(seed: int, *parts: str) -> str:
    return hashlib.sha256("\x1f".join([str(seed), *parts]).encode("utf-8")).hexdigest()


def _round_shares(shares: dict[str, float], n: int) -> dict[str, int]:
    """Integers summing to ``n`` (largest remainder; ties by name, so deterministic)."""
    base = {t: int(s) for t, s in shares.items()}
    left = n - sum(base.values())
    for t in sorted(shares, key=lambda k: (-(shares[k] - base[k]), k))[: max(0, left)]:
        base[t] += 1
    return base


def allocate(ratios: dict[str, float], available: dict[str, int], total: int | None = None) -> dict[str, int]:
    """Samples per task: ``total`` shared by weight, water-filled over tasks whose candidates run out.

    ``total`` None = the sum of all candidates (every candidate is used). Counts never exceed
    ``available`` and sum to ``min(total, sum(available))``.
    """
    active = {t: r for t, r in ratios.items() if r > 0 and available.get(t, 0) > 0}
    counts = {t: 0 for t in ratios}
    pool = sum(available[t] for t in active)
    n_left = pool if total is None else min(int(total), pool)
    while active and n_left > 0:
        wsum = sum(active.values())
        shares = {t: n_left * r / wsum for t, r in active.items()}
        short = {t for t, s in shares.items() if s >= available[t]}
        if not short:
            counts.update(_round_shares(shares, n_left))
            break
        for t in sorted(short):
            counts[t] = available[t]
            n_left -= available[t]
            del active[t]
    return counts


def exhausted_tasks(counts: dict[str, int], available: dict[str, int], ratios: dict[str, float]) -> list[str]:
    return sorted(t for t, n in counts.items() if ratios.get(t, 0) > 0 and n and n >= available.get(t, 0))


def job_rank(seed: int, job: Job, *prefix: str) -> str:
    """The hash a job is ranked by: ``prefix`` () selects within its task, ("order",) orders the output."""
    return _rank(seed, *prefix, job.task, job.target_key, *job.context_keys)


def job_text(job: Job) -> str:
    """The job's JSON: breaks rank ties (identical candidates), the same in every planner."""
    return json.dumps(job.to_dict(), sort_keys=True, default=str)


def plan_counts(available: dict[str, int], config: dict[str, Any], max_samples: int | None = None,
                skip_reasons: dict[str, str] | None = None, default_total: int | None = None) -> MixturePlan:
    """The plan without its jobs: samples per task from the candidate counts alone (``allocate``).

    N = ``max_samples`` when given, else ``default_total`` (the builder passes the number of captioned
    input pairs), else every candidate. A distributed planner (``pipelines/task_plan.py``) calls this
    on counts summed over shards; :func:`plan_mixture` on its own lists.
    """
    ratios = {t: float(spec["ratio"]) for t, spec in config["tasks"].items()}
    available = {t: int(available.get(t, 0)) for t in ratios}
    skipped = {}
    for t, r in ratios.items():
        if r <= 0:
            skipped[t] = "ratio 0 in the mixture config"
        elif available[t] == 0:
            skipped[t] = (skip_reasons or {}).get(t, "no candidates in the input")
    total = max_samples if max_samples is not None else default_total
    counts = allocate(ratios, available, total)
    active = {t: r for t, r in ratios.items() if r > 0 and available[t] > 0}
    wsum = sum(active.values()) or 1.0
    effective = {t: (r / wsum if t in active else 0.0) for t, r in ratios.items()}
    return MixturePlan(targets=ratios, effective=effective, available=available, counts=counts,
                       skipped=skipped, exhausted=exhausted_tasks(counts, available, ratios),
                       total=int(total if total is not None else sum(available.values())))


def plan_mixture(candidates: dict[str, list[Job]], config: dict[str, Any], seed: int,
                 max_samples: int | None = None, skip_reasons: dict[str, str] | None = None,
                 default_total: int | None = None) -> MixturePlan:
    """Choose jobs per task to follow the configured ratios; deterministic for a seed.

    Per task the ``counts[t]`` candidates of smallest :func:`job_rank` are chosen, and all chosen jobs
    are ordered by their ("order",) rank; both rules are per job, so a planner that sees the
    candidates shard by shard can reproduce them exactly (``pipelines/task_plan.py``).
    """
    available = {t: len(candidates.get(t, [])) for t in config["tasks"]}
    plan = plan_counts(available, config, max_samples, skip_reasons, default_total)
    chosen: list[Job] = []
    for t, n in plan.counts.items():
        pool = sorted(candidates.get(t, []), key=lambda j: (job_rank(seed, j), job_text(j)))
        chosen.extend(pool[:n])
    chosen.sort(key=lambda j: (job_rank(seed, j, "order"), job_text(j)))
    for i, j in enumerate(chosen):
        j.order = i
    plan.jobs = chosen
    return plan

"""Task planning as Beam graphs: nothing that grows with the corpus is held by the launcher or one worker.

The rules are per job or per count (``datasets/plan_parts.py``), so two passes over the mined rows
give the one-process planner's jobs, job order and ``plan.json`` bytes:

1. **Counts** (:func:`count_pass`): every row, cluster and face folder yields its candidate jobs; a
   ``CombineGlobally`` sums candidates per task and rank bucket, and the rows' flags (records,
   duplicates, captioned pairs, art). It writes ``plan.parts/counts.json`` (at most tasks x 65,536
   numbers). The launcher then allocates Table 1's ratios on those counts
   (:func:`datasets.mixture.plan_counts`) and finds each task's cut bucket.
2. **Plan and synthesise** (:class:`PlanJobs`, then ``pipelines/build_tasks.py``'s synthesis): the
   candidates again; those below their task's cut are chosen where they are, the cut bucket is sorted
   per task; an order histogram gives each order bucket its first position; each bucket is sorted
   alone; jobs are grouped by output shard, which writes its part of the plan
   (``plan.parts/jobs-NNNNN.json``), checks its unit manifest (a finished shard is skipped) and
   passes its jobs on. The accounting (kept + rejected = read, per mined row) is a join of the rows,
   the planned keys and the written samples' lineage, summed into ``plan.parts/account.json``.

The launcher then streams the parts into ``plan.json`` (:func:`write_plan_json`). Images reach the
jobs by a semi-join: needed keys are grouped by the mined file that holds them, and each file is read
once for those keys only.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from core import storage, tables
from datasets import build
from datasets import plan_parts as P
from datasets.tasks.base import Job
from pipelines import safe_transforms

PARTS = "plan.parts"


def parts_path(output: str, name: str) -> str:
    return storage.join(output, PARTS, name)


def plan_part(output: str, shard: int) -> str:
    return parts_path(output, f"jobs-{shard:05d}.json")


@dataclass(frozen=True)
class PlanSources:
    """What the workers plan from: file lists and the small side data (styles, face jobs)."""

    files: tuple[str, ...]
    duplicates: tuple[str, ...]
    clusters: tuple[str, ...]
    seed: int
    tasks: tuple[str, ...] | None
    styles: tuple = ()
    depth_available: bool = False
    face_jobs: tuple = ()  # job dicts planned by the launcher from the face folders

    @classmethod
    def of(cls, ins) -> PlanSources:
        """From :class:`datasets.run.Inputs`."""
        where, seed, tasks = ins.where, ins.cfg.seed, ins.tasks
        dup, clu = where.duplicates_table, where.clusters_table
        return cls(files=tuple(ins.files), duplicates=tuple(tables.files(dup)) if dup else (),
                   clusters=tuple(tables.files(clu)) if clu else (), seed=seed,
                   tasks=tuple(tasks) if tasks else None, styles=tuple(ins.styles),
                   depth_available=bool(ins.depth_weights),
                   face_jobs=tuple(j.to_dict() for j in P.face_candidates(ins.faces, seed, tasks)))


class CounterFn(beam.CombineFn):
    """Sums hashable keys (each element counts 1) into one Counter."""

    def create_accumulator(self):
        return Counter()

    def add_input(self, acc, key):
        acc[key] += 1
        return acc

    def merge_accumulators(self, accs):
        out = Counter()
        for a in accs:
            out.update(a)
        return out

    def extract_output(self, acc):
        return dict(acc)


def _light(item):
    fi, path = item
    for ri, r in enumerate(build.iter_light_rows(path)):
        yield r["key"], (fi, ri, r)


def _resolve(element):
    """(key, {"row": [(fi, ri, row)], "dup": [...]}) -> (key, (fi, row, duplicate)): the first row wins."""
    key, g = element
    if g["row"]:
        fi, _, row = min(g["row"], key=lambda t: (t[0], t[1]))
        yield key, (fi, row, bool(g["dup"]))


def _cluster_rows(item):
    ci, path = item
    for ri, cl in enumerate(storage.iter_rows(path)):
        yield (ci, ri), cl


def _members(element):
    cid, cl = element
    for k in dict.fromkeys(cl.get("keys") or []):
        yield k, cid


def _member_rows(element):
    key, g = element
    if g["row"]:
        for cid in g["cid"]:
            yield cid, (key, g["row"][0])


class Candidates(beam.PTransform):
    """mined rows (+ duplicates, clusters, faces) -> {"rows": (key, (file, row, duplicate)),
    "candidates": job dicts, "clusters": one element per cluster row}."""

    def __init__(self, src: PlanSources):
        super().__init__()
        self.src = src

    def expand(self, p):
        src = self.src
        light = p | "Files" >> beam.Create(list(enumerate(src.files))) | "Light" >> beam.FlatMap(_light)
        dups = (p | "DupFiles" >> beam.Create(list(src.duplicates))
                | "DupKeys" >> beam.FlatMap(lambda f: ((r["key"], 1) for r in storage.iter_rows(f, ["key"]))))
        rows = ({"row": light, "dup": dups} | "Dedup" >> beam.CoGroupByKey()
                | "First" >> beam.FlatMap(_resolve))
        plannable = rows | "Plannable" >> beam.Filter(lambda kv: not kv[1][2])
        seed, styles, depth, tasks = src.seed, list(src.styles), src.depth_available, src.tasks
        row_jobs = plannable | "RowJobs" >> beam.FlatMap(
            lambda kv: [j.to_dict() for j in P.row_candidates(kv[0], kv[1][1], seed, styles, depth, tasks)])
        clusters = (p | "ClusterFiles" >> beam.Create(list(enumerate(src.clusters)))
                    | "ClusterRows" >> beam.FlatMap(_cluster_rows))
        members = (
            {"row": plannable | "RowOnly" >> beam.Map(lambda kv: (kv[0], kv[1][1])),
             "cid": clusters | "Members" >> beam.FlatMap(_members)}
            | "JoinMembers" >> beam.CoGroupByKey() | "MemberRows" >> beam.FlatMap(_member_rows)
        )
        cluster_jobs = (
            {"cl": clusters, "m": members} | "ByCluster" >> beam.CoGroupByKey()
            | "ClusterJobs" >> beam.FlatMap(lambda e: [
                j.to_dict() for cl in e[1]["cl"]
                for j in P.cluster_candidates(cl, dict(e[1]["m"]), seed, tasks)])
        )
        faces = p | "FaceJobs" >> beam.Create(list(src.face_jobs))
        jobs = (row_jobs, cluster_jobs, faces) | "AllCandidates" >> beam.Flatten()
        return {"rows": rows, "candidates": jobs, "clusters": clusters}


def _write_json(path: str):
    def write(value):
        storage.atomic_write_bytes(path, json.dumps(value, sort_keys=True).encode())
        return path
    return write


def _count_keys(src: PlanSources, c: dict) -> Any:
    flags = c["rows"] | "Flags" >> beam.FlatMap(lambda kv: [(f,) for f in P.row_flags(kv[1][1], kv[1][2])])
    seed = src.seed
    hist = c["candidates"] | "RankBuckets" >> beam.Map(
        lambda d: ("hist", d["task"], P.bucket(P.job_rank(seed, Job.from_dict(d)))))
    ncl = c["clusters"] | "ClusterCount" >> beam.Map(lambda _: ("clusters",))
    return (flags, hist, ncl) | "CountKeys" >> beam.Flatten()


def counts_doc(counter: dict) -> dict[str, Any]:
    """The counter's tuple keys as ``{"stats": {...}, "hist": {task: {bucket: n}}}``."""
    stats: dict[str, int] = {"records": 0, "duplicates": 0, "pairs": 0, "art": 0, "clusters": 0}
    hist: dict[str, dict[str, int]] = {}
    for key, n in counter.items():
        if key[0] == "hist":
            hist.setdefault(key[1], {})[str(key[2])] = n
        else:
            stats[key[0]] = n
    return {"stats": stats, "hist": hist}


def count_pass(p, src: PlanSources, output: str) -> None:
    """Pass 1: writes ``plan.parts/counts.json``."""
    c = p | "Candidates" >> Candidates(src)
    (_count_keys(src, c) | "Count" >> beam.CombineGlobally(CounterFn()) | "AsDoc" >> beam.Map(counts_doc)
     | "WriteCounts" >> beam.Map(_write_json(parts_path(output, "counts.json"))))


def read_counts(output: str) -> dict[str, Any]:
    doc = json.loads(storage.read_bytes(parts_path(output, "counts.json")))
    doc["hist"] = {t: {int(b): n for b, n in h.items()} for t, h in doc["hist"].items()}
    return doc


def _select(seed: int, cuts: dict):
    def tag(d):
        kind = P.selection(seed, Job.from_dict(d), cuts)
        if kind == "in":
            yield "in", d
        elif kind == "edge":
            yield "edge", (d["task"], d)
    return tag


def _edge_take(seed: int, cuts: dict):
    def take(element):
        task, ds = element
        for j in P.smallest(seed, (Job.from_dict(d) for d in ds), cuts[task][1]):
            yield j.to_dict()
    return take


def _place(seed: int, shard_size: int):
    def place(element, hist):
        b, ds = element
        start = P.offsets(hist)[b]
        for j in P.ordered(seed, (Job.from_dict(d) for d in ds), start):
            yield j.order // shard_size, j.to_dict()
    return place


class ShardPlanFn(beam.DoFn):
    """(shard, job dicts) -> its plan part written; ("job", (order, dict)) per job and ("fp", (shard,
    fingerprint)) when the shard must be (re)written, else ("done", shard)."""

    def __init__(self, output: str, base_fp: dict):
        self.output, self.base_fp = output, base_fp

    def process(self, element):
        from datasets.run import shard_fingerprint, shard_unit

        shard, ds = element
        ds = sorted(ds, key=lambda d: d["order"])
        storage.atomic_write_bytes(plan_part(self.output, shard),
                                   ("[" + ", ".join(P.job_json(d) for d in ds) + "]").encode())
        fp = shard_fingerprint(self.base_fp, ds)
        if storage.unit_done(shard_unit(self.output, shard), fp):
            yield "done", shard
            return
        yield "fp", (shard, fp)
        for d in ds:
            yield "job", (d["order"], d)


def _tagged(tag: str):
    return lambda kv: kv[0] == tag


@dataclass
class Planned:
    """The pending jobs and what the synthesis graph and the accounting need beside them."""

    jobs: Any  # (order, job dict), of shards to write
    fps: Any  # (shard, fingerprint) of shards to write
    done: Any  # shard index of finished shards
    rows: Any  # (key, (file index, row, duplicate))
    chosen: Any  # every chosen job dict (done shards' too)


def plan_jobs(p, src: PlanSources, output: str, cuts: dict, shard_size: int, base_fp: dict) -> Planned:
    """Pass 2 up to the pending jobs (see the module doc)."""
    seed = src.seed
    c = p | "Candidates" >> Candidates(src)
    tagged = c["candidates"] | "Select" >> beam.FlatMap(_select(seed, cuts))
    inside = tagged | "In" >> beam.Filter(_tagged("in")) | "InJob" >> beam.Map(lambda kv: kv[1])
    edge = (tagged | "Edge" >> beam.Filter(_tagged("edge")) | "EdgeJob" >> beam.Map(lambda kv: kv[1])
            | "EdgeByTask" >> beam.GroupByKey() | "EdgeTake" >> beam.FlatMap(_edge_take(seed, cuts)))
    chosen = (inside, edge) | "Chosen" >> beam.Flatten()
    ohist = (chosen | "OrderBucket" >> beam.Map(lambda d: P.order_bucket(seed, Job.from_dict(d)))
             | "OrderHist" >> beam.CombineGlobally(CounterFn()))
    placed = (chosen | "KeyOrderBucket" >> beam.Map(lambda d: (P.order_bucket(seed, Job.from_dict(d)), d))
              | "ByOrderBucket" >> beam.GroupByKey()
              | "Place" >> beam.FlatMap(_place(seed, shard_size), beam.pvalue.AsSingleton(ohist)))
    per_shard = (placed | "ByPlanShard" >> beam.GroupByKey()
                 | "ShardPlan" >> beam.ParDo(ShardPlanFn(output, base_fp)))
    jobs = per_shard | "Pending" >> beam.Filter(_tagged("job")) | "PendingJob" >> beam.Map(lambda kv: kv[1])
    fps = per_shard | "Fps" >> beam.Filter(_tagged("fp")) | "Fp" >> beam.Map(lambda kv: kv[1])
    done = per_shard | "Done" >> beam.Filter(_tagged("done")) | "DoneShard" >> beam.Map(lambda kv: kv[1])
    return Planned(jobs=jobs, fps=fps, done=done, rows=c["rows"], chosen=chosen)


def _read_needed(files: tuple[str, ...]):
    def read(element):
        fi, keys = element
        want = set(keys)
        seen = set()
        for k, data in build.iter_image_rows(files[fi]):
            if k in want and data and k not in seen:
                seen.add(k)
                yield k, data
    return read


def needed_images(planned: Planned, needs, files: tuple[str, ...]):
    """(key, image bytes) of the keys pending jobs need, each mined file read once for its keys."""
    keyfile = planned.rows | "KeyFile" >> beam.Map(lambda kv: (kv[0], kv[1][0]))
    return (
        {"need": needs, "file": keyfile} | "NeedFile" >> beam.CoGroupByKey()
        | "FileOfKey" >> beam.FlatMap(
            lambda e: [(e[1]["file"][0], e[0])] if e[1]["need"] and e[1]["file"] else [])
        | "KeysByFile" >> beam.GroupByKey()
        | "ReadNeeded" >> beam.FlatMap(_read_needed(files))
    )


def _done_lineage(output: str):
    def read(shard):
        m = json.loads(storage.read_bytes(build.shard_paths(output, shard)["manifest"]))
        return [(k, 1) for k in m["lineage"]]
    return read


def _verdict(element):
    key, g = element
    for _, row, dup in g["row"][:1]:
        yield (P.account_reason(bool(g["used"]), dup, bool((row.get("caption") or "").strip()),
                                bool(g["planned"])),)


def account(planned: Planned, manifests, output: str) -> None:
    """Per mined row: kept (in a written sample's lineage) or its reject reason, summed into
    ``plan.parts/account.json``; the number of finished shards skipped into ``skipped.json``."""
    used_new = manifests | "NewLineage" >> beam.FlatMap(lambda m: [(k, 1) for k in m["lineage"]])
    used_old = planned.done | "OldLineage" >> beam.FlatMap(_done_lineage(output))
    used = (used_new, used_old) | "Used" >> beam.Flatten()
    planned_keys = planned.chosen | "PlannedKeys" >> beam.FlatMap(
        lambda d: [(k, 1) for k in Job.from_dict(d).record_keys])
    verdicts = ({"row": planned.rows, "used": used, "planned": planned_keys}
                | "JoinAccount" >> beam.CoGroupByKey() | "Verdict" >> beam.FlatMap(_verdict))
    wrote_account = (verdicts | "Account" >> beam.CombineGlobally(CounterFn())
                     | "AccountDoc" >> beam.Map(account_doc)
                     | "WriteAccount" >> beam.Map(_write_json(parts_path(output, "account.json"))))
    # which shards this run skipped: the summary's, not the plan's (a resumed run's account.json and
    # plan parts are an uninterrupted run's bytes), so a file the launcher reads and deletes
    wrote_done = (planned.done | "DoneShards" >> beam.combiners.Count.Globally()
                  | "WriteDone" >> beam.Map(_write_json(parts_path(output, "skipped.json"))))
    safe_transforms.finish([wrote_account, wrote_done], "AccountDone")  # DaskRunner runs the last only


def account_doc(counter: dict) -> dict[str, Any]:
    """``{read, kept, rejected}`` (``datasets.build.account``'s figures) from the verdict counter."""
    reasons = {k[0]: n for k, n in counter.items()}
    rejected = {r: n for r, n in sorted(reasons.items()) if r != "kept"}
    return {"read": sum(reasons.values()), "kept": reasons.get("kept", 0), "rejected": rejected}


def read_account(output: str) -> tuple[dict[str, Any], int]:
    """(read / kept / rejected as ``datasets.build.account`` gives them, how many finished shards this
    run skipped)."""
    acc = json.loads(storage.read_bytes(parts_path(output, "account.json")))
    skipped_path = parts_path(output, "skipped.json")
    skipped = int(json.loads(storage.read_bytes(skipped_path)))
    storage.FileSystems.delete([skipped_path])
    return acc, skipped


def remove_stale_parts(output: str, n_shards: int) -> None:
    """Plan parts numbered beyond this plan (an earlier, larger run's) would read as part of it."""
    folder = storage.join(output, PARTS)
    stale = [f for f in (storage.list_files(folder, "jobs-*.json") if storage.exists(folder) else [])
             if int(f.rsplit("-", 1)[-1][: -len(".json")]) >= n_shards]
    if stale:
        storage.FileSystems.delete(stale)


def write_plan_json(output: str, summary: dict[str, Any], seed: int, n_shards: int) -> str:
    """``plan.json`` from its parts, streamed (one shard's part in memory at a time)."""
    head, tail = P.plan_json_pieces(summary, seed)
    path = storage.join(output, "plan.json")
    with storage.atomic_open(path) as fh:
        fh.write(head + b"[")
        for i in range(n_shards):
            body = storage.read_bytes(plan_part(output, i))[1:-1]
            if i and body:
                fh.write(b", ")
            fh.write(body)
        fh.write(b"]" + tail)
    return path

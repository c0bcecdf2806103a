"""Building task shards, runner-independent: load inputs, plan the mixture, synthesise one job,
write one shard (+ its manifest and reject rows), and account for every input record.

``pipelines/build_tasks.py`` composes these in Apache Beam; everything here is plain Python.
Inputs (:class:`TaskInputs`): a run folder's ``mined/kept/*.parquet`` and ``clusters/`` (or explicit
folders). Output layout (``OUTPUT``): ``shards/tasks-NNNNN.tar`` with ``manifests/tasks-NNNNN.json`` and
``rejects/tasks-NNNNN.parquet`` beside each, ``plan.json``, ``card.json``, ``card.md``,
``summary.json``. Face photos (``--faces-dir``) are side inputs like the style images.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq

from core import samples as sample_format
from core import storage, tables
from core.cli import InputError
from core.contracts import REJECT_SCHEMA, RunLayout, reject, url_key
from core.safe_files import read_file_bytes
from datasets import shards as shard_io
from datasets.instruction import InvalidSample, Sample, decode_image, encode_image, validate
from datasets.mixture import MixturePlan, load_config, plan_mixture
from datasets.task_config import TOKEN_LIMIT
from datasets.tasks import REGISTRY
from datasets.tasks.base import Job, PlanInputs, TaskSkip, Tools
from datasets.tasks.t2i import is_art

log = logging.getLogger(__name__)

STAGE = "tasks"
LIGHT_COLUMNS = ["key", "url", "caption", "quality", "domain", "width", "height", "read_error"]
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True)
class TaskInputs:
    """Where the tasks stage reads (``core.contracts.RunLayout``; nothing is probed).

    ``mined``: the mining stage's folder (``kept/*.parquet``). ``clusters``: the clustering stage's
    folder (``clusters.parquet``, optional ``duplicates.parquet``), or None for none. A run folder
    gives ``RUN/mined`` and ``RUN/clusters`` (:meth:`of`); the clusters table of a run is optional
    (without it subject and retrieval are skipped, with the reason), one named explicitly must exist.
    """

    mined: str
    clusters: str | None = None
    clusters_given: bool = False

    @classmethod
    def of(cls, run: str | None = None, mined: str | None = None, clusters: str | None = None) -> TaskInputs:
        """From a run folder and/or explicit ``mined`` / ``clusters`` folders (explicit ones win)."""
        layout = RunLayout(run) if run else None
        if mined is None and layout is None:
            raise InputError(
                "the tasks stage needs a run folder (--input RUN) or a mined folder (--mined DIR)"
            )
        return cls(mined=mined or layout.mined, clusters=clusters or (layout.clusters if layout else None),
                   clusters_given=clusters is not None)

    @property
    def kept(self) -> str:
        return RunLayout.kept(self.mined)

    @property
    def clusters_table(self) -> str | None:
        """``CLUSTERS/clusters.parquet``; None when absent (an explicit --clusters must hold it). With
        ``tables.merge`` off only its parts exist: the path still names the table (``core/tables.py``)."""
        if self.clusters is None:
            return None
        path = RunLayout.clusters_table(self.clusters)
        if tables.exists(path):
            return path
        if self.clusters_given:
            raise InputError(f"--clusters {self.clusters}: no clusters.parquet there")
        return None

    @property
    def duplicates_table(self) -> str | None:
        """Clustering's ``duplicates.parquet`` beside ``clusters.parquet``, or None."""
        if self.clusters is None:
            return None
        path = RunLayout.duplicates_table(self.clusters)
        return path if tables.exists(path) else None


def as_inputs(inputs: str | TaskInputs) -> TaskInputs:
    """A :class:`TaskInputs`; a string is a run folder."""
    return inputs if isinstance(inputs, TaskInputs) else TaskInputs.of(run=inputs)


def exclude_duplicates(rows: dict[str, dict[str, Any]], inputs: str | TaskInputs,
                       ) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """(rows without clustering's flagged near-duplicates, the excluded keys).

    Every task draws from the returned rows, so a record that clustering flagged as a copy of
    another (``duplicates.parquet``: ``key`` -> ``duplicate_of``) never becomes a target or a
    context image; its original stays. Without a duplicates table nothing is excluded.
    """
    path = as_inputs(inputs).duplicates_table
    if path is None:
        return rows, set()
    flagged = set(tables.read_table(path, columns=["key"]).column("key").to_pylist())
    excluded = flagged & set(rows)
    return {k: r for k, r in rows.items() if k not in excluded}, excluded


def parquet_files(inputs: str | TaskInputs) -> list[str]:
    """The mined ``kept/*.parquet`` files (none: an empty list)."""
    return storage.list_files(as_inputs(inputs).kept, "*.parquet")


def check_parquet_files(files: list[str], needs: tuple[str, ...], what: str = "mined file") -> None:
    """Each file must be Parquet with the ``needs`` columns: its footer is read here, in the launcher,
    so a broken file is a one-line :class:`InputError` before any worker starts (not a traceback
    from inside the graph)."""
    for f in files:
        try:
            with tables.open_seekable(f) as fh:
                names = pq.ParquetFile(fh).schema_arrow.names
        except Exception as exc:  # noqa: BLE001 - ArrowInvalid, truncated, not Parquet at all
            raise InputError(f"{what} {f} is not a readable Parquet file ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())})") from exc
        missing = [c for c in needs if c not in names]
        if missing:
            raise InputError(f"{what} {f} has no {', '.join(repr(c) for c in missing)} column "
                             f"(columns: {', '.join(names)})")


def check_inputs(files: list[str], inputs: TaskInputs) -> None:
    """The mined files and clustering's tables, checked by their footers (:func:`check_parquet_files`)."""
    check_parquet_files(files, ("key",))
    for path, needs, what in ((inputs.clusters_table, ("keys",), "clusters table"),
                              (inputs.duplicates_table, ("key",), "duplicates table")):
        if path is not None:
            check_parquet_files(tables.files(path), needs, what)


def iter_light_rows(path: str):
    """One mined file's rows with the text/score columns only (no image bytes), in order."""
    pf = pq.ParquetFile(io.BytesIO(storage.read_bytes(path)))
    cols = [c for c in LIGHT_COLUMNS if c in pf.schema_arrow.names]
    for batch in pf.iter_batches(batch_size=1024, columns=cols):
        yield from batch.to_pylist()


def load_light_rows(files: list[str]) -> dict[str, dict[str, Any]]:
    """key -> row with the text/score columns only (no image bytes), in file order (first one wins)."""
    rows: dict[str, dict[str, Any]] = {}
    for f in files:
        for r in iter_light_rows(f):
            rows.setdefault(r["key"], r)
    return rows


def iter_image_rows(path: str):
    """(key, image bytes or None, url) of one Parquet file, batch by batch."""
    from core.contracts import load_image_bytes

    pf = pq.ParquetFile(io.BytesIO(storage.read_bytes(path)))
    cols = [c for c in ("key", "image", "path", "url") if c in pf.schema_arrow.names]
    for batch in pf.iter_batches(batch_size=64, columns=cols):
        for r in batch.to_pylist():
            try:
                data = load_image_bytes(r)
            except Exception:  # noqa: BLE001 - an unreadable path is a missing image
                data = None
            yield r["key"], data


def load_clusters(inputs: str | TaskInputs) -> list[dict[str, Any]]:
    """Rows of ``clusters.parquet`` (none without a clusters table)."""
    path = as_inputs(inputs).clusters_table
    if path is None:
        return []
    return tables.read_table(path).to_pylist()


def _style_phrase(text: str) -> str:
    t = " ".join(text.split()).strip().rstrip(".")
    if t.lower().startswith("in "):
        t = t[3:]
    if t.lower().endswith(" style"):
        t = t[: -len(" style")]
    return t or "the reference style"


def load_styles(style_dir: str | None, max_side: int = 512,
                rejects: list[dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """Style images of a folder: ([{key, path, style}], {key: shrunk JPEG bytes}).

    The style phrase comes from ``metadata.csv`` (columns ``file`` + ``style``) when present,
    else a ``.txt`` beside the image, else the file name. An image that cannot be used (not a
    regular file, too large, undecodable) is appended to ``rejects`` as a reject row of the
    tasks stage (reason ``style_unreadable``) and skipped.
    """
    if not style_dir:
        return [], {}
    meta: dict[str, str] = {}
    csv_path = storage.join(style_dir, "metadata.csv")
    if storage.exists(csv_path):
        for r in csv.DictReader(io.StringIO(storage.read_bytes(csv_path).decode("utf-8"))):
            if r.get("file"):
                meta[os.path.normpath(r["file"])] = r.get("style") or r.get("caption") or ""
    files = [f for f in storage.list_files(style_dir, "**") if f.lower().endswith(IMAGE_EXTS)]
    if not files:
        files = [f for f in storage.list_files(style_dir, "*") if f.lower().endswith(IMAGE_EXTS)]
    styles, data = [], {}
    for f in sorted(set(files)):
        rel = os.path.normpath(os.path.relpath(f, style_dir)) if "://" not in f else f.rsplit("/", 1)[-1]
        phrase = meta.get(rel)
        if phrase is None:
            txt = os.path.splitext(f)[0] + ".txt"
            phrase = storage.read_bytes(txt).decode("utf-8") if storage.exists(txt) else os.path.splitext(
                os.path.basename(f))[0].replace("_", " ")
        data_bytes, error = read_file_bytes(f, root=style_dir)
        try:
            if error:
                raise ValueError(error)
            img = decode_image(data_bytes, max_side)
        except Exception as exc:  # noqa: BLE001 - a broken style image is a counted reject of the stage
            log.warning("style image %s unreadable: %s", f, exc)
            if rejects is not None:
                rejects.append({"key": url_key(rel), "url": f, "stage": "tasks", "reason": "style_unreadable",
                                "detail": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        key = url_key(rel)  # from the path inside the folder: a moved or copied folder keeps its keys
        styles.append({"key": key, "path": f, "style": _style_phrase(phrase)})
        data[key] = encode_image(img, "jpg", quality=92)
    return styles, data


class TokenLimit:
    """Counts text-encoder tokens (MiniLM WordPiece, with [CLS]/[SEP]) of instruction and context texts.

    ``DEFAULT`` (77) is the ``text_encoder.max_len`` of every training config: it covers the longest
    template (the subject/face templates add 36 tokens around the fields, measured by
    ``template_overheads``) plus the longest caption of COCO (32 tokens) and a style phrase, so an
    instruction is never cut silently; a longer one is a counted ``instruction_too_long`` reject.
    Lazy and picklable (the tokenizer loads on first use in each worker).
    """

    DEFAULT = TOKEN_LIMIT

    def __init__(self, limit: int = DEFAULT, model_path: str | None = None):
        self.limit, self.model_path, self._tok = int(limit), model_path, None

    def __getstate__(self):
        return {"limit": self.limit, "model_path": self.model_path}

    def __setstate__(self, state):
        self.__init__(**state)

    def count(self, text: str) -> int:
        if self._tok is None:
            from core.model_packages import HF_LOAD_LOCK

            with HF_LOAD_LOCK:
                from transformers import AutoTokenizer

                from model.text_encoder import minilm_folder

                self._tok = AutoTokenizer.from_pretrained(self.model_path or minilm_folder())
        return len(self._tok(text, add_special_tokens=True, truncation=False, verbose=False)["input_ids"])

    def check(self, sample: Sample) -> int:
        """Longest token count of the sample's texts; InvalidSample when over the limit."""
        longest = 0
        for name, text in [
            ("instruction", sample.instruction),
            *((c.marker, c.text) for c in sample.context),
        ]:
            n = self.count(text)
            if n > self.limit:
                raise InvalidSample("instruction_too_long", f"{name} has {n} tokens > limit {self.limit}")
            longest = max(longest, n)
        return longest


def template_overheads(counter: TokenLimit | None = None) -> dict[str, int]:
    """Most tokens any template of each task adds around its fields (fields left empty)."""
    from datasets import templates as T

    counter = counter or TokenLimit()
    out = {}
    for task in T.available_tasks():
        tpl = T.load(task)
        empty = {f: "" for f in tpl.fields}
        out[task] = max(counter.count(x.format(**empty)) for x in tpl.instructions)
    return out


def candidates(inputs: PlanInputs, seed: int, tasks: list[str] | None = None) -> dict[str, list[Job]]:
    out: dict[str, list[Job]] = {}
    for mod in {id(m): m for m in REGISTRY.values()}.values():
        for name, jobs in mod.plan(inputs, seed).items():
            out[name] = jobs if tasks is None or name in tasks else []
    return out


def skip_reasons(inputs: PlanInputs, tasks: list[str] | None) -> dict[str, str]:
    return skip_reasons_for(
        depth_available=inputs.depth_available,
        has_clusters=bool(inputs.clusters),
        has_art=any(is_art(r) for r in inputs.rows.values()),
        faces={t: bool(p) for t, p in inputs.faces.items()},
        has_styles=bool(inputs.styles),
        tasks=tasks,
    )


def skip_reasons_for(depth_available: bool, has_clusters: bool, has_art: bool, faces: dict[str, bool],
                     has_styles: bool, tasks: list[str] | None) -> dict[str, str]:
    """Why each unbuildable task is skipped, from flags only (a distributed planner counts them)."""
    reasons = {}
    if not depth_available:
        reasons["control_depth"] = (
            "no depth model weights offline (MiDaS/DPT need --depth-weights); never faked"
        )
    if not has_clusters:
        reasons["subject"] = reasons["retrieval"] = "no clusters.parquet in the input"
    if not has_art:
        reasons["t2i_art"] = "no art-domain pairs in the input (mining's domain 'art')"
    if not faces.get("subject_faces"):
        reasons["subject_faces"] = (
            "no face folder (--faces-dir: CelebA-style metadata.csv or one folder per person)"
        )
    if not faces.get("subject_faces_hq"):
        reasons["subject_faces_hq"] = (
            "no high-resolution face folder (--faces-hq-dir, e.g. CelebA-HQ by person)"
        )
    if not has_styles:
        reasons["styled"] = reasons["style_transfer"] = "no style images (--style-dir)"
    for t in REGISTRY:
        if tasks is not None and t not in tasks:
            reasons[t] = "not requested (--tasks)"
    return reasons


def make_plan(inputs: PlanInputs, config: dict[str, Any], seed: int, max_samples: int | None,
              tasks: list[str] | None = None) -> MixturePlan:
    """The mixture plan; N = ``max_samples``, else one sample per captioned input pair."""
    n_pairs = sum(1 for r in inputs.rows.values() if (r.get("caption") or "").strip())
    return plan_mixture(
        candidates(inputs, seed, tasks),
        config,
        seed,
        max_samples,
        skip_reasons(inputs, tasks),
        default_total=n_pairs,
    )


def synthesize(job: Job, images: dict[str, bytes], tools: Tools, seed: int, embedder=None,
               tokens: TokenLimit | None = None):
    """("ok", Sample) or ("rej", reject row with ``task``); never raises for bad input."""
    try:
        sample = REGISTRY[job.task].make(job, images, tools, seed)
        validate(sample)
        if tokens is not None:
            sample.meta["tokens"] = tokens.check(sample)
        if embedder is not None:
            embedder.embed(sample)
        sample.meta["order"] = job.order
        return "ok", sample
    except (TaskSkip, InvalidSample) as exc:
        reason, detail = exc.reason, exc.detail
    except Exception as exc:  # noqa: BLE001 - one bad sample must not take the others down
        reason, detail = "synthesis_error", f"{type(exc).__name__}: {exc}"
    row = reject({"key": job.target_key}, STAGE, reason, f"{job.task}: {detail}")
    return "rej", {**row, "task": job.task}


def warm_up(tools: Tools, tasks: tuple[str, ...] | list[str]) -> None:
    """Load the models ``tasks`` need now (worker setup), so the first batch does not pay for it."""
    need = set(tasks)
    try:
        if need & {"control_edge", "control_sketch"}:
            import numpy as np

            side = max(16, int(tools.control_side or 256))  # one run: onnxruntime's first call is slow
            tools.hed.edges(np.zeros((side * 3 // 4, side, 3), np.uint8))
        if need & {"control_mask", "subject"}:
            tools.masker  # noqa: B018
        if need & {"styled", "style_transfer"}:
            tools.style  # noqa: B018
            tools.quality  # noqa: B018
    except Exception as exc:  # noqa: BLE001 - the jobs report the failure as rejects
        log.warning("model warm-up failed: %s", exc)


def synthesize_batch(jobs: list[Job], images: dict[str, bytes], tools: Tools, seed: int, embedder=None,
                     tokens: TokenLimit | None = None) -> list[tuple[str, Any]]:
    """``synthesize`` for many jobs; batched models run once for the batch first (HED for edge and
    sketch jobs, shared by the edge and sketch jobs of one image)."""
    from datasets.tasks import control

    try:
        control.prepare_batch(jobs, images, tools)
    except Exception as exc:  # noqa: BLE001 - a failed batch falls back to one image at a time
        log.warning("batched control maps failed (%s); computing them one by one", exc)
    try:
        return [synthesize(j, images, tools, seed, embedder, tokens) for j in jobs]
    finally:
        tools.edge_cache.clear()


def shard_paths(output: str, index: int) -> dict[str, str]:
    name = shard_io.shard_name(index)
    stem = name[: -len(".tar")]
    return {"tar": storage.join(output, "shards", name),
            "manifest": storage.join(output, "manifests", f"{stem}.json"),
            "rejects": storage.join(output, "rejects", f"{stem}.parquet")}


def write_shard_group(output: str, index: int, items: list[tuple[str, Any]]) -> dict[str, Any]:
    """Write shard ``index``: rejects parquet and manifest first, the tar last (marks it done)."""
    paths = shard_paths(output, index)
    samples: list[Sample] = sorted((s for kind, s in items if kind == "ok"), key=lambda s: s.meta["order"])
    rejects = sorted(
        (r for kind, r in items if kind == "rej"), key=lambda r: (r["task"], r["key"], r["reason"])
    )
    manifest = {
        "shard": index,
        "samples": {t: n for t, n in sorted(Counter(s.task for s in samples).items())},
        "rejects": {t: dict(sorted(Counter(r["reason"] for r in rejects if r["task"] == t).items()))
                    for t in sorted({r["task"] for r in rejects})},
        "lineage": sorted({k for s in samples for k in s.lineage}),
        "max_tokens": max((int(s.meta.get("tokens", 0)) for s in samples), default=0),
        "ids": [s.sample_id for s in samples],
    }
    storage.write_parquet(
        [{k: r[k] for k in REJECT_SCHEMA.names} for r in rejects], paths["rejects"], REJECT_SCHEMA
    )
    storage.atomic_write_bytes(paths["manifest"], json.dumps(manifest, sort_keys=True).encode("utf-8"))
    sample_format.write_shard(paths["tar"], (shard_io.to_wds(s) for s in samples))
    return manifest


def read_manifests(output: str) -> list[dict[str, Any]]:
    """Manifests of finished shards (a manifest whose tar is missing is unfinished: ignored)."""
    out = []
    for f in storage.list_files(storage.join(output, "manifests"), "*.json"):
        m = json.loads(storage.read_bytes(f))
        if storage.exists(shard_paths(output, m["shard"])["tar"]):
            out.append(m)
    return sorted(out, key=lambda m: m["shard"])


def manifest_totals(output: str) -> tuple[dict[str, int], dict[str, dict[str, int]], int]:
    """(samples per task, rejects per task and reason, longest token count) over the finished shards,
    one manifest at a time (the lineage lists are not kept)."""
    written: Counter[str] = Counter()
    rejects: dict[str, Counter[str]] = defaultdict(Counter)
    longest = 0
    for f in storage.list_files(storage.join(output, "manifests"), "*.json"):
        m = json.loads(storage.read_bytes(f))
        if not storage.exists(shard_paths(output, m["shard"])["tar"]):
            continue
        written.update(m["samples"])
        for t, rs in m["rejects"].items():
            rejects[t].update(rs)
        longest = max(longest, int(m.get("max_tokens", 0)))
    return dict(written), {t: dict(c) for t, c in rejects.items()}, longest


def account(rows: dict[str, dict[str, Any]], plan: MixturePlan, manifests: list[dict[str, Any]],
            duplicates: set[str] | None = None) -> dict[str, Any]:
    """read / kept / rejected-by-reason over input records (kept = in some written sample's lineage);
    ``duplicates``: keys excluded by :func:`exclude_duplicates` (reason ``near_duplicate``)."""
    used = {k for m in manifests for k in m["lineage"]}
    planned = {k for j in plan.jobs for k in j.record_keys}
    rejected: Counter[str] = Counter()
    for key, r in rows.items():
        if key in used:
            continue
        if duplicates and key in duplicates:
            rejected["near_duplicate"] += 1
        elif not (r.get("caption") or "").strip():
            rejected["no_caption"] += 1
        elif key in planned:
            rejected["synthesis_failed"] += 1
        else:
            rejected["not_selected_by_mixture"] += 1
    kept = sum(1 for k in rows if k in used)
    return {"read": len(rows), "kept": kept, "rejected": dict(sorted(rejected.items()))}


def totals(manifests: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    written: Counter[str] = Counter()
    rejects: dict[str, Counter[str]] = defaultdict(Counter)
    for m in manifests:
        written.update(m["samples"])
        for t, rs in m["rejects"].items():
            rejects[t].update(rs)
    return dict(written), {t: dict(c) for t, c in rejects.items()}


__all__ = [
    "load_config",
    "make_plan",
    "synthesize",
    "write_shard_group",
    "read_manifests",
    "account",
    "totals",
]

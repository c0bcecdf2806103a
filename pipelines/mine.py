"""Beam pipeline: decode -> quality score -> domain -> filter, record Parquet in, kept/rejects Parquet out.

    python -m pipelines.mine --input RECORDS(.parquet|folder) --output OUT [--runner FnApiRunner]

Output: ``OUT/kept/<input stem>.parquet`` (base columns + quality parts, domain, domain_scores,
decoded width/height), ``OUT/rejects/<input stem>.parquet`` (REJECT_SCHEMA) and
``OUT/summary.json``. One output pair per input file, written atomically once the whole file is
processed, then its manifest (``OUT/kept/.units/<stem>.parquet.json``: the input's content hash, the
mining config, the code version); on rerun an input is skipped only when its pair and a matching
manifest exist, so a changed input or config redoes it, and outputs of inputs no longer given are
removed. Rows inside each output
are sorted by key, so the same input + config gives the same files. Works on FnApiRunner and
on DirectRunner (``--direct_running_mode=multi_processing``) and on any portable runner.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import time
from collections import Counter
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from core import cli, storage
from core.cli import require, stdout_to_stderr
from core.contracts import REJECT_SCHEMA, schema_for
from mining.config import MiningConfig

STAGE = "mine"
MINING_FIELDS = pa.schema([
    pa.field("quality", pa.float64()), pa.field("quality_technical", pa.float64()),
    pa.field("quality_brisque", pa.float64()), pa.field("quality_learned", pa.float64()),
    pa.field("domain", pa.string()), pa.field("domain_scores", pa.string()),
])
log = logging.getLogger("pipelines.mine")
_MODELS: dict[str, tuple] = {}  # per-process cache: one scorer + classifier per model config


def load_models(cfg: MiningConfig) -> tuple:
    """(QualityScorer, domain classifier) for ``cfg``, loaded once per worker process."""
    from mining.domains import make_classifier
    from mining.quality.scorer import get_scorer

    key = json.dumps([cfg.quality_weights, cfg.use_brisque, cfg.domains, cfg.clip_model, cfg.clip_pretrained])
    if key not in _MODELS:
        _MODELS[key] = (get_scorer(cfg.quality_weights, cfg.use_brisque), make_classifier(cfg))
    return _MODELS[key]


def input_files(path: str) -> list[str]:
    files = storage.list_files(path, "*.parquet")
    if not files:
        raise cli.InputError(f"no record parquet files at {path}")
    return files


def shard_name(path: str) -> str:
    """Output file name for one input file: its stem (+ a short hash of the full path if it has no stem)."""
    base = path.rstrip("/").rsplit("/", 1)[-1]
    stem = base[: -len(".parquet")] if base.endswith(".parquet") else base
    return f"{stem or hashlib.sha1(path.encode()).hexdigest()[:10]}.parquet"


def out_paths(output: str, path: str) -> tuple[str, str]:
    name = shard_name(path)
    return storage.join(output, "kept", name), storage.join(output, "rejects", name)


def unit_fingerprint(path: str, config_json: str) -> dict:
    return storage.fingerprint([path], json.loads(config_json), stage=STAGE)


class ReadRecords(beam.DoFn):
    """One input Parquet file -> (file, row) pairs; files whose outputs match their manifest are skipped."""

    def __init__(self, output: str, batch_size: int, config_json: str = "{}"):
        self.output, self.batch_size, self.config_json = output, batch_size, config_json
        self.read = Metrics.counter(STAGE, "read")
        self.skipped = Metrics.counter(STAGE, "files_skipped")
        self.redone = Metrics.counter(STAGE, "files_stale_redone")

    def process(self, path: str):
        kept, rej = out_paths(self.output, path)
        fp = unit_fingerprint(path, self.config_json)
        if storage.unit_done([kept, rej], fp):
            self.skipped.inc()
            return
        if storage.exists(kept) or storage.exists(rej):
            self.redone.inc()
            log.warning("mine: %s changed (input, config or code) since its outputs were written: redoing it", path)
        # the marker carries the fingerprint, and makes a file with zero rows (or zero kept) still get its outputs
        yield (path, -1), (-1, "marker", fp)
        # Fixed chunks of consecutive rows: model batches (and so every float) do not depend on the runner.
        done = 0
        try:
            foreign = foreign_rejects(path)
            for i, row in enumerate(foreign if foreign is not None else storage.iter_rows(path)):
                self.read.inc()
                done += 1
                yield (path, i // self.batch_size), (i, "reject" if foreign is not None else "record", row)
        except Exception as exc:  # noqa: BLE001 - a truncated or corrupt shard is a named reject, never fatal
            for j, rej in enumerate(unreadable_rejects(path, exc, done)):
                self.read.inc()
                yield (path, -2), (j, "reject", rej)


def chunk_to_batch(item) -> list[tuple[str, tuple[str, Any]]]:
    """((file, chunk), [(row index, kind, row)]) -> the chunk's rows in file order, as a model batch."""
    (path, _), values = item
    return [(path, (kind, rec)) for _, kind, rec in sorted(values, key=lambda v: v[0])]


class MineBatch(beam.DoFn):
    """A batch of (file, record) -> (file, ("kept"|"reject", row)); models load once per worker."""

    def __init__(self, config_json: str):
        self.config_json = config_json
        self.kept = Metrics.counter(STAGE, "kept")
        self.done = 0
        self.t0 = 0.0

    def setup(self):
        self.cfg = MiningConfig.from_dict(json.loads(self.config_json))
        self.scorer, self.classifier = load_models(self.cfg)
        self.t0 = time.time()

    def _reject(self, path, row):
        Metrics.counter(STAGE, f"reject_{row['reason']}").inc()
        return path, ("reject", row)

    def process(self, batch: list[tuple[str, tuple[str, Any]]]):
        from core.decode import Decoded, decode_record
        from mining.domains import label
        from mining.filter import apply_filter

        decoded = []
        for path, (kind, rec) in batch:
            if kind == "marker":
                yield path, (kind, rec)
                continue
            if kind == "reject":  # a whole input file the reader could not use
                yield self._reject(path, rec)
                continue
            out = decode_record(rec, self.cfg)
            if isinstance(out, Decoded):
                decoded.append((path, out))
            else:
                yield self._reject(path, out)
        if decoded:
            images = [d.image for _, d in decoded]
            scores = self.scorer.score(images)
            probs = self.classifier.probs(images, [d.record["caption"] for _, d in decoded])
            labels = label(probs, self.cfg.domains)
            for (path, d), q, (dom, dom_json, best) in zip(decoded, scores, labels):
                # Scores are stored (and filtered) at 6 decimals: BRISQUE's last digits vary with the
                # worker process's threading, and reruns on any runner must give identical files.
                q = {k: round(v, 6) if isinstance(v, float) else v for k, v in q.items()}
                row = dict(d.record, **q, domain=dom, domain_scores=dom_json, domain_score=best)
                kept, rej = apply_filter(row, self.cfg)
                if rej is not None:
                    yield self._reject(path, rej)
                else:
                    kept.pop("domain_score", None)
                    self.kept.inc()
                    yield path, ("kept", kept)
        self.done += len(batch)
        if self.done // 200 != (self.done - len(batch)) // 200:
            rate = self.done / max(time.time() - self.t0, 1e-6)
            log.warning("mine: %d records on this worker (%.1f/s)", self.done, rate)


class WriteShard(beam.DoFn):
    """All rows of one input file -> its kept and rejects Parquet files, sorted by key, atomically."""

    def __init__(self, output: str):
        self.output = output

    def process(self, item):
        path, values = item
        kept = sorted((r for k, r in values if k == "kept"), key=lambda r: r["key"])
        rejects = sorted((r for k, r in values if k == "reject"), key=lambda r: (r["key"], r["reason"]))
        kept_path, rej_path = out_paths(self.output, path)
        storage.write_parquet(kept, kept_path, schema_for(kept, MINING_FIELDS))
        storage.write_parquet(rejects, rej_path, REJECT_SCHEMA)
        fp = next(r for k, r in values if k == "marker")
        storage.finish_unit([kept_path, rej_path], fp)
        yield {"input": path, "kept": len(kept), "rejected": len(rejects)}


def _rows_in(path: str) -> int:
    return pq.ParquetFile(io.BytesIO(storage.read_bytes(path))).metadata.num_rows


REQUIRED_COLUMNS = ("key",)  # plus `image` or `path`: what decode_record needs


def foreign_rejects(path: str) -> list[dict[str, Any]] | None:
    """One ``foreign_schema`` reject per row when the file lacks the record columns, else None."""
    names = set(pq.ParquetFile(io.BytesIO(storage.read_bytes(path))).schema_arrow.names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names] + ([] if {"image", "path"} & names else ["image/path"])
    if not missing:
        return None
    detail = f"{path}: not a record file (no column {', '.join(missing)})"
    return [{"key": f"{shard_name(path)}#row{i}", "url": path, "stage": STAGE, "reason": "foreign_schema",
             "detail": detail} for i in range(_rows_in(path))]


def unreadable_rejects(path: str, exc: Exception, done: int) -> list[dict[str, Any]]:
    """Rejects for the rows of a file that could not be read past row ``done`` (one if it has no footer)."""
    try:
        left = range(done, _rows_in(path))
    except Exception:  # noqa: BLE001 - no readable footer: the file counts as one unit (see _input_rows)
        left = range(0, 1)
    detail = f"{path}: {type(exc).__name__}: {exc}"[:300]
    return [{"key": f"{shard_name(path)}#row{i}", "url": path, "stage": STAGE, "reason": "unreadable_input",
             "detail": detail} for i in left]


def _input_rows(path: str) -> int:
    """Rows an input file counts for: its row count, or 1 for a file that cannot be read at all."""
    try:
        return _rows_in(path)
    except Exception:  # noqa: BLE001 - matches unreadable_reject's single row
        return 1


def summarize(input: str, output: str, metrics: dict[str, int], elapsed: float, cfg: MiningConfig) -> dict:
    """Counts from the files on disk (so skipped, already finished shards are included)."""
    read = kept = 0
    reasons: Counter = Counter()
    outputs = {"kept": storage.join(output, "kept"), "rejects": storage.join(output, "rejects")}
    for f in input_files(input):
        read += _input_rows(f)
        k, r = out_paths(output, f)
        kept += _rows_in(k)
        t = storage.read_parquet(r, columns=["reason"]) if _rows_in(r) else None
        if t is not None:
            reasons.update(t.column("reason").to_pylist())
    rejected = sum(reasons.values())
    summary = {"stage": "mine", "read": read, "kept": kept, "rejected": dict(sorted(reasons.items())),
               "outputs": outputs, "accounted": kept + rejected == read, "metrics": metrics,
               "seconds": round(elapsed, 1), "config": json.loads(cfg.to_json())}
    if not summary["accounted"]:
        raise AssertionError(f"kept {kept} + rejected {rejected} != read {read}")
    storage.atomic_write_bytes(storage.join(output, "summary.json"), json.dumps(summary, indent=2).encode())
    summary["outputs"]["summary"] = storage.join(output, "summary.json")
    return summary


# The mining CLI's historical runner names, mapped onto pipelines.runners' short names.
RUNNER_ALIASES = {"FnApiRunner": "fnapi", "DirectRunner": "direct-mp", "PortableRunner": "portable"}


def remove_orphans(output: str, files: list[str]) -> list[str]:
    """Delete kept/rejects pairs (and manifests) of inputs not in ``files``: the summary and the
    next stages then see only outputs of this run's inputs."""
    want = {shard_name(f) for f in files}
    gone = []
    for sub in ("kept", "rejects"):
        folder = storage.join(output, sub)
        if storage.exists(folder):
            for f in storage.list_files(folder, "*.parquet"):
                if f.rsplit("/", 1)[-1] not in want:
                    storage.remove_unit([f])
                    gone.append(f)
    if gone:
        log.warning("mine: removed %d outputs of inputs no longer given", len(gone))
    return gone


@storage.holds_output_lock
def run(input: str, output: str, runner: str = "FnApiRunner", workers: int = 2,
        beam_args: list[str] | None = None, **options) -> dict:
    """Run the mining stage; ``options`` are :class:`MiningConfig` fields. Returns the summary."""
    cfg = MiningConfig.from_dict(options)
    files = input_files(input)
    remove_orphans(output, files)
    t0 = time.time()
    from pipelines.runners import make_pipeline

    p = make_pipeline(RUNNER_ALIASES.get(runner, runner), beam_args or (), workers=workers)
    _ = (
        p
        | "Files" >> beam.Create(files)
        | "Read" >> beam.ParDo(ReadRecords(output, cfg.batch_size, cfg.to_json()))
        | "Chunks" >> beam.GroupByKey()
        | "Batch" >> beam.Map(chunk_to_batch)
        | "Mine" >> beam.ParDo(MineBatch(cfg.to_json()))
        | "ByFile" >> beam.GroupByKey()
        | "Write" >> beam.ParDo(WriteShard(output))
    )
    result = p.run()
    result.wait_until_finish()
    metrics = {}
    try:
        for c in result.metrics().query()["counters"]:
            metrics[c.key.metric.name] = metrics.get(c.key.metric.name, 0) + int(c.committed or c.attempted or 0)
    except Exception:  # noqa: BLE001 - some runners do not report metrics
        pass
    return summarize(input, output, dict(sorted(metrics.items())), time.time() - t0, cfg)


def main(argv: list[str] | None = None) -> int:
    d = MiningConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--input", required=True, help="record Parquet file or folder of *.parquet")
    ap.add_argument("--output", required=True, help="output folder (kept/, rejects/, summary.json)")
    ap.add_argument("--runner", default="FnApiRunner", help="FnApiRunner, DirectRunner (multi_processing) or any")
    ap.add_argument("--workers", type=int, default=2, help="DirectRunner worker processes")
    ap.add_argument("--min-quality", type=float, default=d.min_quality, help="combined quality threshold")
    ap.add_argument("--min-side", type=int, default=d.min_side, help="minimum decoded short side (px)")
    ap.add_argument("--max-aspect", type=float, default=d.max_aspect, help="maximum long/short side ratio")
    ap.add_argument("--max-pixels", type=int, default=d.max_pixels, help="header pixel limit (bombs)")
    ap.add_argument("--max-caption-chars", type=int, default=d.max_caption_chars, help="caption length limit")
    ap.add_argument("--truncate-long-captions", action="store_true", help="truncate instead of rejecting")
    ap.add_argument("--domains", default=",".join(d.domains), help="comma-separated domain labels")
    ap.add_argument("--allowed-domains", default=None, help="comma-separated allow-list (default: all)")
    ap.add_argument("--min-domain-score", type=float, default=d.min_domain_score, help="min best-domain prob")
    ap.add_argument("--clip-model", default=None, help="open_clip model name (default: offline classifier)")
    ap.add_argument("--clip-pretrained", default=None, help="open_clip pretrained tag or checkpoint path")
    ap.add_argument("--quality-weights", default=None, help="quality head .npz (default: mining/weights/)")
    ap.add_argument("--no-brisque", action="store_true", help="skip BRISQUE (faster)")
    ap.add_argument("--batch-size", type=int, default=d.batch_size, help="images per model call")
    a, beam_args = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING)
    opts = {k: getattr(a, k) for k in ("min_quality", "min_side", "max_aspect", "max_pixels", "max_caption_chars",
                                       "truncate_long_captions", "domains", "allowed_domains", "min_domain_score",
                                       "clip_model", "clip_pretrained", "quality_weights", "batch_size")}
    opts["use_brisque"] = not a.no_brisque
    require(storage.exists(a.input), f"input {a.input} does not exist")
    for name in ("batch_size", "workers", "max_pixels", "max_caption_chars", "min_side"):
        require(getattr(a, name) >= 1, f"--{name.replace('_', '-')} must be >= 1, not {getattr(a, name)}")
    require(a.max_aspect >= 1, f"--max-aspect must be >= 1, not {a.max_aspect}")
    with stdout_to_stderr():  # model loading prints (efficientnet-pytorch): stdout carries only the summary
        summary = run(a.input, a.output, runner=a.runner, workers=a.workers, beam_args=beam_args, **opts)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))

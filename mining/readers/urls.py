"""URL lists downloaded through img2dataset, then read back as records.

Input: a ``.txt`` with one URL per line (blank lines skipped), or a table (CSV/TSV/Parquet/
JSONL/JSON) with a ``url`` column and optional caption column. The rows are first written to
``<work_dir>/urls.parquet`` (with the input row number, the record key, the raw caption bytes
when not UTF-8, and the other columns as JSON), then ``img2dataset.download`` fetches them
into ``<work_dir>/img2dataset`` (webdataset shards, no resizing, original bytes kept,
incremental so a rerun resumes finished shards, wandb off). The output is read by
:mod:`mining.readers.img2dataset_output` and merged with ``urls.parquet`` so every input URL
yields exactly one record: rows = input URLs, failures carry ``read_error``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import io
import json
import os
import sys
import tempfile
import threading
import types
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from core.cli import InputError
from core.contracts import OccurrenceKeys
from core.storage import TMP_MARK, makedirs
from mining.readers import img2dataset_output as i2d_out
from mining.readers import url_guard
from mining.readers.common import (
    DEFAULT_MAX_IMAGE_BYTES,
    ReadStats,
    absolute,
    clean_text,
    log,
    lower_ext,
)
from mining.readers.table_rows import iter_table_rows, open_at, pick_caption

URL_TABLE_SCHEMA = pa.schema([
    pa.field("input_row", pa.int64()),
    pa.field("url", pa.string()),
    pa.field("caption", pa.string()),
    pa.field("caption_raw_hex", pa.string()),  # raw caption bytes when they are not UTF-8
    pa.field("record_key", pa.string()),
    pa.field("input_meta", pa.string()),  # JSON of the other input columns
    pa.field("fetch_url", pa.string()),  # what img2dataset fetches: "" for a refused URL
    pa.field("blocked", pa.string()),  # "reason: detail" of url_guard.check_url, else null
])
DEFAULTS = {"processes": 1, "threads": 16, "timeout": 10, "retries": 0, "shard_samples": 10000,
            "reencode": "none", "user_agent_token": None, "allow_private_addresses": False,
            "max_image_bytes": DEFAULT_MAX_IMAGE_BYTES, "distributor": "multiprocessing",
            "resize_mode": "no", "image_size": 256}
DISTRIBUTORS = ("multiprocessing", "pyspark")  # img2dataset's own; ray is left out (not a dependency)
RESIZE_MODES = ("no", "border", "keep_ratio", "keep_ratio_largest", "center_crop")
# The guard proxy is set through this process's environment: one download at a time per process (a
# Dask worker runs Beam read units in threads).
_DOWNLOAD_LOCK = threading.Lock()


def _local_spark_defaults() -> None:
    """For the local Spark session img2dataset starts when none is active: Spark's Python workers run
    this interpreter (which has img2dataset), and Spark binds to loopback. A session you started
    yourself (a cluster) is used as it is."""
    from pyspark.sql import SparkSession

    if SparkSession.getActiveSession() is None:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def default_work_dir(input_path: str) -> str:
    """A per-input folder under the system temp dir (stable, so reruns resume)."""
    digest = hashlib.sha1(absolute(input_path).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), "mining-readers", digest)


def iter_url_lines(path: str, offset: int = 0) -> Iterator[dict[str, Any]]:
    """``{"url": ...}`` per non-blank line of a URL list (.txt or .txt.gz), streamed (from byte
    ``offset``, a line start: a Beam read unit's, from ``mining.readers.line_marks.line_marks``)."""
    with open_at(path, offset) as fh:
        for line in io.TextIOWrapper(fh, encoding="utf-8", errors="replace"):
            if line.strip():
                yield {"url": line.strip()}


def read_url_list(path: str, work_dir: str | None = None, stats: ReadStats | None = None,
                  limit: int | None = None, **opts: Any) -> Iterator[dict[str, Any]]:
    """Download and read a URL list file (.txt, or a table with a url column)."""
    path = absolute(path)
    if lower_ext(path) in (".txt", ".txt.gz"):
        rows: Iterable[dict[str, Any]] = iter_url_lines(path)
    else:
        rows = iter_table_rows(path)
    if limit is not None:
        rows = (r for n, r in enumerate(rows) if n < limit)
    yield from read_url_rows(rows, path, work_dir=work_dir, stats=stats, **opts)


def read_url_rows(rows: Iterable[dict[str, Any]], input_path: str, work_dir: str | None = None,
                  caption_col: str | None = None, url_col: str = "url", stats: ReadStats | None = None,
                  first_row: int = 0, keys: OccurrenceKeys | None = None,
                  **opts: Any) -> Iterator[dict[str, Any]]:
    """Download ``rows`` (dicts with a url) via img2dataset and yield one record per row.

    A Beam read unit passes its part of the input: rows from input row ``first_row`` (a multiple of
    ``shard_samples``), ``keys`` started with the occurrences before it; its img2dataset shards are
    then named as the whole input's run names them (``shifted_names``), so its records are the loop's.
    """
    work_dir = absolute(work_dir or default_work_dir(input_path)).rstrip("/")
    table_path = FileSystems.join(work_dir, "urls.parquet")
    out_dir = FileSystems.join(work_dir, "img2dataset")
    shard_samples = int(opts.get("shard_samples", DEFAULTS["shard_samples"]))
    allow_private = opts.get("allow_private_addresses", False)
    allow_private = allow_private if isinstance(allow_private, bool) else sorted(allow_private)
    n_rows = write_url_table(rows, table_path, out_dir, caption_col, url_col, shard_samples, allow_private,
                             first_row=first_row, keys=keys)
    n_shards = -(-n_rows // shard_samples)
    if n_shards and _fetchable(table_path) and not finished_shards(out_dir) >= set(range(n_shards)):
        # every fetch (redirects included) goes through the guard proxy: see mining/readers/url_guard.py
        with _DOWNLOAD_LOCK, url_guard.guarded_environment(
            allow_private,
            timeout_s=float(opts.get("timeout", 10)) + 5,
            max_bytes=int(opts.get("max_image_bytes", DEFAULT_MAX_IMAGE_BYTES)),
        ):
            run_img2dataset(table_path, out_dir, **opts)
    yield from merge_with_input(table_path, out_dir, stats, shard_offset=first_row // shard_samples)


def finished_shards(out_dir: str) -> set[int]:
    """Shard ids img2dataset finished (it writes ``NNNNN_stats.json`` last)."""
    if not FileSystems.exists(out_dir):
        return set()
    found = FileSystems.match([FileSystems.join(out_dir, "*_stats.json")])[0].metadata_list
    names = (m.path.rsplit("/", 1)[-1].split("_", 1)[0] for m in found)
    return {int(n) for n in names if n.isdigit()}


def write_url_table(rows: Iterable[dict[str, Any]], table_path: str, out_dir: str,
                    caption_col: str | None = None, url_col: str = "url", shard_samples: int = 10000,
                    allow_private: bool | list[str] = False, first_row: int = 0,
                    keys: OccurrenceKeys | None = None) -> int:
    """Write the normalised input atomically; a changed input (or shard size) clears stale output.
    Rows are numbered from ``first_row``; returns how many were written."""
    makedirs(FileSystems.split(table_path)[0])
    tmp = f"{table_path}{TMP_MARK}{os.getpid()}-{threading.get_ident()}"
    keys, n, batch = keys if keys is not None else OccurrenceKeys(), 0, []
    schema = URL_TABLE_SCHEMA.with_metadata({"shard_samples": str(shard_samples),
                                             "allow_private_addresses": json.dumps(allow_private)})
    with FileSystems.create(tmp) as fh, pq.ParquetWriter(fh, schema, compression="zstd") as writer:
        for row in rows:
            url = clean_text(row.get(url_col)) or ""
            caption, used = pick_caption(row, caption_col)
            raw_hex = None
            if isinstance(caption, bytes):
                try:
                    caption = caption.decode("utf-8")
                except UnicodeDecodeError:
                    raw_hex, caption = caption.hex(), caption.decode("utf-8", "replace")
            extra = {k: clean_text(v) for k, v in row.items() if k not in (url_col, used)}
            refusal = url_guard.check_url(url, allow_private)
            batch.append({"input_row": first_row + n, "url": url,
                          "caption": caption if caption is None else str(caption),
                          "caption_raw_hex": raw_hex, "record_key": keys(url),
                          "input_meta": json.dumps(extra, sort_keys=True, default=str),
                          "fetch_url": "" if refusal else url,
                          "blocked": f"{refusal[0]}: {refusal[1]}"[:300] if refusal else None})
            n += 1
            if len(batch) >= 4096:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    if FileSystems.exists(table_path) and _sha256(tmp) == _sha256(table_path):
        FileSystems.delete([tmp])  # same input: keep img2dataset's finished shards (resume)
        return n
    if FileSystems.exists(out_dir):
        log.warning("input changed: clearing previous img2dataset output %s", out_dir)
        FileSystems.delete([out_dir])
    if FileSystems.exists(table_path):
        FileSystems.delete([table_path])
    FileSystems.rename([tmp], [table_path])
    return n


def run_img2dataset(table_path: str, out_dir: str, processes: int = 1, threads: int = 16, timeout: int = 10,
                    retries: int = 0, shard_samples: int = 10000, reencode: str = "none",
                    user_agent_token: str | None = None, distributor: str = "multiprocessing",
                    resize_mode: str = "no", image_size: int = 256, **_: Any) -> None:
    """``img2dataset.download`` with original bytes kept (see ``reencode``) and incremental resume.

    reencode: ``none`` keeps the downloaded bytes exactly (img2dataset's disable_all_reencoding;
    its width/height/original_* stay null, the record's size comes from the header), ``skip``
    decodes to check and measure, re-encoding only non-JPEG images. ``resize_mode`` other than
    ``no`` (img2dataset's modes, to ``image_size`` px) re-encodes every image, whatever ``reencode``
    says; the original size stays in ``source_meta`` (img2dataset's ``original_width``/``height``).
    ``distributor``: img2dataset's ``multiprocessing`` (``processes`` local processes) or ``pyspark``
    (the active Spark session, or a local one with ``processes`` cores; needs ``pyspark`` and Java).
    """
    import img2dataset

    i2d_main = importlib.import_module("img2dataset.main")  # the package re-exports a function `main`

    if reencode not in ("none", "skip"):
        raise ValueError(f"reencode must be 'none' or 'skip', not {reencode!r}")
    if distributor not in DISTRIBUTORS:
        raise ValueError(f"distributor must be one of {', '.join(DISTRIBUTORS)}, not {distributor!r}")
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}, not {resize_mode!r}")
    if distributor == "pyspark" and importlib.util.find_spec("pyspark") is None:
        raise InputError("distributor pyspark needs pyspark: pip install 'pyspark==3.5.*' (and Java 17)")
    if distributor == "pyspark":
        _local_spark_defaults()
    keep_bytes = resize_mode == "no" and reencode == "none"
    with _no_signal_handler(i2d_main):
        img2dataset.download(
            url_list=table_path, input_format="parquet", url_col="fetch_url", caption_col="caption",
            output_folder=out_dir, output_format="webdataset", processes_count=processes,
            thread_count=threads, timeout=timeout, retries=retries, number_sample_per_shard=shard_samples,
            resize_mode=resize_mode, image_size=image_size, disable_all_reencoding=keep_bytes,
            skip_reencode=resize_mode == "no" and reencode == "skip", distributor=distributor,
            save_additional_columns=list(i2d_out.OWN_COLUMNS), enable_wandb=False,
            incremental_mode="incremental", compute_hash="sha256", extract_exif=True,
            user_agent_token=user_agent_token)


@contextlib.contextmanager
def _no_signal_handler(module: types.ModuleType):
    """img2dataset installs a SIGINT handler (main thread only): keep the caller's handler, work in
    threads."""
    original = module.signal
    module.signal = types.SimpleNamespace(signal=lambda *a, **k: None, SIGINT=original.SIGINT)
    try:
        yield
    finally:
        module.signal = original


def merge_with_input(
    table_path: str, out_dir: str, stats: ReadStats | None = None, shard_offset: int = 0
) -> Iterator[dict[str, Any]]:
    """img2dataset's records in input order, plus a failure record for any input row it lost.

    A row the guard refused reached img2dataset as an empty URL; its record is the refusal, and
    img2dataset's failure for it is not counted in ``stats`` (so a refused row counts once, whether or
    not img2dataset ran: a Beam read unit of refused rows only does not run it)."""
    i2d_stats = _RefusedUncounted(stats) if stats is not None else None
    out = (i2d_out.read_output(out_dir, stats=i2d_stats, shard_offset=shard_offset)
           if i2d_out.is_output_folder(out_dir) else iter(()))
    inputs = _iter_input(table_path)
    pending = next(inputs, None)
    for rec in out:
        row = json.loads(rec["source_meta"]).get("input_row")
        while pending is not None and row is not None and pending["input_row"] < row:
            yield _lost(pending, stats)
            pending = next(inputs, None)
        if pending is not None and pending["input_row"] == row:
            if pending["blocked"]:  # refused before download: img2dataset only saw an empty URL
                rec = _lost(pending, stats)
            pending = next(inputs, None)
        yield rec
    while pending is not None:
        yield _lost(pending, stats)
        pending = next(inputs, None)


class _RefusedUncounted:
    """Passes img2dataset's counts on to ``stats`` but those of empty URLs (only a refused row is one)."""

    def __init__(self, stats: ReadStats):
        self.stats = stats

    def add(self, name: str, example: str | None = None, n: int = 1) -> None:
        if example != "":
            self.stats.add(name, example, n)


def _iter_input(table_path: str) -> Iterator[dict[str, Any]]:
    with FileSystems.open(table_path, compression_type="uncompressed") as fh:
        for batch in pq.ParquetFile(fh).iter_batches(batch_size=1024):
            yield from batch.to_pylist()


def _lost(row: dict[str, Any], stats: ReadStats | None) -> dict[str, Any]:
    error = row.get("blocked") or "download_failed: no img2dataset output row"
    if stats is not None:
        stats.add(error.split(":", 1)[0], row["url"])
    meta = json.loads(row["input_meta"] or "{}")
    meta["input_row"] = row["input_row"]
    caption = bytes.fromhex(row["caption_raw_hex"]) if row["caption_raw_hex"] else row["caption"]
    return i2d_out.missing_row_record(row["url"], row["record_key"], caption, meta, error)


def _fetchable(table_path: str) -> int:
    """Rows of the URL table that the guard let through (none: img2dataset need not start)."""
    with FileSystems.open(table_path, compression_type="uncompressed") as fh:
        return pq.read_table(fh, columns=["blocked"]).column("blocked").null_count


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with FileSystems.open(path, compression_type="uncompressed") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

"""``write_records``: any input -> ``records-NNNNN.parquet`` shards (RECORD_SCHEMA), resumable.

Records stream from :func:`read_any` in deterministic order and are cut into shards of
``shard_size`` rows; each shard is written atomically with :mod:`core.storage` unless the file
already holds exactly those bytes (a rerun of the same input rewrites nothing; a rerun after the
input changed replaces the shards that changed and deletes shards beyond the new count). Rows
the reader could not fill (``read_error`` set) are kept in the shards so later stages count
them as rejects; the summary reports them under ``rejected`` by reason code.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from tqdm import tqdm

from core import storage
from core.contracts import RECORD_SCHEMA, to_table
from mining.readers.common import ReadStats, absolute
from mining.readers.dispatch import detect_kind, read_any

SHARD_PATTERN = "records-{:05d}.parquet"
SUMMARY_NAME = "read_summary.json"


class ShardWriter:
    """Cuts records into ``records-NNNNN.parquet`` shards of ``shard_size`` from shard ``first_shard``
    on (a Beam read unit starts at its first record's shard; the local loop at 0), each written
    atomically unless the file already holds those bytes; counts what it wrote and why rows failed."""

    def __init__(self, output_dir: str, shard_size: int, first_shard: int = 0):
        self.output_dir, self.shard_size, self.next_shard = output_dir, shard_size, first_shard
        self.read, self.errors, self.written, self.skipped = 0, Counter(), 0, 0
        self.shards: list[str] = []
        self.buffer: list[dict[str, Any]] = []

    def add(self, rec: dict[str, Any]) -> None:
        self.read += 1
        if rec.get("read_error"):
            self.errors[rec["read_error"].split(":", 1)[0]] += 1
        self.buffer.append(rec)
        if len(self.buffer) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        path = storage.join(self.output_dir, SHARD_PATTERN.format(self.next_shard))
        self.next_shard += 1
        self.shards.append(path)
        data = storage.table_to_parquet_bytes(to_table(self.buffer, RECORD_SCHEMA))
        if storage.write_if_changed(path, data):
            self.written += 1
        else:
            self.skipped += 1
        self.buffer.clear()


def prepare_output(output_dir: str, shard_size: int, work_dir: str | None) -> tuple[str, str]:
    """(absolute output folder, created; the download folder: ``<output>/_download`` by default)."""
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    output_dir = absolute(output_dir).rstrip("/")
    storage.makedirs(output_dir)
    return output_dir, work_dir or storage.join(output_dir, "_download")


def finish(input: str, output_dir: str, kind: str, shard_size: int, opts: dict[str, Any], read: int,
           errors: Counter, shards: list[str], written: int, skipped: int, stats: ReadStats,
           seconds: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Delete shards of an earlier, longer input, write ``read_summary.json`` and return the summary
    (the local loop and the Beam graph, ``pipelines/read.py``, both end here; ``extra``, how the run
    went, e.g. the graph's unit count, is returned but not written, so the file is the same for both)."""
    stale = [f for f in storage.list_files(output_dir, "records-*.parquet") if f not in set(shards)]
    if stale:  # shards of an earlier, longer input
        storage.FileSystems.delete(stale)
    summary = {
        "stage": "read",
        "kind": kind,
        "input": input,
        "read": read,
        "kept": read - sum(errors.values()),
        "rejected": dict(sorted(errors.items())),
        "outputs": {"records": output_dir},
        "shards": len(shards),
        "shards_written": written,
        "shards_skipped": skipped,
        "reader_stats": stats.as_dict(),
        **(extra or {}),
        "seconds": round(seconds, 3),
        # the options that ran (ReadersConfig's, as given to read_any), like every stage's summary
        "config": json.loads(
            json.dumps({"shard_size": shard_size, "kind": kind, **opts}, sort_keys=True, default=str)
        ),
    }
    on_disk = {k: v for k, v in summary.items() if k != "seconds" and k not in (extra or {})}
    storage.atomic_write_bytes(storage.join(output_dir, SUMMARY_NAME),
                               json.dumps(on_disk, indent=2, sort_keys=True).encode())
    return summary


@storage.holds_output_lock(arg="output_dir")
def write_records(input: str, output_dir: str, shard_size: int = 1000, work_dir: str | None = None,
                  kind: str | None = None, **opts: Any) -> dict[str, Any]:
    """Read ``input`` and write record shards to ``output_dir``; returns the stage summary.

    ``work_dir`` (downloads of URL inputs) defaults to ``<output_dir>/_download``; other
    options go to :func:`read_any`. One process, one loop: ``pipelines/read.py`` is the same
    output from a Beam graph.
    """
    output_dir, work_dir = prepare_output(output_dir, shard_size, work_dir)
    kind = kind or detect_kind(input)
    stats = ReadStats()
    start = time.perf_counter()
    out = ShardWriter(output_dir, shard_size)
    records = read_any(input, work_dir=work_dir, stats=stats, kind=kind, **opts)
    for rec in tqdm(records, desc=f"read {kind}", unit="rec", disable=None):
        out.add(rec)
    out.flush()
    return finish(input, output_dir, kind, shard_size, opts, out.read, out.errors, out.shards, out.written,
                  out.skipped, stats, time.perf_counter() - start)

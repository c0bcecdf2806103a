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


@storage.holds_output_lock(arg="output_dir")
def write_records(input: str, output_dir: str, shard_size: int = 1000, work_dir: str | None = None,
                  kind: str | None = None, **opts: Any) -> dict[str, Any]:
    """Read ``input`` and write record shards to ``output_dir``; returns the stage summary.

    ``work_dir`` (downloads of URL inputs) defaults to ``<output_dir>/_download``; other
    options go to :func:`read_any`.
    """
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    output_dir = absolute(output_dir).rstrip("/")
    storage.makedirs(output_dir)
    work_dir = work_dir or storage.join(output_dir, "_download")
    kind = kind or detect_kind(input)
    stats = ReadStats()
    start = time.perf_counter()
    read, errors, written, skipped, shards = 0, Counter(), 0, 0, []
    buffer: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal written, skipped
        path = storage.join(output_dir, SHARD_PATTERN.format(len(shards)))
        shards.append(path)
        if storage.write_if_changed(path, storage.table_to_parquet_bytes(to_table(buffer, RECORD_SCHEMA))):
            written += 1
        else:
            skipped += 1
        buffer.clear()

    records = read_any(input, work_dir=work_dir, stats=stats, kind=kind, **opts)
    for rec in tqdm(records, desc=f"read {kind}", unit="rec", disable=None):
        read += 1
        if rec.get("read_error"):
            errors[rec["read_error"].split(":", 1)[0]] += 1
        buffer.append(rec)
        if len(buffer) >= shard_size:
            flush()
    if buffer:
        flush()
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
        "seconds": round(time.perf_counter() - start, 3),
        # the options that ran (ReadersConfig's, as given to read_any), like every stage's summary
        "config": json.loads(
            json.dumps({"shard_size": shard_size, "kind": kind, **opts}, sort_keys=True, default=str)
        ),
    }
    storage.atomic_write_bytes(storage.join(output_dir, SUMMARY_NAME),
                               json.dumps({k: v for k, v in summary.items() if k != "seconds"},
                                          indent=2, sort_keys=True).encode())
    return summary

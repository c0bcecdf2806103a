"""The mining stage's per-file steps, shared by the Beam graph and the local path.

One input record file is one unit: its outputs are ``OUT/kept/<stem>.parquet`` and
``OUT/rejects/<stem>.parquet`` (:func:`out_paths`), written together by :func:`write_outputs` with
their manifest. A file without the columns ``MineStage`` reads gives ``foreign_schema`` rejects, an
unreadable one ``unreadable_input`` rejects, so every row still counts. :func:`summarize` counts
from the files on disk and checks kept + rejected = read. ``pipelines/mine.py`` wires these into
Beam; ``bench/pipeline_e2e.py`` runs them with ``core.stage.run_local``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import Counter
from typing import Any

import pyarrow.parquet as pq

from core import cli, storage
from core import config as cfgsys
from core.contracts import MINING_FIELDS, REJECT_SCHEMA, schema_for
from mining.config import MiningConfig
from mining.stage import MineStage

STAGE = "mine"
log = logging.getLogger("mining.run")


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


def write_outputs(output: str, path: str, values: list) -> dict[str, Any]:
    """All ("kept"|"reject"|"marker", row) items of one input file -> its kept and rejects Parquet,
    sorted by key, atomically, then the unit manifest (the marker carries its fingerprint)."""
    kept = sorted((r for k, r in values if k == "kept"), key=lambda r: r["key"])
    rejects = sorted((r for k, r in values if k == "reject"), key=lambda r: (r["key"], r["reason"]))
    kept_path, rej_path = out_paths(output, path)
    storage.write_parquet(kept, kept_path, schema_for(kept, MINING_FIELDS))
    storage.write_parquet(rejects, rej_path, REJECT_SCHEMA)
    fp = next(r for k, r in values if k == "marker")
    storage.finish_unit([kept_path, rej_path], fp)
    return {"input": path, "kept": len(kept), "rejected": len(rejects)}


def _rows_in(path: str) -> int:
    return pq.ParquetFile(io.BytesIO(storage.read_bytes(path))).metadata.num_rows


def foreign_rejects(path: str) -> list[dict[str, Any]] | None:
    """One ``foreign_schema`` reject per row when the file lacks the columns the stage reads, else None."""
    names = pq.ParquetFile(io.BytesIO(storage.read_bytes(path))).schema_arrow.names
    missing = MineStage().missing_columns(names)
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
               "seconds": round(elapsed, 1), "config": cfgsys.to_dict(cfg)}
    if not summary["accounted"]:
        raise AssertionError(f"kept {kept} + rejected {rejected} != read {read}")
    storage.atomic_write_bytes(storage.join(output, "summary.json"), json.dumps(summary, indent=2).encode())
    summary["outputs"]["summary"] = storage.join(output, "summary.json")
    return summary


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

"""Atomic, resumable file output on any Beam filesystem (local, gs://, s3://, hdfs://).

Every output file is written to a temporary name beside its destination and renamed into
place only when complete, so a reader never sees a partial file and a killed run leaves
only ``*.tmp-*`` debris that the next run ignores and overwrites.
"""

from __future__ import annotations

import io
import os
import signal
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from mining import objectstore
from mining.schema import to_table

TMP_MARK = ".tmp-"
# Fault injection for the kill-and-resume tests: IIDATA_KILL_AT="<phase>:<n>[:<substring>]" makes
# this process SIGKILL itself at its n-th atomic write (counting only paths containing <substring>),
# phase "before_rename" (temp file complete, not yet renamed) or "after_rename" (file in place).
# Unset in normal runs.
KILL_ENV = "IIDATA_KILL_AT"
WRITE_LOG_ENV = "IIDATA_WRITE_LOG"  # if set, every finished atomic write appends its path to this file
_writes = {"before_rename": 0, "after_rename": 0}


def _maybe_die(phase: str, path: str) -> None:
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    want, n, substring = (spec.split(":", 2) + ["", ""])[:3]
    if want != phase or substring not in path:
        return
    _writes[phase] += 1
    if _writes[phase] == int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def exists(path: str) -> bool:
    """A file, or a folder: on object stores a prefix with objects under it (see mining/objectstore.py)."""
    return objectstore.exists(path)


def makedirs(path: str) -> None:
    if not FileSystems.exists(path):
        try:
            FileSystems.mkdirs(path)
        except OSError:  # created concurrently
            pass


def join(base: str, *parts: str) -> str:
    return FileSystems.join(base, *parts)


def atomic_write_bytes(path: str, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically (temp file + rename); returns ``path``."""
    parent = FileSystems.split(path)[0]
    if parent:
        makedirs(parent)
    tmp = f"{path}{TMP_MARK}{uuid.uuid4().hex[:12]}"
    with FileSystems.create(tmp) as fh:
        fh.write(data)
    _maybe_die("before_rename", path)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])
    if os.environ.get(WRITE_LOG_ENV):
        with open(os.environ[WRITE_LOG_ENV], "a") as log:
            log.write(path + "\n")
    _maybe_die("after_rename", path)
    return path


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path) as fh:
        return fh.read()


def table_to_parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def write_parquet(rows: Iterable[dict[str, Any]] | pa.Table, path: str, schema: pa.Schema | None = None) -> str:
    """Write rows (or a table) as one Parquet file, atomically."""
    table = rows if isinstance(rows, pa.Table) else to_table(rows, schema)
    return atomic_write_bytes(path, table_to_parquet_bytes(table))


def read_parquet(path: str, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file, or every ``*.parquet`` file in a folder (sorted), as one table."""
    files = list_files(path, "*.parquet")
    tables = [pq.read_table(io.BytesIO(read_bytes(f)), columns=columns) for f in files]
    if not tables:
        raise FileNotFoundError(f"no parquet files at {path}")
    return pa.concat_tables(tables, promote_options="default")


def iter_rows(path: str, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Rows of a Parquet file or folder as dicts, file by file, batch by batch."""
    for f in list_files(path, "*.parquet"):
        pf = pq.ParquetFile(io.BytesIO(read_bytes(f)))
        for batch in pf.iter_batches(batch_size=256, columns=columns):
            yield from batch.to_pylist()


def list_files(path: str, pattern: str = "*") -> list[str]:
    """``path`` itself if it is a file, else the files under it matching ``pattern``, sorted.

    Temporary files left by killed writers are never listed.
    """
    if FileSystems.exists(path) and not _is_dir(path):
        return [path]
    result = FileSystems.match([FileSystems.join(path, pattern)])[0]
    names = sorted(m.path for m in result.metadata_list)
    return [n for n in names if TMP_MARK not in n]


def _is_dir(path: str) -> bool:
    return objectstore.is_dir(path)

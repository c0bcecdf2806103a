"""The clusters / duplicates tables as sorted parts or as one merged file, and the one way to read them.

The clustering graph writes each table as N part files (``RunLayout.table_part``): every row goes to
the part its sort key (``TABLE_SORT_KEYS``) hashes to, and each part is sorted, so a worker holds one
part (about rows / N), never the table. The launcher then merges the parts into the single
``clusters.parquet`` / ``duplicates.parquet`` that users and scorers read, by a streaming k-way merge
that holds one row group per part plus one output row group (:func:`merge`): the same rows, order and
schema as writing the sorted table in one go, and the same bytes while the table fits one output row
group (``tables.row_group_rows``; pyarrow's own default, 1,048,576, gives the same bytes at any size).

With ``tables.merge`` off the parts stay where they are. Every in-repo consumer reads through
:func:`exists` / :func:`read_table` / :func:`iter_rows` with the merged file's path: when that file is
absent they read its parts instead, in the same order.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import re
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core import storage
from core.contracts import TABLE_SORT_KEYS, RunLayout, to_table

PART_ROW_GROUP = 1024  # rows per row group of a part file: what the merge holds per part
MERGED_ROW_GROUP = 131072  # default rows per row group of a merged file (tables.row_group_rows)
BATCH = 256  # rows turned into dicts at a time when streaming
_SALT = b"table-part:"


class IncompleteTable(FileNotFoundError):
    """A table's parts do not form one complete set (a lost sink, or debris of another run)."""


def split_path(path: str) -> tuple[str, str]:
    """``FOLDER/clusters.parquet`` -> (``FOLDER``, ``clusters``)."""
    folder, name = path.rstrip("/").rsplit("/", 1) if "/" in path.rstrip("/") else (".", path)
    return folder, name[: -len(".parquet")] if name.endswith(".parquet") else name


def sort_key(path: str) -> str:
    return TABLE_SORT_KEYS[split_path(path)[1]]


def part_count(rows: int, rows_per_part: int) -> int:
    """N for a table of ``rows`` rows: parts of about ``rows_per_part`` rows, at least one."""
    return max(1, math.ceil(rows / rows_per_part))


def part_index(key: str, count: int) -> int:
    """The part a row with sort key ``key`` goes to (a stable hash: the same on every run and worker)."""
    h = hashlib.sha1(_SALT + key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(h[:8], "big") % count


def write_part(rows: Iterable[dict], path: str, index: int, count: int, schema: pa.Schema) -> str:
    """One part of the table at ``path`` (its merged file's path), sorted, written atomically in row
    groups of :data:`PART_ROW_GROUP` rows."""
    folder, table = split_path(path)
    out = RunLayout.table_part(folder, table, index, count)
    write_sorted(sorted(rows, key=itemgetter(TABLE_SORT_KEYS[table])), out, schema, PART_ROW_GROUP)
    return out


def write_sorted(rows: Iterable[dict], path: str, schema: pa.Schema, row_group_rows: int) -> str:
    """Stream already-sorted ``rows`` into one parquet file at ``path`` (atomic), ``row_group_rows``
    rows per row group, holding one row group as Arrow plus :data:`BATCH` rows as dicts. The bytes equal
    ``storage.write_parquet`` of the same rows while they fit one row group (that writes pyarrow's
    default row groups)."""
    with storage.atomic_open(path) as fh:
        writer = pq.ParquetWriter(fh, schema, compression="zstd")
        group: list[pa.Table] = []
        n_group, wrote, batch = 0, False, []

        def flush_batch():
            nonlocal n_group, batch
            if batch:
                group.append(to_table(batch, schema))
                n_group += len(batch)
                batch = []

        for row in rows:
            batch.append(row)
            if len(batch) >= BATCH or n_group + len(batch) >= row_group_rows:
                flush_batch()
                if n_group >= row_group_rows:
                    writer.write_table(_contiguous(group), row_group_size=row_group_rows)
                    group, n_group, wrote = [], 0, True
        flush_batch()
        if group or not wrote:  # an empty table still gets its (empty) row group, as write_table does
            writer.write_table(_contiguous(group) if group else to_table([], schema),
                               row_group_size=row_group_rows)
        writer.close()
    return path


def _contiguous(group: list[pa.Table]) -> pa.Table:
    """One row group as one chunk per column: the parquet writer's batches, pages and dictionary
    fallback then fall where a one-shot write of the same rows puts them (same bytes)."""
    return pa.concat_tables(group).combine_chunks()


_PART = re.compile(r"-(\d{5,})-of-(\d{5,})\.parquet$")


def part_files(path: str) -> list[str]:
    """The parts of the table whose merged file is ``path``, in index order; [] when it has none.
    Raises :class:`IncompleteTable` when some are missing or two part counts are mixed."""
    folder, table = split_path(path)
    parts = RunLayout.table_parts(folder)
    files = storage.list_files(parts, f"{table}-*-of-*.parquet") if storage.exists(parts) else []
    found: dict[int, str] = {}
    counts = set()
    for f in files:
        m = _PART.search(f.rsplit("/", 1)[-1])
        if m and f.rsplit("/", 1)[-1].startswith(f"{table}-"):
            found[int(m.group(1))] = f
            counts.add(int(m.group(2)))
    if not found:
        return []
    if len(counts) != 1 or sorted(found) != list(range(next(iter(counts)))):
        raise IncompleteTable(f"{parts}: the parts of {table} are incomplete or mixed "
                              f"({len(found)} files, counts {sorted(counts)})")
    return [found[i] for i in sorted(found)]


def exists(path: str) -> bool:
    """The merged file, or a complete set of its parts."""
    if storage.exists(path):
        return True
    try:
        return bool(part_files(path))
    except IncompleteTable:
        return False


def _require_parts(path: str) -> list[str]:
    files = part_files(path)
    if not files:
        parts = RunLayout.table_parts(split_path(path)[0])
        raise FileNotFoundError(f"no {path} and no parts of it in {parts}")
    return files


def files(path: str) -> list[str]:
    """The table's files: the merged file, else its parts (for readers that take them one by one)."""
    return [path] if storage.exists(path) else _require_parts(path)


def read_table(path: str, columns: list[str] | None = None) -> pa.Table:
    """The whole table (merged file, else its parts in the merged order)."""
    if storage.exists(path):
        return storage.read_parquet(path, columns=columns)
    key = sort_key(path)
    cols = None if columns is None else list(dict.fromkeys([*columns, key]))
    tables = [storage.read_parquet(f, columns=cols) for f in _require_parts(path)]
    table = pa.concat_tables(tables)
    table = table.take(pc.sort_indices(table, [(key, "ascending")]))  # stable: ties keep part order
    return table if columns is None else table.select(columns)


def open_seekable(path: str):
    """A seekable binary stream (parquet reads the footer, then one row group at a time)."""
    if "://" not in path:
        return open(path, "rb")
    from apache_beam.io.filesystem import CompressionTypes

    return storage.FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def iter_row_groups(path: str, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """One file's row groups, one at a time."""
    with open_seekable(path) as fh:
        pf = pq.ParquetFile(fh)
        for g in range(pf.num_row_groups):
            yield pf.read_row_group(g, columns=columns)


def _rows(path: str, columns: list[str] | None) -> Iterator[dict[str, Any]]:
    for group in iter_row_groups(path, columns):
        for batch in group.to_batches(max_chunksize=BATCH):
            yield from batch.to_pylist()


def iter_rows(path: str, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The table's rows in order, streaming: the merged file row group by row group, else a k-way
    merge of its parts (one row group per part in memory)."""
    if storage.exists(path):
        yield from _rows(path, columns)
        return
    key = sort_key(path)
    cols = None if columns is None else list(dict.fromkeys([*columns, key]))
    merged = heapq.merge(*(_rows(f, cols) for f in _require_parts(path)), key=itemgetter(key))
    if columns is None or key in columns:
        yield from merged
    else:
        for row in merged:
            yield {c: row[c] for c in columns}


def merge(path: str, schema: pa.Schema, row_group_rows: int = MERGED_ROW_GROUP) -> str:
    """Merge the parts of ``path`` into ``path`` (atomic), streaming; the parts stay (see
    :func:`remove_parts`)."""
    files = _require_parts(path)
    key = sort_key(path)
    return write_sorted(heapq.merge(*(_rows(f, None) for f in files), key=itemgetter(key)), path, schema,
                        row_group_rows)


def remove_parts(path: str) -> list[str]:
    """Delete every part file of the table at ``path`` (complete or not)."""
    folder, table = split_path(path)
    parts = RunLayout.table_parts(folder)
    gone = storage.list_files(parts, f"{table}-*-of-*.parquet") if storage.exists(parts) else []
    if gone:
        storage.FileSystems.delete(gone)
    return gone

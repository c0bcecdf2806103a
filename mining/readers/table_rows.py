"""Table parsing: rows of a Parquet, CSV/TSV (optionally .gz), JSONL or JSON-array file as dicts.

Shared by the two readers that take tables, without either importing the other: ``table`` (rows
that name a file) and ``urls`` (rows, or a .txt list, downloaded with img2dataset; ``table`` hands
url-only tables to it). CSV is parsed with ``errors="surrogateescape"`` so non-UTF-8 fields
survive as raw bytes; a row the parser cannot read becomes ``{BAD_ROW: message, "line": n}``.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from typing import Any

from apache_beam.io.filesystems import FileSystems

from mining.readers.common import InputError, lower_ext, open_input, raw_field

EXTRA_FIELDS = "_extra_fields"  # CSV values beyond the header's columns
BAD_ROW = "_bad_row"  # set (with the parser's message) on a row the parser could not read
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def iter_table_rows(path: str) -> Iterator[dict[str, Any]]:
    """Rows of a table file as dicts, streamed (CSV values are str, or bytes when not UTF-8)."""
    ext = lower_ext(path)
    if ext == ".parquet":
        import pyarrow.parquet as pq

        with FileSystems.open(path, compression_type="uncompressed") as fh:
            pf = pq.ParquetFile(fh)
            for batch in pf.iter_batches(batch_size=256):
                yield from batch.to_pylist()
    elif ext in (".csv", ".tsv", ".csv.gz", ".tsv.gz"):
        delimiter = "\t" if ext.startswith(".tsv") else ","
        with open_input(path) as fh:
            text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape", newline="")
            reader = csv.DictReader(text, delimiter=delimiter, restkey=EXTRA_FIELDS)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:  # one bad line becomes a bad_row record; reading goes on
                    yield {BAD_ROW: str(exc), "line": reader.line_num}
                    continue
                yield {str(k): [raw_field(x) for x in v] if isinstance(v, list) else raw_field(v)
                       for k, v in row.items()}
    elif ext in (".jsonl", ".jsonl.gz"):
        with open_input(path) as fh:
            for n, line in enumerate(io.TextIOWrapper(fh, encoding="utf-8", errors="replace"), start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:  # one bad line becomes a bad_row record naming its line
                    yield {BAD_ROW: f"invalid JSON: {exc}", "line": n}
                    continue
                yield row if isinstance(row, dict) else {BAD_ROW: f"a {type(row).__name__}, not an object",
                                                         "line": n}
    elif ext == ".json":
        with open_input(path) as fh:
            try:
                data = json.load(fh)
            except ValueError as exc:
                raise InputError(f"{path}: not valid JSON ({exc})") from None
        rows = data.get("rows", data.get("data")) if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise InputError(f"{path}: a JSON table is a list of objects (or {{'rows': [...]}})")
        for n, row in enumerate(rows):
            yield row if isinstance(row, dict) else {BAD_ROW: f"a {type(row).__name__}, not an object",
                                                     "line": n + 1}
    else:
        raise InputError(f"{path}: not a table (expected one of parquet, csv, tsv, jsonl, json)")


def parquet_row_count(path: str) -> int:
    """Rows of a Parquet file, from its footer (no data read)."""
    import pyarrow.parquet as pq

    with FileSystems.open(path, compression_type="uncompressed") as fh:
        return pq.ParquetFile(fh).metadata.num_rows


def iter_parquet_range(path: str, start: int, stop: int,
                       columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Rows ``start`` .. ``stop - 1`` of a Parquet file (only the row groups that hold them are read;
    ``columns``: a projection): the rows ``iter_table_rows`` gives there, for a Beam read unit."""
    import pyarrow.parquet as pq

    with FileSystems.open(path, compression_type="uncompressed") as fh:
        pf = pq.ParquetFile(fh)
        first = 0
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            lo, hi = max(start, first), min(stop, first + n)
            if lo < hi:
                at = first
                for batch in pf.iter_batches(batch_size=256, row_groups=[g], columns=columns):
                    b_lo, b_hi = max(lo - at, 0), min(hi - at, batch.num_rows)
                    if b_lo < b_hi:
                        yield from batch.slice(b_lo, b_hi - b_lo).to_pylist()
                    at += batch.num_rows
                    if at >= hi:
                        break
            first += n
            if first >= stop:
                return


def table_columns(path: str) -> list[str]:
    """Column names of a table (reads the Parquet footer or the first row only)."""
    if lower_ext(path) == ".parquet":
        import pyarrow.parquet as pq

        with FileSystems.open(path, compression_type="uncompressed") as fh:
            return list(pq.ParquetFile(fh).schema_arrow.names)
    if lower_ext(path) in (".csv", ".tsv", ".csv.gz", ".tsv.gz"):
        with open_input(path) as fh:
            text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape", newline="")
            header = next(csv.reader(text, delimiter="\t" if ".tsv" in lower_ext(path) else ","), [])
        return [str(c) for c in header]
    for row in iter_table_rows(path):
        if BAD_ROW not in row:
            return list(row)
    return []


def pick_caption(row: dict[str, Any], caption_col: str | None) -> tuple[Any, str | None]:
    """(caption value, column used): the named column, else caption / text / first of captions."""
    for col in [caption_col] if caption_col else ["caption", "text"]:
        if col in row:
            return _caption_value(row[col]), col
    caps = row.get("captions")
    if isinstance(caps, list | tuple):
        return _caption_value(caps[0] if caps else None), None
    return None, None


def _caption_value(value: Any) -> str | bytes | None:
    if value is None or isinstance(value, str | bytes):
        return value
    if isinstance(value, float) and value != value:  # NaN
        return None
    return str(value)

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

CSV_EXTS = (".csv", ".tsv", ".csv.gz", ".tsv.gz")
JSONL_EXTS = (".jsonl", ".jsonl.gz")
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
    elif ext in CSV_EXTS:
        yield from _iter_csv(path)
    elif ext in JSONL_EXTS:
        yield from _iter_jsonl(path)
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


def csv_delimiter(path: str) -> str:
    return "\t" if lower_ext(path).startswith(".tsv") else ","


def iter_text_slice(path: str, at: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """The rows ``iter_table_rows`` gives for a CSV/TSV or JSONL file from the record that ``at``
    (:func:`mining.readers.line_marks.table_marks`) marks on: a Beam read unit's rows, the same dicts,
    line numbers included; ``at=None``: from the file's start, as the loop."""
    if lower_ext(path) in CSV_EXTS:
        return _iter_csv(path, at)
    return _iter_jsonl(path, at)


def open_at(path: str, offset: int) -> io.BufferedReader:
    """A binary stream of an input file from byte ``offset`` (of the decompressed bytes for ``.gz``)."""
    fh = open_input(path)
    if offset and fh.seekable():
        fh.seek(offset)
    else:
        left = offset
        while left > 0:
            got = len(fh.read(min(left, 1 << 20)))
            if not got:
                break
            left -= got
    return fh


def _iter_csv(path: str, at: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """CSV rows; from ``at`` on: the slice is parsed with the header the launcher read, and a bad line's
    number is the loop's: csv.DictReader moves ``line_num`` only once a call got a line parsed, so
    until then in a slice it is the loop's value at the slice's start, ``at["dict_line"]`` (-1 marks
    that state: it also keeps DictReader from resetting ``line_num`` through its header property)."""
    base, held = (at["lines"], at["dict_line"]) if at else (0, 0)
    with open_at(path, at["offset"] if at else 0) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8" if at else "utf-8-sig", errors="surrogateescape",
                                newline="")
        reader = csv.DictReader(text, fieldnames=at["fieldnames"] if at else None,
                                delimiter=csv_delimiter(path), restkey=EXTRA_FIELDS)
        if at:
            reader.line_num = -1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # one bad line becomes a bad_row record; reading goes on
                yield {BAD_ROW: str(exc), "line": held if reader.line_num < 0 else reader.line_num + base}
                continue
            yield {str(k): [raw_field(x) for x in v] if isinstance(v, list) else raw_field(v)
                   for k, v in row.items()}


def _iter_jsonl(path: str, at: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    with open_at(path, at["offset"] if at else 0) as fh:
        lines = io.TextIOWrapper(fh, encoding="utf-8", errors="replace")
        for n, line in enumerate(lines, start=(at["lines"] if at else 0) + 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:  # one bad line becomes a bad_row record naming its line
                yield {BAD_ROW: f"invalid JSON: {exc}", "line": n}
                continue
            yield row if isinstance(row, dict) else {BAD_ROW: f"a {type(row).__name__}, not an object",
                                                     "line": n}


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
    if lower_ext(path) in CSV_EXTS:
        with open_input(path) as fh:
            text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape", newline="")
            header = next(csv.reader(text, delimiter=csv_delimiter(path)), [])
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

"""Launcher pre-pass for text inputs that a Beam graph splits: where every ``every``-th record starts.

A byte range of a CSV file cannot tell a line start from a newline inside a quoted field, and a
JSONL or URL list does not say how many records a range holds (blank lines are skipped), so the
launcher scans the file once, streaming (chunked reads, one line in memory), and records for each
unit start: the byte offset, the physical lines before it and, for CSV, what the loop's parser
state is there. A worker then opens the file at that offset (``table_rows.iter_text_slice``,
``urls.iter_url_lines``) and reads exactly the loop's records from there.

The scan splits lines as ``io.TextIOWrapper`` does when reading (``\\n``, ``\\r\\n`` and ``\\r``;
``bytes.splitlines``), decodes each line as the loop decodes the stream (UTF-8 is self-synchronising
at ASCII bytes, so per-line decoding gives the same text) and, for CSV, feeds the lines to the very
``csv.DictReader`` the loop uses, so quoted multi-line fields, blank lines, bad lines and the BOM
(``utf-8-sig``: stripped at the file's start only) are counted exactly as the loop counts them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from mining.readers.common import open_input
from mining.readers.table_rows import EXTRA_FIELDS, csv_delimiter

CHUNK = 1 << 20
BOM = b"\xef\xbb\xbf"


def raw_lines(fh: Any) -> Iterator[bytes]:
    """Lines of a binary stream with their ends (``\\n``, ``\\r\\n``, ``\\r``), read in chunks (a line
    longer than a chunk doubles the read, so a long line costs linear time)."""
    carry = b""
    while True:
        data = fh.read(max(CHUNK, len(carry)))
        if not data:
            break
        lines = (carry + data).splitlines(keepends=True)
        carry = lines.pop()
        if carry.endswith(b"\n"):  # complete; one ending in \r may be \r\n cut by the chunk
            lines.append(carry)
            carry = b""
        yield from lines
    if carry:
        yield carry


def line_marks(path: str, every: int, limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """(marks, records) for a JSONL file or URL list, a record per non-blank line (UTF-8 with
    replacement, ``str.strip``, as the loop): ``marks[i]`` is where record ``(i + 1) * every`` starts,
    ``{"offset": byte, "lines": lines before it}``."""
    marks, n, pos, lineno = [], 0, 0, 0
    with open_input(path) as fh:
        for raw in raw_lines(fh):
            if raw.decode("utf-8", "replace").strip():
                if limit is not None and n >= limit:
                    break
                if n and n % every == 0:
                    marks.append({"offset": pos, "lines": lineno})
                n += 1
            pos += len(raw)
            lineno += 1
    return marks, n


def csv_marks(path: str, every: int, limit: int | None = None) -> tuple[list[dict[str, Any]], int] | None:
    """(marks, records) for a CSV/TSV file, a record per row the loop's ``csv.DictReader`` gives (bad
    lines too): ``marks[i]``, where record ``(i + 1) * every`` starts, is ``{"offset", "lines": physical
    lines before it, "dict_line": the DictReader's line_num there, "fieldnames"}``. None when a unit
    would start before the header was read (every row before it a bad line): such a file is one unit."""
    at = {"pos": 0}

    def lines() -> Iterator[str]:
        with open_input(path) as fh:
            for i, raw in enumerate(raw_lines(fh)):
                at["pos"] += len(raw)
                yield (raw[len(BOM):] if i == 0 and raw.startswith(BOM) else raw).decode(
                    "utf-8", "surrogateescape")

    source = lines()
    reader = csv.DictReader(source, delimiter=csv_delimiter(path), restkey=EXTRA_FIELDS)
    try:
        return _csv_scan(reader, at, every, limit)
    finally:
        source.close()


def _csv_scan(reader: csv.DictReader, at: dict[str, int], every: int,
              limit: int | None) -> tuple[list[dict[str, Any]], int] | None:
    marks, n = [], 0
    while limit is None or n < limit:
        if n and n % every == 0:
            names = reader._fieldnames  # noqa: SLF001 - the property would read a line when unset
            if names is None:
                return None
            marks.append({"offset": at["pos"], "lines": reader.reader.line_num, "dict_line": reader.line_num,
                          "fieldnames": list(names)})
        try:
            next(reader)
        except StopIteration:
            break
        except csv.Error:
            pass
        n += 1
    return [m for i, m in enumerate(marks) if (i + 1) * every < n], n

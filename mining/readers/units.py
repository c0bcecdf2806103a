"""Read units: the pieces a Beam graph (``pipelines/read.py``) reads in parallel, each writing its own
``records-NNNNN.parquet`` shards, with the same records, keys and shard files as the one-process loop
(``writer.write_records``) for any split.

How that holds:

- **Units are ranges of whole output shards.** A unit is the records ``start`` .. ``start + rows - 1``
  of the input's record sequence, ``start`` a multiple of ``shard_size`` and ``rows`` too (but the
  last), so it writes exactly the shards the loop writes there, under the loop's names. Ranges come
  from cheap metadata: the folder listing (one record per image), Parquet footers (one record
  per row; an img2dataset shard's row list gives one record per row), and for CSV/TSV and JSONL
  (``.gz`` too) one streaming scan in the launcher (:mod:`mining.readers.line_marks`): a byte
  range cannot tell a line start from a newline inside a quoted field, so the scan runs the loop's
  own ``csv.DictReader`` over the file's lines and notes, at every unit start, the byte offset, the
  lines before it and the parser's line counter there (a bad line's number in its reject is the
  loop's), and the header; the unit's worker opens the file at that offset and reads its ``rows``
  records with the loop's code (``table_rows.iter_text_slice``; a ``.gz`` is decompressed up to
  there). A unit spanning several img2dataset shards reads a row slice of each (in the reader's
  key order).
- **URL lists and url-only tables are split into whole img2dataset shards too** (units of a
  multiple of both ``shard_size`` and ``shard_samples``; the row ranges from the same scan, or the
  Parquet footer). The loop downloads the whole input in one img2dataset run; a unit runs
  img2dataset on its own rows only (``urls.read_url_rows(first_row=...)``, in
  ``<work_dir>/units/<start>/``). That is byte-identical because img2dataset's output for a shard
  depends on that shard's rows alone, and the only things in a record that name the run, shard
  ``s``'s name ``f"{s:05d}"`` and its samples' keys ``s * 10**d + i`` (``d`` digits of
  ``shard_samples``), are renamed to the whole run's (``img2dataset_output.shifted_names``: the
  unit's first img2dataset shard is ``start // shard_samples`` of the whole run); input row numbers
  and record keys are the loop's (numbered from ``start``, key offsets as below). A refused URL's
  record is the refusal whether img2dataset ran or not, and it is counted once (img2dataset's
  failure for the empty URL it was handed is not counted: a unit of refused rows only runs no
  img2dataset). Not the loop's, in theory: a download that answers differently to the two runs
  (a flaky or changing server, a timeout; the same as rerunning the loop), and the shard paths in
  the examples of a corrupt img2dataset output (``truncated_tar``, ``bad_shard``: img2dataset's own
  fresh output is not corrupt).
- **Occurrence keys do not depend on the split.** ``core.contracts.OccurrenceKeys`` numbers a source
  repeated within one input (``sha1(src#n)``), a count over the whole input. With several units, a
  pre-pass reads only the columns keys are made of (url/path; img2dataset's url/record_key; a CSV,
  JSONL or URL list unit parses its rows but reads no image and downloads nothing), counts
  each unit's sources, and a group-by-source gives every unit the occurrences before it
  (:func:`repeat_offsets`: only sources repeated across units travel); the unit's counter starts
  there. Image folders need none (a key is its path's own).
- **Everything else is one unit** (``whole``: the loop itself, in one worker): JSON arrays (parsed
  whole; a url-only JSON array too), one img2dataset shard file, an img2dataset folder with a
  shard whose row list is missing, corrupt or foreign (its record count is not in any footer), a
  CSV whose every row before a unit start is a bad line (no header yet), and any input that fits
  in one unit.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from itertools import islice
from typing import Any

from core import storage
from core.contracts import OccurrenceKeys
from mining.readers import folder as folder_reader
from mining.readers import img2dataset_output as i2d
from mining.readers.common import URL_LIST_EXTENSIONS, ReadStats, absolute, clean_text, lower_ext
from mining.readers.dispatch import download_opts, read_any
from mining.readers.line_marks import csv_marks, line_marks
from mining.readers.table import table_path_column, table_rows_records, table_sources
from mining.readers.table_rows import (
    CSV_EXTS,
    JSONL_EXTS,
    iter_parquet_range,
    iter_text_slice,
    parquet_row_count,
    table_columns,
)
from mining.readers.urls import DEFAULTS, default_work_dir, iter_url_lines, read_url_rows

WHOLE = {"kind": "whole", "start": 0, "rows": None}
FILE_OPTS = ("load_bytes", "max_image_bytes", "follow_symlinks")


def unit_size(unit_rows: int, shard_size: int) -> int:
    """Records per unit: ``unit_rows`` rounded up to whole shards."""
    return max(1, -(-unit_rows // shard_size)) * shard_size


def plan_units(input: str, kind: str, shard_size: int, unit_rows: int, limit: int | None = None,
               **opts: Any) -> tuple[list[dict[str, Any]], ReadStats]:
    """(units in input order, the launcher's reader stats: the folder listing's), from cheap metadata.

    Raises the reader's :class:`InputError` for an unusable table here, before any worker starts.
    """
    per = unit_size(unit_rows, shard_size)
    stats = ReadStats()
    if kind == "folder":
        root = absolute(input).rstrip("/")
        pairs = folder_reader.list_folder(root, stats)
        pairs = pairs[:limit] if limit is not None else pairs
        if len(pairs) <= per:
            return [dict(WHOLE)], ReadStats()  # the loop lists again: its own counts
        return [{"kind": "folder", "root": root, "pairs": pairs[a:a + per], "start": a,
                 "rows": len(pairs[a:a + per])} for a in range(0, len(pairs), per)], stats
    if kind == "table" and lower_ext(input) == ".parquet":
        path = absolute(input)
        pcol = table_path_column(path, opts.get("caption_col"), opts.get("path_col"),
                                 opts.get("url_col", "url"))
        if pcol is None:
            return _url_units(path, shard_size, unit_rows, limit, opts), stats
        n = parquet_row_count(path)
        n = min(n, limit) if limit is not None else n
        if n <= per:
            return [dict(WHOLE)], stats
        return [{"kind": "parquet", "path": path, "pcol": pcol, "start": a, "rows": min(per, n - a)}
                for a in range(0, n, per)], stats
    if kind == "urls" or (kind == "table" and lower_ext(input) in CSV_EXTS + JSONL_EXTS):
        path = absolute(input)
        pcol = None
        if kind == "table":
            pcol = table_path_column(path, opts.get("caption_col"), opts.get("path_col"),
                                     opts.get("url_col", "url"))
        if pcol is None:
            return _url_units(path, shard_size, unit_rows, limit, opts), stats
        scan = _text_marks(path, per, limit)
        if scan is None or scan[1] <= per:
            return [dict(WHOLE)], stats
        marks, n = scan
        return [{"kind": "text", "path": path, "pcol": pcol, "start": a, "rows": min(per, n - a),
                 "at": marks[a // per - 1] if a else None} for a in range(0, n, per)], stats
    if kind == "img2dataset":
        folder = absolute(input).rstrip("/")
        shards = i2d.list_shards(folder)
        counts = [i2d.shard_row_count(folder, s) for s in shards]
        if any(c is None for c in counts):
            return [dict(WHOLE)], stats
        total = sum(counts) if limit is None else min(sum(counts), limit)
        if total <= per:
            return [dict(WHOLE)], stats
        return [{"kind": "img2dataset", "folder": folder, "start": a, "rows": min(per, total - a),
                 "pieces": _pieces(shards, counts, a, min(a + per, total))}
                for a in range(0, total, per)], stats
    return [dict(WHOLE)], stats


def _text_marks(path: str, every: int, limit: int | None) -> tuple[list[dict[str, Any]], int] | None:
    """The launcher's pre-pass of a CSV/TSV, JSONL or URL list (:mod:`mining.readers.line_marks`)."""
    return csv_marks(path, every, limit) if lower_ext(path) in CSV_EXTS else line_marks(path, every, limit)


def _url_units(path: str, shard_size: int, unit_rows: int, limit: int | None,
               opts: dict[str, Any]) -> list[dict[str, Any]]:
    """Units of a URL list or url-only table: whole img2dataset shards as well as whole output shards
    (a unit downloads its rows as its own img2dataset run, whose shards are then named as the whole
    input's run names them)."""
    samples = int(opts.get("shard_samples", DEFAULTS["shard_samples"]))
    per = unit_size(unit_rows, math.lcm(shard_size, samples))
    if lower_ext(path) == ".parquet":
        n = parquet_row_count(path)
        n, marks = (min(n, limit) if limit is not None else n), None
    elif lower_ext(path) in URL_LIST_EXTENSIONS + CSV_EXTS + JSONL_EXTS:
        scan = _text_marks(path, per, limit)
        if scan is None:
            return [dict(WHOLE)]
        marks, n = scan
    else:
        return [dict(WHOLE)]
    if n <= per:
        return [dict(WHOLE)]
    return [{"kind": "urls", "path": path, "start": a, "rows": min(per, n - a),
             "at": marks[a // per - 1] if marks and a else None} for a in range(0, n, per)]


def _url_unit_rows(unit: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A URL unit's input rows, as ``read_url_list`` / ``read_table`` give them to the download."""
    path, start = unit["path"], unit["start"]
    if lower_ext(path) == ".parquet":
        return iter_parquet_range(path, start, start + unit["rows"])
    if lower_ext(path) in URL_LIST_EXTENSIONS:
        rows = iter_url_lines(path, unit["at"]["offset"] if unit["at"] else 0)
    else:
        rows = iter_text_slice(path, unit["at"])
    return islice(rows, unit["rows"])


def _pieces(shards: list[str], counts: list[int], a: int, b: int) -> list[tuple[str, int, int]]:
    """(shard, lo, hi) slices of img2dataset shards that hold records ``a`` .. ``b - 1``."""
    out, first = [], 0
    for shard, n in zip(shards, counts):
        lo, hi = max(a, first), min(b, first + n)
        if lo < hi:
            out.append((shard, lo - first, hi - first))
        first += n
    return out


def needs_key_offsets(units: list[dict[str, Any]]) -> bool:
    """Several units of a kind whose keys count repeats (folders' keys are their paths)."""
    return len(units) > 1 and units[0]["kind"] in ("parquet", "text", "urls", "img2dataset")


def unit_sources(unit: dict[str, Any], url_col: str = "url") -> Counter:
    """How often each source the unit's occurrence counter numbers appears in it (key columns only)."""
    if unit["kind"] == "parquet":
        have = table_columns(unit["path"])
        cols = list(dict.fromkeys(c for c in (unit["pcol"], url_col) if c in have))
        rows = iter_parquet_range(unit["path"], unit["start"], unit["start"] + unit["rows"], columns=cols)
        return Counter(table_sources(unit["path"], rows, unit["pcol"], url_col))
    if unit["kind"] == "text":
        return Counter(table_sources(unit["path"], _text_rows(unit), unit["pcol"], url_col))
    if unit["kind"] == "urls":  # write_url_table numbers every row's url
        return Counter(clean_text(row.get(url_col)) or "" for row in _url_unit_rows(unit))
    if unit["kind"] == "img2dataset":
        c: Counter = Counter()
        for shard, lo, hi in unit["pieces"]:
            c.update(i2d.shard_sources(unit["folder"], shard, lo, hi))
        return c
    return Counter()


def repeat_offsets(item: tuple[str, list[tuple[int, int]]]) -> Iterator[tuple[int, tuple[str, int]]]:
    """(source, [(unit, count)]) -> (unit, (source, occurrences in earlier units)) for every unit
    after the first that has the source: what its counter starts at."""
    source, per_unit = item
    if len(per_unit) < 2:
        return
    before = 0
    for unit, count in sorted(per_unit):
        if before:
            yield unit, (source, before)
        before += count


def read_unit(unit: dict[str, Any], input: str, kind: str, stats: ReadStats,
              key_start: dict[str, int] | None = None, work_dir: str | None = None,
              **opts: Any) -> Iterator[dict[str, Any]]:
    """The records of one unit, in input order (``key_start``: :func:`repeat_offsets` for it; ``opts``:
    ``read_any``'s, whose ``limit`` the plan already applied to split units)."""
    file_opts = {k: opts[k] for k in FILE_OPTS if k in opts}
    if unit["kind"] == "whole":
        yield from read_any(input, work_dir=work_dir, stats=stats, kind=kind, **opts)
    elif unit["kind"] == "folder":
        pairs = [tuple(p) for p in unit["pairs"]]
        yield from folder_reader.read_pairs(pairs, unit["root"], stats, **file_opts)
    elif unit["kind"] == "parquet":
        start = unit["start"]
        rows = iter_parquet_range(unit["path"], start, start + unit["rows"])
        yield from table_rows_records(unit["path"], rows, unit["pcol"], OccurrenceKeys(key_start),
                                      first_row=start, caption_col=opts.get("caption_col"),
                                      url_col=opts.get("url_col", "url"), stats=stats, **file_opts)
    elif unit["kind"] == "text":
        yield from table_rows_records(unit["path"], _text_rows(unit), unit["pcol"], OccurrenceKeys(key_start),
                                      first_row=unit["start"], caption_col=opts.get("caption_col"),
                                      url_col=opts.get("url_col", "url"), stats=stats, **file_opts)
    elif unit["kind"] == "urls":
        unit_dir = storage.join(work_dir or default_work_dir(unit["path"]), "units", f"{unit['start']:012d}")
        yield from read_url_rows(_url_unit_rows(unit), unit["path"], work_dir=unit_dir, stats=stats,
                                 first_row=unit["start"], keys=OccurrenceKeys(key_start),
                                 **download_opts(opts))
    elif unit["kind"] == "img2dataset":
        keys = OccurrenceKeys(key_start)
        for shard, lo, hi in unit["pieces"]:
            yield from i2d.read_shard(unit["folder"], shard, keys=keys, stats=stats, lo=lo, hi=hi)
    else:
        raise ValueError(f"unknown read unit kind {unit['kind']!r}")


def _text_rows(unit: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A CSV/JSONL unit's rows: from its mark (the first unit: from the file's start), ``rows`` of them."""
    return islice(iter_text_slice(unit["path"], unit["at"]), unit["rows"])


def merge_stats(parts: list[dict[str, Any]]) -> ReadStats:
    """Reader stats of the launcher and the units, in input order: the loop's counts and examples."""
    out = ReadStats()
    for part in parts:
        for name, n in part.get("counts", {}).items():
            out.counts[name] += n
        for name, examples in part.get("examples", {}).items():
            ex = out.examples.setdefault(name, [])
            ex.extend(examples[: max(0, 5 - len(ex))])
    return out

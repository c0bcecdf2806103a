"""Table reader: Parquet, CSV/TSV (optionally .gz), JSONL or JSON-array files of image-text rows.

Columns: a caption (``caption``, else ``text``, else the first of a ``captions`` list) and
either a path column (``path``/``file``/...: relative to the table's folder, absolute, or a
URI; bytes read through Beam FileSystems) or only ``url`` (rows are then downloaded with
img2dataset through :mod:`mining.readers.urls`). With both, bytes come from the path while the
record's ``url`` and key come from ``url``. Other columns go to ``source_meta``.

CSV is parsed with ``errors="surrogateescape"`` so non-UTF-8 fields survive as raw bytes
(``caption_utf8_ok=False``). CSV, Parquet and JSONL stream row by row; a JSON array is loaded
whole (use JSONL at scale).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from core.config import closest
from core.contracts import OccurrenceKeys, make_record
from mining.readers.common import (
    DEFAULT_MAX_IMAGE_BYTES,
    PATH_COLUMNS,
    InputError,
    ReadStats,
    absolute,
    clean_text,
    parent_dir,
    read_file_bytes,
    resolve,
)
from mining.readers.table_rows import BAD_ROW, iter_table_rows, pick_caption, table_columns
from mining.readers.urls import read_url_rows

SOURCE = "table"


def pick_path_column(columns: list[str], path_col: str | None = None) -> str | None:
    if path_col:
        return path_col if path_col in columns else None
    return next((c for c in PATH_COLUMNS if c in columns), None)


def table_path_column(path: str, caption_col: str | None = None, path_col: str | None = None,
                      url_col: str = "url") -> str | None:
    """The table's path column, or None for a url-only table (downloaded); raises :class:`InputError`
    for a table with no rows or without a usable column. Reads the Parquet footer / first row only."""
    columns = table_columns(path)
    if not columns or next(iter_table_rows(path), None) is None:
        raise InputError(f"{path}: empty input (no rows)")
    if caption_col and caption_col not in columns:  # before the URL branch: a url-only table too
        raise InputError(f"{path}: no column {caption_col!r}{closest(caption_col, columns)} "
                         f"(columns: {', '.join(columns)[:200]})")
    pcol = pick_path_column(columns, path_col)
    if pcol is None:
        if path_col:
            raise InputError(f"{path}: no column {path_col!r}{closest(path_col, columns)} "
                             f"(columns: {', '.join(columns)[:200]})")
        if url_col not in columns:
            raise InputError(
                f"{path}: needs a path column ({', '.join(PATH_COLUMNS)}) or a '{url_col}' column "
                f"(columns: {', '.join(columns)[:200]})"
            )
    return pcol


def read_table(path: str, work_dir: str | None = None, caption_col: str | None = None,
               path_col: str | None = None, url_col: str = "url", load_bytes: bool = True,
               stats: ReadStats | None = None, limit: int | None = None,
               max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES, follow_symlinks: bool = False,
               **download_opts: Any) -> Iterator[dict[str, Any]]:
    """Records for every row of a table file, in file order.

    Raises :class:`InputError` for a table with no rows or without a usable column.
    """
    path = absolute(path)
    pcol = table_path_column(path, caption_col, path_col, url_col)
    if pcol is None:
        yield from read_url_rows(_limited(iter_table_rows(path), limit), path, work_dir=work_dir,
                                 caption_col=caption_col, url_col=url_col, stats=stats,
                                 max_image_bytes=max_image_bytes, **download_opts)
        return
    yield from table_rows_records(path, _limited(iter_table_rows(path), limit), pcol, OccurrenceKeys(),
                                  caption_col=caption_col, url_col=url_col, load_bytes=load_bytes,
                                  stats=stats, max_image_bytes=max_image_bytes,
                                  follow_symlinks=follow_symlinks)


def table_rows_records(path: str, rows: Iterator[dict[str, Any]], pcol: str, keys: OccurrenceKeys,
                       first_row: int = 0, caption_col: str | None = None, url_col: str = "url",
                       load_bytes: bool = True, stats: ReadStats | None = None,
                       max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
                       follow_symlinks: bool = False) -> Iterator[dict[str, Any]]:
    """Records for ``rows`` of the table at ``path`` (the first is row ``first_row`` of the file: a
    Beam read unit's row range, ``keys`` started with the occurrences before it)."""
    base = parent_dir(path)
    read = {"max_bytes": max_image_bytes, "root": base, "follow_symlinks": follow_symlinks}
    for n, row in enumerate(rows, start=first_row):
        try:
            if BAD_ROW in row:
                raise ValueError(row[BAD_ROW])
            yield table_row_record(row, base, keys, pcol, caption_col, url_col, load_bytes, stats, read)
        except Exception as exc:  # noqa: BLE001 - a bad row is a counted error record, never fatal
            where = f"{path} line {row['line']}" if isinstance(row.get("line"), int) else f"{path} row {n}"
            if stats is not None:
                stats.add("bad_row", where)
            yield make_record(key=keys(f"{path}#row{n}"), url=path, caption=None, source=SOURCE,
                              source_meta={"row": n, "line": row.get("line")},
                              read_error=f"bad_row: {where}: {type(exc).__name__}: {exc}"[:300])


def row_source(row: dict[str, Any], base: str, path_col: str, url_col: str) -> str:
    """What a row's key is made from: its url, else its resolved path, else ""."""
    rel = clean_text(row.get(path_col))
    return clean_text(row.get(url_col)) or (resolve(base, str(rel)) if rel else "")


def table_sources(path: str, rows: Iterator[dict[str, Any]], pcol: str, url_col: str) -> Iterator[str]:
    """The sources ``table_rows_records`` numbers for ``rows`` (only their path and url columns read):
    a Beam read unit's pre-pass, so occurrence keys do not depend on the split."""
    base = parent_dir(path)
    for row in rows:
        if BAD_ROW in row:
            continue
        try:
            yield row_source(row, base, pcol, url_col)
        except Exception:  # noqa: BLE001 - a bad row's key is unique to its row number
            continue


def table_row_record(row: dict[str, Any], base: str, keys: OccurrenceKeys, path_col: str,
                     caption_col: str | None, url_col: str, load_bytes: bool = True,
                     stats: ReadStats | None = None, read: dict[str, Any] | None = None) -> dict[str, Any]:
    """One record for a table row that names a file (``read``: options of ``read_file_bytes``)."""
    key = keys(row_source(row, base, path_col, url_col))  # first: the pre-pass counts every row's source
    caption, used = pick_caption(row, caption_col)
    rel = clean_text(row.get(path_col))
    url = clean_text(row.get(url_col)) or None
    meta = {k: _json_safe(v) for k, v in row.items() if k not in (path_col, url_col, used)}
    if not rel:
        image, error, full = None, "missing_file", None
    else:
        full = resolve(base, str(rel))
        image, error = read_file_bytes(full, **(read or {})) if load_bytes else (None, None)
    if error and stats is not None:
        stats.add(error.split(":", 1)[0], full or str(row)[:200])
    source_url = url or full or ""
    return make_record(key=key, url=source_url, caption=caption, image=image, path=full,
                       source=SOURCE, source_meta=meta, read_error=error)


def _json_safe(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return clean_text(value)


def _limited(rows: Iterator[dict[str, Any]], limit: int | None) -> Iterator[dict[str, Any]]:
    for n, row in enumerate(rows):
        if limit is not None and n >= limit:
            return
        yield row

"""Input kind detection and ``read_any``, which streams records from any supported input.

Kinds: ``img2dataset`` (a folder of ``NNNNN.tar``/``NNNNN.parquet`` shards), ``img2dataset_shard``
(one of those files), ``folder`` (any other folder: images + .txt sidecars), ``table``
(.parquet/.csv/.tsv/.jsonl/.json, optionally .gz; url-only tables are downloaded), ``urls``
(.txt URL list, downloaded with img2dataset).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from apache_beam.io.filesystems import FileSystems

from mining.readers import folder as folder_reader
from mining.readers import img2dataset_output, table, table_rows, urls
from mining.readers.common import (
    TABLE_EXTENSIONS,
    URL_LIST_EXTENSIONS,
    InputError,
    ReadStats,
    absolute,
    is_dir,
    lower_ext,
)

KINDS = ("img2dataset", "img2dataset_shard", "folder", "table", "urls")


def detect_kind(input: str) -> str:
    """The reader kind for ``input`` (a file or folder path/URI)."""
    path = absolute(input)
    if is_dir(path):
        return "img2dataset" if img2dataset_output.is_output_folder(path) else "folder"
    if not FileSystems.exists(path):
        raise InputError(f"input {input} does not exist")
    if "://" not in path and not os.path.isfile(path):
        raise InputError(f"input {input} is not a regular file or folder")
    ext = lower_ext(path)
    if ext == ".tar":
        return "img2dataset_shard"
    if ext == ".parquet":
        try:
            columns = set(table_rows.table_columns(path))
        except Exception as exc:  # noqa: BLE001 - a corrupt footer, a non-Parquet file
            raise InputError(
                f"input {input} is not a readable Parquet file ({type(exc).__name__}: {exc})"[:300]
            ) from None
        if {"key", "status", "error_message"} <= columns:
            return "img2dataset_shard"
    if ext in URL_LIST_EXTENSIONS:
        return "urls"
    if ext in TABLE_EXTENSIONS:
        return "table"
    raise InputError(f"cannot tell what {input} is: expected a folder, {TABLE_EXTENSIONS}, .txt or .tar")


def read_any(input: str, work_dir: str | None = None, stats: ReadStats | None = None,
             limit: int | None = None, kind: str | None = None, **opts: Any) -> Iterator[dict[str, Any]]:
    """Records from any supported input, streamed in a deterministic order.

    ``work_dir`` holds img2dataset downloads (URL inputs); ``limit`` stops after that many
    input rows; other options go to the reader (``load_bytes``, ``caption_col``, ``path_col``,
    ``url_col``, and the download options ``processes``, ``threads``, ``timeout``, ``retries``,
    ``shard_samples``, ``reencode``, ``user_agent_token``).
    """
    kind = kind or detect_kind(input)
    stats = stats if stats is not None else ReadStats()
    if kind == "img2dataset":
        yield from img2dataset_output.read_output(input, stats=stats, limit=limit)
    elif kind == "img2dataset_shard":
        yield from _limit(img2dataset_output.read_shard_file(input, stats=stats), limit)
    elif kind == "folder":
        yield from folder_reader.read_folder(input, stats=stats, limit=limit, **_file_opts(opts))
    elif kind == "table":
        yield from table.read_table(input, work_dir=work_dir, stats=stats, limit=limit, **opts)
    elif kind == "urls":
        yield from urls.read_url_list(
            input, work_dir=work_dir, stats=stats, limit=limit, **download_opts(opts)
        )
    else:
        raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")


def download_opts(opts: dict[str, Any]) -> dict[str, Any]:
    """The options of ``read_any`` that URL inputs take (download knobs, caption and url columns)."""
    keep = set(urls.DEFAULTS) | {"caption_col", "url_col"}
    return {k: v for k, v in opts.items() if k in keep}


def _file_opts(opts: dict[str, Any]) -> dict[str, Any]:
    keep = {"load_bytes", "max_image_bytes", "follow_symlinks"}
    return {k: v for k, v in opts.items() if k in keep}


def _limit(records: Iterator[dict[str, Any]], limit: int | None) -> Iterator[dict[str, Any]]:
    for n, rec in enumerate(records):
        if limit is not None and n >= limit:
            return
        yield rec

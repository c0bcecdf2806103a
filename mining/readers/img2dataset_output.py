"""Reader for an img2dataset output folder (``output_format="webdataset"`` or ``"parquet"``).

Each shard ``NNNNN`` has a ``NNNNN.parquet`` listing EVERY input row (successes and failures,
with ``status`` and ``error_message``) and, for webdataset output, a ``NNNNN.tar`` holding the
successful images (``.jpg``/``.txt``/``.json`` members). The Parquet file is the row list; image
bytes come from the tar (random access by member, so a shard is never held in memory) or from
the Parquet image column. Failed rows become records with ``image=None`` and
``read_error="download_failed: <error_message>"``. Without a Parquet file the tar's ``.json``
members are the row list. Rows are emitted in img2dataset key order (= input order).
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterator
from typing import Any

from apache_beam.io.filesystems import FileSystems

from core.contracts import OccurrenceKeys, make_record, url_key
from mining.readers.common import DEFAULT_MAX_IMAGE_BYTES, ReadStats, absolute, clean_text, log
from mining.readers.url_guard import guard_code

SOURCE = "img2dataset"
IMG2DATASET_COLUMNS = ("key", "status", "error_message", "width", "height", "original_width",
                       "original_height", "exif", "md5", "sha256", "sha512")
# Columns written by mining.readers.urls into img2dataset's input (carried via save_additional_columns).
OWN_COLUMNS = ("input_row", "record_key", "caption_raw_hex", "input_meta")
IMAGE_MEMBER_EXTS = ("jpg", "jpeg", "png", "webp")
SHARD_LIST_COLUMNS = ("key", "status")  # a shard's Parquet without these is foreign: a bad_shard reject
_SHARD_RE = re.compile(r"^(\d+)\.(tar|parquet)$")


def is_output_folder(folder: str) -> bool:
    """True when ``folder`` holds img2dataset shards (``NNNNN.tar`` / ``NNNNN.parquet``)."""
    return bool(list_shards(folder))


def list_shards(folder: str) -> list[str]:
    """Sorted shard names (``00000``, ...) present in ``folder``."""
    folder = absolute(folder).rstrip("/")
    names = set()
    for pattern in ("*.tar", "*.parquet"):
        for m in FileSystems.match([FileSystems.join(folder, pattern)])[0].metadata_list:
            hit = _SHARD_RE.match(m.path.rsplit("/", 1)[-1])
            if hit:
                names.add(hit.group(1))
    return sorted(names, key=lambda s: (len(s), s))


def read_output(
    folder: str, stats: ReadStats | None = None, limit: int | None = None, shard_offset: int = 0
) -> Iterator[dict[str, Any]]:
    """Records for every row of every shard, shard by shard (keys unique across the folder;
    ``shard_offset``: see :func:`shifted_names`)."""
    keys = OccurrenceKeys()
    n = 0
    for shard in list_shards(folder):
        for rec in read_shard(folder, shard, keys=keys, stats=stats, shard_offset=shard_offset):
            if limit is not None and n >= limit:
                return
            n += 1
            yield rec


def read_shard_file(path: str, keys: OccurrenceKeys | None = None,
                    stats: ReadStats | None = None) -> Iterator[dict[str, Any]]:
    """Records of the shard that ``path`` (its .tar or .parquet) belongs to: the Beam fan-out unit."""
    folder, name = FileSystems.split(absolute(path))
    yield from read_shard(folder, name.split(".", 1)[0], keys=keys, stats=stats)


def read_shard(folder: str, shard: str, keys: OccurrenceKeys | None = None,
               stats: ReadStats | None = None, lo: int = 0, hi: int | None = None,
               shard_offset: int = 0) -> Iterator[dict[str, Any]]:
    """Records for one shard, in key order (``lo`` .. ``hi - 1`` of them: a Beam read unit's part of
    a shard with a usable row list; the shard's own counts, e.g. ``truncated_tar``, go to the part
    with row 0)."""
    keys = keys if keys is not None else OccurrenceKeys()
    name = shifted_names(shard, None, shard_offset)[0]
    row_stats = stats
    if lo > 0 and stats is not None:
        stats = ReadStats()
    folder = absolute(folder).rstrip("/")
    parquet_path = FileSystems.join(folder, f"{shard}.parquet")
    tar_path = FileSystems.join(folder, f"{shard}.tar")
    tar_fh = (
        FileSystems.open(tar_path, compression_type="uncompressed") if FileSystems.exists(tar_path) else None
    )
    try:
        members, tar = _index_tar(tar_fh, tar_path, stats) if tar_fh is not None else ({}, None)
        rows = None
        if FileSystems.exists(parquet_path):
            try:
                rows = _parquet_rows(parquet_path)
            except Exception as exc:  # noqa: BLE001 - a corrupt or foreign shard list is one named reject
                if stats is not None:
                    stats.add("bad_shard", parquet_path)
                log.warning("img2dataset shard %s unusable: %s", parquet_path, exc)
                yield make_record(key=keys(parquet_path), url=parquet_path, caption=None, source=SOURCE,
                                  source_meta={"img2dataset": {"shard": name}},
                                  read_error=f"bad_shard: {parquet_path}: {type(exc).__name__}: {exc}"[:300])
        if rows is None:  # no (usable) row list: the tar's samples are the rows
            rows = _tar_json_rows(tar, members, stats)
        stats = row_stats
        for row in _in_key_order(rows)[lo:hi]:
            try:
                yield _row_record(row, shard, members, tar, keys, stats, shard_offset)
            except Exception as exc:  # noqa: BLE001 - a bad row is a counted error record, never fatal
                key = shifted_names(shard, row.get("key"), shard_offset)[1]
                if stats is not None:
                    stats.add("bad_row", f"{name}/{key}")
                url = clean_text(row.get("url")) or f"{tar_path}#{row.get('key')}"
                yield make_record(key=keys(url), url=url, caption=None, source=SOURCE,
                                  source_meta={"img2dataset": {"shard": name, "key": key}},
                                  read_error=f"bad_row: {type(exc).__name__}: {exc}"[:300])
    finally:
        if tar_fh is not None:
            tar_fh.close()


def shifted_names(shard: str, key: Any, offset: int) -> tuple[str, Any]:
    """(shard name, sample key) of a shard ``offset`` shards later: what img2dataset names the shard and
    its sample in a run over the whole input when this shard is ``offset`` shards into it (a Beam read
    unit downloads its URL rows as shards 0, 1, ...). img2dataset names shard ``s`` ``f"{s:05d}"`` and
    sample ``i`` of it ``s * 10**d + i`` padded to ``d + 5`` digits, ``d`` the digits of its
    shard size: the key's length less the name's."""
    if not offset:
        return shard, key
    name = f"{int(shard) + offset:0{len(shard)}d}"
    if isinstance(key, str) and key.isdigit() and len(key) > len(shard):
        key = f"{int(key) + offset * 10 ** (len(key) - len(shard)):0{len(key)}d}"
    return name, key


def _in_key_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: str(r.get("key") or ""))


def shard_row_count(folder: str, shard: str) -> int | None:
    """Records ``read_shard`` gives for a shard, from its Parquet footer only; None when that is not
    knowable without reading (no Parquet row list, or a corrupt or foreign one)."""
    import pyarrow.parquet as pq

    path = FileSystems.join(absolute(folder).rstrip("/"), f"{shard}.parquet")
    try:
        with FileSystems.open(path, compression_type="uncompressed") as fh:
            pf = pq.ParquetFile(fh)
            if not set(SHARD_LIST_COLUMNS) <= set(pf.schema_arrow.names):
                return None
            return pf.metadata.num_rows
    except Exception:  # noqa: BLE001 - missing or unreadable: the whole folder is read as one unit
        return None


def shard_sources(folder: str, shard: str, lo: int = 0, hi: int | None = None) -> list[str]:
    """The urls ``read_shard`` numbers with its occurrence counter for rows ``lo`` .. ``hi - 1`` (rows
    without our own ``record_key``), from the row list's key, url and record_key columns only."""
    import pyarrow.parquet as pq

    path = FileSystems.join(absolute(folder).rstrip("/"), f"{shard}.parquet")
    with FileSystems.open(path, compression_type="uncompressed") as fh:
        pf = pq.ParquetFile(fh)
        columns = [c for c in ("key", "url", "record_key") if c in pf.schema_arrow.names]
        rows = pf.read(columns=columns).to_pylist()
    return [clean_text(r.get("url")) or "" for r in _in_key_order(rows)[lo:hi] if not r.get("record_key")]


def _index_tar(fh: Any, tar_path: str, stats: ReadStats | None):
    """{sample key: {ext: TarInfo}} from the tar headers only (a truncated tar keeps what it has)."""
    members: dict[str, dict[str, tarfile.TarInfo]] = {}
    try:
        tar = tarfile.open(fileobj=fh, mode="r:")
    except tarfile.TarError as exc:
        log.warning("unreadable tar %s: %s", tar_path, exc)
        if stats is not None:
            stats.add("unreadable_tar", tar_path)
        return members, None
    try:
        for info in tar:
            if info.isfile():
                base = info.name.rsplit("/", 1)[-1]
                key, _, ext = base.partition(".")
                members.setdefault(key, {})[ext.lower()] = info
    except (tarfile.TarError, OSError) as exc:
        log.warning("truncated tar %s after %d samples: %s", tar_path, len(members), exc)
        if stats is not None:
            stats.add("truncated_tar", tar_path)
    return members, tar


def _parquet_rows(path: str) -> list[dict[str, Any]]:
    """Shard metadata rows (no image bytes unless output_format was parquet)."""
    import pyarrow.parquet as pq

    with FileSystems.open(path, compression_type="uncompressed") as fh:
        table = pq.read_table(fh)
    missing = [c for c in SHARD_LIST_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"not an img2dataset shard list: no column {', '.join(missing)} "
                         f"(columns: {', '.join(table.column_names)[:200]})")
    return table.to_pylist()


def _tar_json_rows(
    tar: tarfile.TarFile | None, members: dict, stats: ReadStats | None
) -> list[dict[str, Any]]:
    rows = []
    for key, exts in members.items():
        row: dict[str, Any] = {"key": key, "status": "success"}
        if "json" in exts and tar is not None:
            try:
                row = json.loads(tar.extractfile(exts["json"]).read())
            except (ValueError, OSError, tarfile.TarError):
                if stats is not None:
                    stats.add("bad_sample_json", key)
        rows.append(row)
    return rows


def _member_bytes(tar: tarfile.TarFile | None, exts: dict[str, tarfile.TarInfo], ext: str) -> bytes | None:
    if tar is None or ext not in exts:
        return None
    if exts[ext].size > DEFAULT_MAX_IMAGE_BYTES:
        return None
    try:
        return tar.extractfile(exts[ext]).read()
    except (OSError, tarfile.TarError):
        return None


def _row_record(row: dict[str, Any], shard: str, members: dict, tar: tarfile.TarFile | None,
                keys: OccurrenceKeys, stats: ReadStats | None, shard_offset: int = 0) -> dict[str, Any]:
    sample_key = str(row.get("key") or "")
    exts = members.get(sample_key, {})
    url = clean_text(row.get("url")) or ""
    caption: Any = row.get("caption")
    if row.get("caption_raw_hex"):
        caption = bytes.fromhex(row["caption_raw_hex"])
    elif "caption" not in row and "txt" in exts:
        caption = _member_bytes(tar, exts, "txt")
    status = row.get("status")
    image, error = None, None
    if status == "success":
        image = next((row[e] for e in IMAGE_MEMBER_EXTS if isinstance(row.get(e), bytes)), None)
        if image is None:
            image = next(
                (b for e in IMAGE_MEMBER_EXTS if (b := _member_bytes(tar, exts, e)) is not None), None
            )
        if image is None:
            error = "missing_in_shard"
    else:
        message = row.get("error_message") or status or "unknown"
        code = guard_code(message)  # the guard proxy refused a hop (a redirect to a private address)
        error = f"{code}: {message}" if code else f"download_failed: {message}"
    if error and stats is not None:
        stats.add(error.split(":", 1)[0], url)
    i2d = {c: row.get(c) for c in IMG2DATASET_COLUMNS if c in row}
    if isinstance(i2d.get("exif"), str):
        try:
            i2d["exif"] = json.loads(i2d["exif"])
        except ValueError:
            pass
    i2d["shard"], key = shifted_names(shard, i2d.get("key"), shard_offset)
    if "key" in i2d:
        i2d["key"] = key
    meta: dict[str, Any] = {"img2dataset": i2d}
    if row.get("input_meta"):
        meta.update(json.loads(row["input_meta"]))
    if row.get("input_row") is not None:
        meta["input_row"] = row["input_row"]
    skip = set(IMG2DATASET_COLUMNS) | set(OWN_COLUMNS) | {"url", "caption", *IMAGE_MEMBER_EXTS}
    meta.update({k: clean_text(v) for k, v in row.items() if k not in skip})
    key = row.get("record_key") or keys(url)
    return make_record(key=key, url=url, caption=caption, image=image, path=None,
                       source=SOURCE, source_meta=meta, read_error=error)


def missing_row_record(url: str, key: str | None = None, caption: Any = None,
                       meta: dict[str, Any] | None = None,
                       error: str = "download_failed: no img2dataset output row") -> dict[str, Any]:
    """A failure record for an input row img2dataset produced nothing for (a failed shard, a refused URL)."""
    return make_record(key=key or url_key(url), url=url, caption=caption, source=SOURCE,
                       source_meta=meta or {}, read_error=error)

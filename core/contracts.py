"""On-disk contracts: every Parquet schema, and the run-folder layout every stage uses.

Readers produce record rows with the base columns; later stages append their own columns
(quality, domain, embedding, cluster ids) instead of inventing new formats. Rows are plain dicts
while they flow through Python and Beam, and Arrow tables on disk. :class:`RunLayout` names where
each stage reads and writes inside a run folder, so no stage probes for another's files. Shard
formats (the WebDataset samples of clusters and tasks) are in ``core/samples.py``, next to this.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

# Base columns every reader fills (see docs/ARCHITECTURE.md, "Record schema").
RECORD_FIELDS: list[pa.Field] = [
    pa.field("key", pa.string(), nullable=False),  # stable id: hash of url/path (+ occurrence)
    pa.field("url", pa.string()),  # source URL, or the file path/URI for local inputs
    pa.field("caption", pa.string()),  # decoded with errors="replace"; see caption_utf8_ok
    pa.field("caption_utf8_ok", pa.bool_()),  # False when the source bytes were not UTF-8
    pa.field("image", pa.binary()),  # encoded image bytes as read (null if only `path`)
    pa.field("path", pa.string()),  # where the bytes live when `image` is null
    pa.field("width", pa.int32()),  # from the image header, null if unreadable
    pa.field("height", pa.int32()),
    pa.field("format", pa.string()),  # PIL format name (JPEG, PNG, ...) or null
    pa.field("sha256", pa.string()),  # hex sha256 of the encoded bytes, null if none
    pa.field("source", pa.string()),  # reader name: img2dataset, table, folder, demo, ...
    pa.field("source_meta", pa.string()),  # JSON object: reader-specific metadata
    pa.field("read_error", pa.string()),  # why the reader got no bytes (download_failed: ..)
]
RECORD_SCHEMA = pa.schema(RECORD_FIELDS)
BASE_COLUMNS = [f.name for f in RECORD_FIELDS]

# Reject rows: one per record a stage drops, with a reason code.
REJECT_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("stage", pa.string()),  # mine, cluster, tasks, ...
        pa.field("reason", pa.string()),  # short code, e.g. truncated_image
        pa.field("detail", pa.string()),  # human-readable detail
    ]
)


# Columns the mining stage adds to kept records (pipelines/mine.py, mining/stage.py).
MINING_FIELDS = pa.schema([
    pa.field("quality", pa.float64()), pa.field("quality_technical", pa.float64()),
    pa.field("quality_brisque", pa.float64()), pa.field("quality_learned", pa.float64()),
    pa.field("domain", pa.string()), pa.field("domain_scores", pa.string()),
])

# clusters.parquet: one row per kept 5-pair cluster (member 0 is the seed).
CLUSTER_SCHEMA = pa.schema([
    ("cluster_id", pa.string()), ("domain", pa.string()), ("keys", pa.list_(pa.string())),
    ("urls", pa.list_(pa.string())), ("similarities", pa.list_(pa.float32())),
    ("coherence", pa.float32()), ("coherent", pa.bool_()),
])
# duplicates.parquet: one row per record clustering flagged as a copy of another.
DUP_SCHEMA = pa.schema([("key", pa.string()), ("duplicate_of", pa.string()), ("reason", pa.string())])
# The column each of those tables is sorted by (unique per row): the order of the merged file and
# of every part file in ``RunLayout.table_parts`` (core/tables.py reads and merges them).
TABLE_SORT_KEYS = {"clusters": "cluster_id", "duplicates": "key"}


class RunLayout:
    """Where each stage's inputs and outputs live in a run folder (local path or Beam URI).

    ``RUN/records/`` (reader), ``RUN/mined/{kept,rejects}/`` (mining), ``RUN/clusters/``
    (embeddings/, clusters.parquet, duplicates.parquet, their sorted parts in tables/, shards/),
    ``RUN/tasks/`` (shards/, manifests/, the card), ``RUN/train/``, ``RUN/report/``. A stage given
    explicit folders uses those instead; the layout never probes which of several places holds a file.
    """

    def __init__(self, root: str):
        self.root = root.rstrip("/") or root

    def _join(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    @property
    def records(self) -> str:
        return self._join("records")

    @property
    def mined(self) -> str:
        return self._join("mined")

    @property
    def clusters(self) -> str:
        return self._join("clusters")

    @property
    def tasks(self) -> str:
        return self._join("tasks")

    @property
    def train(self) -> str:
        return self._join("train")

    @property
    def report(self) -> str:
        return self._join("report")

    @staticmethod
    def kept(mined: str) -> str:
        return mined.rstrip("/") + "/kept"

    @staticmethod
    def rejects(mined: str) -> str:
        return mined.rstrip("/") + "/rejects"

    @staticmethod
    def clusters_table(clusters: str) -> str:
        return clusters.rstrip("/") + "/clusters.parquet"

    @staticmethod
    def duplicates_table(clusters: str) -> str:
        return clusters.rstrip("/") + "/duplicates.parquet"

    @staticmethod
    def table_parts(clusters: str) -> str:
        """The clustering graph's table parts: each of ``clusters`` / ``duplicates`` as ``count`` sorted
        parquet files, hash-split by :data:`TABLE_SORT_KEYS` (merged into the single files unless
        ``tables.merge`` is off; ``core/tables.py`` reads either)."""
        return clusters.rstrip("/") + "/tables"

    @staticmethod
    def table_part(clusters: str, table: str, index: int, count: int) -> str:
        return f"{RunLayout.table_parts(clusters)}/{table}-{index:05d}-of-{count:05d}.parquet"

    @staticmethod
    def duplicate_chains(clusters: str) -> str:
        """The pointer-jumping rounds' counts (``pipelines/table_transforms.py``), read into the summary."""
        return f"{RunLayout.table_parts(clusters)}/duplicate_chains.json"

    @staticmethod
    def shards(folder: str) -> str:
        return folder.rstrip("/") + "/shards"

    @staticmethod
    def summary(folder: str) -> str:
        return folder.rstrip("/") + "/summary.json"


def url_key(source: str, occurrence: int = 0) -> str:
    """Stable record key: sha1 of the source URL/path, 20 hex chars.

    A source listed more than once in one input gets ``occurrence`` 1, 2, ... so every
    row keeps a unique key while repeats stay recognisable by their shared ``url``.
    """
    text = source if occurrence == 0 else f"{source}#{occurrence}"
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


class OccurrenceKeys:
    """Assigns ``url_key`` with per-input occurrence counters (one instance per input file).

    ``start``: occurrences already seen before this reader's first row (a Beam read unit that is not
    the first of its input: ``mining/readers/units.py`` computes them), so keys do not depend on how
    the input was split.
    """

    def __init__(self, start: dict[str, int] | None = None) -> None:
        self._seen: dict[str, int] = dict(start or {})

    def __call__(self, source: str) -> str:
        n = self._seen.get(source, 0)
        self._seen[source] = n + 1
        return url_key(source, n)


def decode_caption(raw: bytes | str | None) -> tuple[str | None, bool]:
    """Caption text and whether it was valid UTF-8 (invalid bytes become U+FFFD)."""
    if raw is None:
        return None, True
    if isinstance(raw, str):
        return raw, True
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), False


def probe_image(data: bytes | None) -> tuple[int | None, int | None, str | None]:
    """(width, height, format) from the header only; Nones when PIL can't identify it."""
    if not data:
        return None, None, None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(im.width), int(im.height), im.format
    except Exception:  # noqa: BLE001 - any unidentifiable input is simply unknown here
        return None, None, None


def make_record(
    *,
    key: str,
    url: str | None,
    caption: bytes | str | None,
    image: bytes | None = None,
    path: str | None = None,
    source: str,
    source_meta: dict[str, Any] | None = None,
    read_error: str | None = None,
) -> dict[str, Any]:
    """Build a base record, filling size, format and sha256 from the bytes."""
    text, ok = decode_caption(caption)
    width, height, fmt = probe_image(image)
    return {
        "key": key,
        "url": url,
        "caption": text,
        "caption_utf8_ok": ok,
        "image": image,
        "path": path,
        "width": width,
        "height": height,
        "format": fmt,
        "sha256": hashlib.sha256(image).hexdigest() if image is not None else None,
        "source": source,
        "source_meta": json.dumps(source_meta or {}, sort_keys=True, default=str),
        "read_error": None if read_error is None else clean_detail(read_error),
    }


def load_image_bytes(record: dict[str, Any]) -> bytes | None:
    """The record's encoded bytes: the ``image`` column, else the file at ``path``."""
    if record.get("image") is not None:
        return record["image"]
    path = record.get("path")
    if not path:
        return None
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as fh:
        return fh.read()


def schema_for(rows: list[dict[str, Any]], extra: pa.Schema | None = None) -> pa.Schema:
    """Schema for ``rows``: record columns they hold (declared types), then ``extra``, then the rest
    (inferred)."""
    present = {k for r in rows for k in r}
    fields = [f for f in RECORD_FIELDS if f.name in present]
    names = {f.name for f in fields}
    for f in extra or []:
        if f.name not in names:
            fields.append(f)
            names.add(f.name)
    others = sorted({k for r in rows for k in r} - names)
    for name in others:
        inferred = pa.array([r.get(name) for r in rows]).type
        fields.append(pa.field(name, inferred if inferred != pa.null() else pa.string()))
    return pa.schema(fields)


def to_table(rows: Iterable[dict[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    """Rows (dicts) to an Arrow table; missing columns become nulls."""
    rows = list(rows)
    schema = schema or schema_for(rows)
    cols = {f.name: pa.array([r.get(f.name) for r in rows], type=f.type) for f in schema}
    return pa.Table.from_pydict(cols, schema=schema)


_ADDRESS = re.compile(r"\s+at 0x[0-9a-fA-F]+")


def clean_detail(detail: Any, limit: int = 500) -> str:
    """A reject detail that is the same on every run: object reprs lose their memory address
    (``<_io.BytesIO object at 0x7f..>`` -> ``<_io.BytesIO object>``), cut to ``limit`` characters."""
    return _ADDRESS.sub("", str(detail if detail is not None else ""))[:limit]


def reject(record: dict[str, Any], stage: str, reason: str, detail: str = "") -> dict[str, Any]:
    """A reject row for ``record`` (every stage builds its reject rows here)."""
    return {
        "key": record.get("key") or "",
        "url": record.get("url"),
        "stage": stage,
        "reason": reason,
        "detail": clean_detail(detail),
    }

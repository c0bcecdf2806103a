"""Helpers shared by the readers: file kinds, Beam-filesystem paths, raw CSV fields, read stats."""

from __future__ import annotations

import logging
import os
from collections import Counter
from typing import Any

from apache_beam.io.filesystems import FileSystems

log = logging.getLogger("mining.readers")

# Raster formats PIL can identify; anything else in an image folder is ignored (and counted).
IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .gif .bmp .webp .tif .tiff .ppm .pgm .pbm .pnm .ico .tga .avif .heic".split()
)
TABLE_EXTENSIONS = (".parquet", ".csv", ".tsv", ".csv.gz", ".tsv.gz", ".jsonl", ".json", ".jsonl.gz")
URL_LIST_EXTENSIONS = (".txt", ".txt.gz")
# Column names accepted as the image location in a table, first match wins.
PATH_COLUMNS = ("path", "file", "filepath", "file_path", "image_path", "filename")


def lower_ext(path: str) -> str:
    """Extension including a .gz suffix, lower case (``a/b.CSV.gz`` -> ``.csv.gz``)."""
    name = path.rsplit("/", 1)[-1].lower()
    if name.endswith(".gz"):
        return os.path.splitext(name[:-3])[1] + ".gz"
    return os.path.splitext(name)[1]


def is_dir(path: str) -> bool:
    """A local folder, or a remote prefix (trailing slash, or objects under it: mining/objectstore.py)."""
    from mining import objectstore

    return objectstore.is_dir(path)


def absolute(path: str) -> str:
    """Absolute local path; URIs (``gs://...``) are returned unchanged."""
    return path if "://" in path else os.path.abspath(path)


def parent_dir(path: str) -> str:
    return FileSystems.split(path)[0]


def resolve(base_dir: str, path: str) -> str:
    """``path`` if absolute or a URI, else joined to ``base_dir``."""
    if "://" in path or os.path.isabs(path):
        return path
    return FileSystems.join(base_dir, path)


def read_file_bytes(path: str) -> tuple[bytes | None, str | None]:
    """(bytes, None) or (None, read_error): ``missing_file`` or ``read_failed: ...``."""
    try:
        if not FileSystems.exists(path):
            return None, "missing_file"
        with FileSystems.open(path, compression_type="uncompressed") as fh:
            return fh.read(), None
    except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the input
        return None, f"read_failed: {type(exc).__name__}: {exc}"[:300]


def raw_field(value: str | None) -> bytes | str | None:
    """A CSV field opened with ``errors='surrogateescape'``: str when clean, raw bytes otherwise."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")


def clean_text(value: Any) -> Any:
    """JSON-safe value for source_meta (raw bytes are decoded with replacement)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and value != value:  # NaN from pandas-like writers
        return None
    return value


class ReadStats:
    """Counters a reader fills as it goes (files ignored, rows by error); merged into summaries."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, name: str, example: str | None = None, n: int = 1) -> None:
        self.counts[name] += n
        if example is not None:
            ex = self.examples.setdefault(name, [])
            if len(ex) < 5:
                ex.append(example)

    def as_dict(self) -> dict[str, Any]:
        return {"counts": dict(sorted(self.counts.items())), "examples": self.examples}

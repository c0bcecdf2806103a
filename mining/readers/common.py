"""Helpers shared by the readers: file kinds, Beam-filesystem paths, raw CSV fields, read stats."""

from __future__ import annotations

import gzip
import io
import logging
import os
import zlib
from collections import Counter
from typing import Any

from apache_beam.io.filesystems import FileSystems

from core.cli import InputError  # noqa: F401 - re-exported for the readers
from core.safe_files import DEFAULT_MAX_IMAGE_BYTES, local_file_error, read_file_bytes  # noqa: F401 - readers use them

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
    """A local folder, or a remote prefix (trailing slash, or objects under it: core/objectstore.py)."""
    from core import objectstore

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


# Gzip inputs stop with an error past this many decompressed bytes, or past GZIP_MAX_RATIO times the
# compressed size once beyond GZIP_RATIO_FLOOR (real CSV/JSONL compresses ~3-15x; a bomb ~1000x).
DEFAULT_MAX_DECOMPRESSED_BYTES = 16 * 1024**3
GZIP_MAX_RATIO = 200
GZIP_RATIO_FLOOR = 64 * 1024**2


class _CappedReader(io.RawIOBase):
    """A binary stream that raises :class:`InputError` once more than ``cap`` bytes were read."""

    def __init__(self, inner: Any, cap: int, name: str):
        self.inner, self.cap, self.name, self.seen = inner, cap, name, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        try:
            data = self.inner.read(len(buf))
        except (EOFError, OSError, zlib.error) as exc:  # truncated or not gzip at all
            raise InputError(f"{self.name}: corrupt gzip ({type(exc).__name__}: {exc})") from None
        self.seen += len(data)
        if self.seen > self.cap:
            raise InputError(f"{self.name}: decompresses to more than {self.cap} bytes "
                             f"(gzip bomb guard; see docs/readers.md)")
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


def open_input(path: str, max_decompressed: int = DEFAULT_MAX_DECOMPRESSED_BYTES) -> io.BufferedReader:
    """A binary stream of an input file; ``.gz`` is decompressed, with a cap on the decompressed size."""
    fh = FileSystems.open(path, compression_type="uncompressed")
    if not path.lower().endswith(".gz"):
        return fh
    try:
        size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
    except Exception:  # noqa: BLE001 - unknown size: the absolute cap alone
        size = max_decompressed
    cap = min(max_decompressed, max(GZIP_RATIO_FLOOR, GZIP_MAX_RATIO * size))
    return io.BufferedReader(_CappedReader(gzip.GzipFile(fileobj=fh, mode="rb"), cap, path), 1 << 16)


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

"""Helpers shared by the readers: file kinds, Beam-filesystem paths, raw CSV fields, read stats."""

from __future__ import annotations

import gzip
import io
import logging
import os
import stat
import zlib
from collections import Counter
from typing import Any

from apache_beam.io.filesystems import FileSystems

from mining.cli import InputError  # noqa: F401 - re-exported for the readers

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


# Bounded reads: a path that names a huge file (or /dev/zero) must not exhaust memory.
DEFAULT_MAX_IMAGE_BYTES = 64 * 1024 * 1024


def local_file_error(path: str, max_bytes: int, root: str | None = None,
                     follow_symlinks: bool = False) -> str | None:
    """Why a local ``path`` must not be read, or None: special files, oversize files, escaping symlinks.

    Only regular files are read (a FIFO would block forever, a device never ends). A symlink is
    followed only when its target lies inside ``root`` (the input's folder), unless
    ``follow_symlinks``; a path that is itself named outside ``root`` is the input's own choice.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing_file"
    except OSError as exc:
        return f"read_failed: {type(exc).__name__}: {exc.strerror or exc}"[:300]
    if stat.S_ISLNK(st.st_mode):
        real = os.path.realpath(path)
        if root is not None and not follow_symlinks:
            top = os.path.realpath(root)
            if os.path.commonpath([top, real]) != top:
                return f"symlink_outside_root: {path} -> {real}"[:300]
        try:
            st = os.stat(path)
        except OSError as exc:
            return f"missing_file: dangling symlink ({type(exc).__name__})"
    if not stat.S_ISREG(st.st_mode):
        return f"not_a_regular_file: {_mode_name(st.st_mode)}"
    if st.st_size > max_bytes:
        return f"file_too_large: {st.st_size} bytes > {max_bytes}"
    return None


def _mode_name(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def read_file_bytes(path: str, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES, root: str | None = None,
                    follow_symlinks: bool = False) -> tuple[bytes | None, str | None]:
    """(bytes, None) or (None, read_error): ``missing_file``, ``not_a_regular_file``, ``file_too_large``,
    ``symlink_outside_root`` or ``read_failed: ...``. Never blocks on special files, never reads past
    ``max_bytes`` (remote files included)."""
    try:
        if "://" not in path:
            error = local_file_error(path, max_bytes, root, follow_symlinks)
            if error:
                return None, error
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a file swapped for a FIFO cannot block us
            with os.fdopen(fd, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    return None, "not_a_regular_file: changed while reading"
                data = fh.read(max_bytes + 1)
        else:
            if not FileSystems.exists(path):
                return None, "missing_file"
            with FileSystems.open(path, compression_type="uncompressed") as fh:
                data = fh.read(max_bytes + 1)
        if len(data) > max_bytes:
            return None, f"file_too_large: more than {max_bytes} bytes"
        return data, None
    except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the input
        return None, f"read_failed: {type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"[:300]


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

"""Atomic, resumable file output on any Beam filesystem (local, gs://, s3://, hdfs://).

Every output file is written to a temporary name beside its destination and renamed into
place only when complete, so a reader never sees a partial file and a killed run leaves
only ``*.tmp-*`` debris that the next run ignores and overwrites.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from core import objectstore
from core.contracts import to_table

log = logging.getLogger("core.storage")
TMP_MARK = ".tmp-"
# Fault injection for the kill-and-resume tests: IIDATA_KILL_AT="<phase>:<n>[:<substring>]" makes
# this process SIGKILL itself at its n-th atomic write (counting only paths containing <substring>),
# phase "before_rename" (temp file complete, not yet renamed) or "after_rename" (file in place).
# Unset in normal runs.
KILL_ENV = "IIDATA_KILL_AT"
WRITE_LOG_ENV = "IIDATA_WRITE_LOG"  # if set, every finished atomic write appends its path to this file
_writes = {"before_rename": 0, "after_rename": 0}


def _maybe_die(phase: str, path: str) -> None:
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    want, n, substring = (spec.split(":", 2) + ["", ""])[:3]
    if want != phase or substring not in path:
        return
    _writes[phase] += 1
    if _writes[phase] == int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def exists(path: str) -> bool:
    """A file, or a folder: on object stores a prefix with objects under it (see core/objectstore.py)."""
    return objectstore.exists(path)


def makedirs(path: str) -> None:
    if not FileSystems.exists(path):
        try:
            FileSystems.mkdirs(path)
        except OSError:  # created concurrently
            pass


def join(base: str, *parts: str) -> str:
    return FileSystems.join(base, *parts)


def _create_tmp(tmp: str) -> Any:
    """The temp file's handle: plain ``open`` on local paths (no Beam filesystem layer), Beam's
    ``FileSystems.create`` elsewhere."""
    return FileSystems.create(tmp) if "://" in tmp else open(tmp, "wb")


@contextlib.contextmanager
def atomic_open(path: str) -> Iterator[Any]:
    """A binary file handle whose content lands at ``path`` only when the block ends without error.

    Writes stream to a temp name beside ``path`` (no whole-file buffer in memory), then the temp file
    is renamed into place; an error or interrupt removes the temp file and re-raises.
    """
    parent = FileSystems.split(path)[0]
    if parent:
        makedirs(parent)
    tmp = f"{path}{TMP_MARK}{uuid.uuid4().hex[:12]}"
    local = "://" not in path
    try:
        with _create_tmp(tmp) as fh:
            yield fh
    except BaseException:  # disk full, quota, interrupted: leave no partial temp file behind
        try:
            if local and os.path.exists(tmp):
                os.remove(tmp)
            elif not local and FileSystems.exists(tmp):
                FileSystems.delete([tmp])
        except Exception:  # noqa: BLE001 - the original error matters more
            pass
        raise
    _maybe_die("before_rename", path)
    if local:
        os.replace(tmp, path)
    else:
        if FileSystems.exists(path):
            FileSystems.delete([path])
        FileSystems.rename([tmp], [path])
    if os.environ.get(WRITE_LOG_ENV):
        with open(os.environ[WRITE_LOG_ENV], "a") as log:
            log.write(path + "\n")
    _maybe_die("after_rename", path)


def atomic_write_bytes(path: str, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically (temp file + rename); returns ``path``."""
    with atomic_open(path) as fh:
        fh.write(data)
    return path


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path) as fh:
        return fh.read()


def table_to_parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def write_parquet(
    rows: Iterable[dict[str, Any]] | pa.Table, path: str, schema: pa.Schema | None = None
) -> str:
    """Write rows (or a table) as one Parquet file, atomically."""
    table = rows if isinstance(rows, pa.Table) else to_table(rows, schema)
    return atomic_write_bytes(path, table_to_parquet_bytes(table))


def read_parquet(path: str, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file, or every ``*.parquet`` file in a folder (sorted), as one table."""
    files = list_files(path, "*.parquet")
    tables = [pq.read_table(io.BytesIO(read_bytes(f)), columns=columns) for f in files]
    if not tables:
        raise FileNotFoundError(f"no parquet files at {path}")
    return pa.concat_tables(tables, promote_options="default")


def iter_rows(path: str, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Rows of a Parquet file or folder as dicts, file by file, batch by batch."""
    for f in list_files(path, "*.parquet"):
        pf = pq.ParquetFile(io.BytesIO(read_bytes(f)))
        for batch in pf.iter_batches(batch_size=256, columns=columns):
            yield from batch.to_pylist()


def list_files(path: str, pattern: str = "*") -> list[str]:
    """``path`` itself if it is a file, else the files under it matching ``pattern``, sorted.

    Temporary files left by killed writers are never listed.
    """
    if FileSystems.exists(path) and not _is_dir(path):
        return [path]
    result = FileSystems.match([FileSystems.join(path, pattern)])[0]
    names = sorted(m.path for m in result.metadata_list)
    return [n for n in names if TMP_MARK not in n]


def _is_dir(path: str) -> bool:
    return objectstore.is_dir(path)


# -- leftovers of killed runs ---------------------------------------------------------------------
def clean_tmp(folder: str) -> list[str]:
    """Delete every ``*.tmp-*`` file under ``folder`` (debris of killed or disk-full writers).

    Only call this while holding the folder's :class:`OutputLock`: a live writer's temp file
    would otherwise be deleted under it. Returns the deleted paths.
    """
    if not exists(folder):
        return []
    if "://" not in folder:
        found = [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if TMP_MARK in f]
    else:
        found = [
            m.path for m in FileSystems.match([join(folder, "**")])[0].metadata_list if TMP_MARK in m.path
        ]
    if found:
        FileSystems.delete(sorted(found))
        log.warning("removed %d leftover temporary files under %s", len(found), folder)
    return sorted(found)


# -- one run per output folder --------------------------------------------------------------------
LOCK_NAME = ".lock"


class OutputLocked(PermissionError):
    """Another live run holds the output folder (a PermissionError: the folder may not be written
    now, so the CLIs' user-error handling prints it as one line and exits non-zero)."""


class OutputLock:
    """``with OutputLock(folder):`` -- the folder's only writer for the duration, then debris-free.

    The lock file ``<folder>/.lock`` holds ``{"pid", "host", "started"}`` and is created with
    O_EXCL (local folders), so two runs can never both hold it. A lock whose pid is dead on this
    host is stale (a killed run) and is taken over; a live one, or one from another host, makes
    the second run fail with :class:`OutputLocked` naming the holder. The same process may
    re-enter (the demo's stages run inside its own lock). On entry, leftover ``*.tmp-*`` files
    under the folder are deleted. Remote folders (``gs://``...) get a best-effort lock (no
    atomic create there) and the same message.
    """

    _held: dict[str, int] = {}  # folder -> depth, per process

    def __init__(self, folder: str):
        self.folder = folder.rstrip("/") if "://" not in folder else folder
        self.path = join(self.folder, LOCK_NAME)

    def _holder(self) -> dict | None:
        try:
            info = json.loads(read_bytes(self.path))
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return None if not exists(self.path) else {}

    def _stale(self, info: dict) -> bool:
        if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
            return False
        if info["pid"] == os.getpid():  # our pid, yet not held by us: a dead run whose pid we reuse
            return True
        try:
            os.kill(info["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def __enter__(self) -> OutputLock:
        key = os.path.abspath(self.folder) if "://" not in self.folder else self.folder
        if self._held.get(key):
            self._held[key] += 1
            return self
        makedirs(self.folder)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                         time.gmtime())}
        for _ in range(3):
            if self._create(json.dumps(me).encode()):
                break
            info = self._holder()
            if info is None:  # released meanwhile
                continue
            if info and self._stale(info):
                log.warning("taking over the stale lock of dead pid %s in %s", info.get("pid"), self.folder)
                FileSystems.delete([self.path])
                continue
            who = (
                f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')}"
                if info
                else "another run"
            )
            raise OutputLocked(f"output folder {self.folder} is in use by {who}; wait for it to finish, "
                               f"or delete {self.path} if that run is gone")
        else:
            raise OutputLocked(f"could not take the lock {self.path}")
        self._held[key] = 1
        self._key = key
        clean_tmp(self.folder)
        return self

    def _create(self, data: bytes) -> bool:
        if "://" not in self.path:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return True
        if exists(self.path):
            return False
        with FileSystems.create(self.path) as fh:
            fh.write(data)
        return True

    def __exit__(self, *exc) -> None:
        key = getattr(self, "_key", None) or (os.path.abspath(self.folder) if "://" not in self.folder
                                               else self.folder)
        self._held[key] -= 1
        if self._held[key] == 0:
            del self._held[key]
            if exists(self.path):
                FileSystems.delete([self.path])


# -- what each finished unit was made from --------------------------------------------------------
UNITS_DIR = ".units"


def code_version() -> str:
    """The package version: part of every unit's fingerprint, so an upgrade redoes old units."""
    try:
        from importlib.metadata import version

        return version("instruct-imagen-data")
    except Exception:  # noqa: BLE001 - not installed (a bare checkout)
        return "0+unknown"


def file_sha256(path: str) -> str:
    """Content hash of one file (streamed), the input identity recorded in unit manifests."""
    h = hashlib.sha256()
    with FileSystems.open(path, compression_type="uncompressed") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(inputs: Iterable[str] = (), config: Any = None, stage: str = "",
                extra: Any = None) -> dict[str, Any]:
    """What a unit is made from: input files (by content hash), the stage config, the code version.

    Content hashes, not mtimes, so the manifest (like every output) is byte-identical on a rerun.
    """
    return {"stage": stage, "code": code_version(),
            "inputs": {p: file_sha256(p) for p in sorted(inputs)},
            "config": json.loads(json.dumps(config, sort_keys=True, default=str)), "extra": extra}


def unit_manifest_path(output: str) -> str:
    """``<dir>/.units/<name>.json`` for the unit whose first output is ``<dir>/<name>``."""
    parent, name = FileSystems.split(output)
    return join(parent, UNITS_DIR, f"{name}.json")


def unit_done(outputs: list[str], fp: dict[str, Any]) -> bool:
    """True when every output exists and the unit's manifest records exactly ``fp``.

    A unit with outputs but no manifest, or a manifest of other inputs/config/code, is stale:
    the caller redoes it (its outputs are atomically replaced).
    """
    if not all(exists(p) for p in outputs):
        return False
    m = unit_manifest_path(outputs[0])
    if not exists(m):
        return False
    try:
        got = json.loads(read_bytes(m))
    except ValueError:
        return False
    return got.get("fingerprint") == fp and got.get("outputs") == [FileSystems.split(p)[1] for p in outputs]


def finish_unit(outputs: list[str], fp: dict[str, Any]) -> str:
    """Record that ``outputs`` (already written) were made from ``fp``; call after the outputs."""
    body = {"outputs": [FileSystems.split(p)[1] for p in outputs], "fingerprint": fp}
    return atomic_write_bytes(
        unit_manifest_path(outputs[0]), json.dumps(body, indent=1, sort_keys=True).encode()
    )


def remove_unit(outputs: list[str]) -> None:
    """Delete a unit's outputs and manifest (an output whose input is gone from this run)."""
    gone = [p for p in [*outputs, unit_manifest_path(outputs[0])] if exists(p)]
    if gone:
        FileSystems.delete(gone)


def write_if_changed(path: str, data: bytes) -> bool:
    """Atomically write ``data`` unless ``path`` already holds exactly these bytes; True if written.

    For units whose bytes are computed before the skip decision (reader shards, cluster shards):
    the content itself is the fingerprint, so a rerun after the inputs changed replaces the file.
    """
    if exists(path) and hashlib.sha256(read_bytes(path)).digest() == hashlib.sha256(data).digest():
        return False
    atomic_write_bytes(path, data)
    return True


def holds_output_lock(fn=None, *, arg: str = "output"):
    """Decorator (bare, or with ``arg=``): run the function holding :class:`OutputLock` on its
    ``output`` (or ``arg``) argument."""
    import functools
    import inspect

    def wrap(f):
        sig = inspect.signature(f)

        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            with OutputLock(sig.bind_partial(*args, **kwargs).arguments[arg]):
                return f(*args, **kwargs)

        return wrapper

    return wrap(fn) if fn is not None else wrap

"""Safe reads of one file: only regular files, bounded sizes, symlinks kept inside their input folder.

Every stage that opens a file a user named goes through :func:`read_file_bytes`, so a FIFO,
/dev/zero, a huge file or a symlink escaping the input folder is a reason string, never a hang or
an out-of-memory.
"""

from __future__ import annotations

import os
import stat

from apache_beam.io.filesystems import FileSystems

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
    for test, name in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


READ_CHUNK = 1 << 20


def read_capped(fh, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes of ``fh``, read in 1 MiB chunks: one ``read(max_bytes + 1)``
    makes CPython allocate the whole limit (64 MiB by default) up front for every small image."""
    chunks, left = [], max_bytes + 1
    while left > 0:
        chunk = fh.read(min(READ_CHUNK, left))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


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
                data = read_capped(fh, max_bytes)
        else:
            if not FileSystems.exists(path):
                return None, "missing_file"
            with FileSystems.open(path, compression_type="uncompressed") as fh:
                data = read_capped(fh, max_bytes)
        if len(data) > max_bytes:
            return None, f"file_too_large: more than {max_bytes} bytes"
        return data, None
    except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the input
        return None, f"read_failed: {type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"[:300]

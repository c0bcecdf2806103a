"""Image folder reader: images (recursive) with optional same-stem ``.txt`` caption sidecars.

``a/b/cat.jpg`` takes its caption from ``a/b/cat.txt`` (raw bytes, so non-UTF-8 text is
flagged by ``caption_utf8_ok=False``); an image without a sidecar gets ``caption=None``.
Files that are neither images (by extension) nor sidecars are ignored and counted in the
``ReadStats`` (``ignored_file``) and the log. Paths are Beam filesystem paths.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from apache_beam.io.filesystems import FileSystems

from core.contracts import make_record, url_key
from mining.readers.common import (
    DEFAULT_MAX_IMAGE_BYTES,
    IMAGE_EXTENSIONS,
    ReadStats,
    absolute,
    local_file_error,
    log,
    lower_ext,
    read_file_bytes,
)

SOURCE = "folder"
ERROR_MARK = "!"  # list_folder: the "sidecar" of an unreadable folder carries its OS error
MAX_SIDECAR_BYTES = 1024 * 1024


def scan_files(folder: str, stats: ReadStats | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """(sorted file paths under ``folder``, [(unreadable dir, OS error)]): every entry accounted for.

    Local folders are walked with ``os.scandir`` (symlinked folders are not descended; a symlink or
    special file with an image name is listed and refused when read), so a folder without read
    permission is reported instead of silently skipped (``glob`` drops it). URIs use Beam's match.
    """
    if "://" in folder:
        result = FileSystems.match([FileSystems.join(folder, "**")])[0]
        return sorted(m.path for m in result.metadata_list), []
    files: list[str] = []
    errors: list[tuple[str, str]] = []
    pending = [folder]
    while pending:
        d = pending.pop()
        try:
            with os.scandir(d) as it:
                entries = list(it)
        except OSError as exc:
            errors.append((d, f"unreadable_dir: {type(exc).__name__}: {exc.strerror or exc}"))
            if stats is not None:
                stats.add("unreadable_dir", d)
            continue
        for e in entries:
            try:
                is_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            (pending if is_dir else files).append(e.path)
    return sorted(files), sorted(errors)


def list_folder(folder: str, stats: ReadStats | None = None) -> list[tuple[str, str | None]]:
    """Sorted ``(image_path, sidecar_path or None)`` pairs under ``folder`` (recursive).

    An unreadable subfolder comes out as ``(folder_path, "!" + OS error)``: a unit that becomes
    one reject record, so nothing under the input vanishes without a count.
    """
    stats = stats if stats is not None else ReadStats()
    folder = absolute(folder).rstrip("/")
    files, unreadable = scan_files(folder, stats)
    by_stem: dict[str, list[str]] = {}
    for f in files:
        by_stem.setdefault(os.path.splitext(f)[0], []).append(f)
    pairs: list[tuple[str, str | None]] = []
    for f in files:
        ext = lower_ext(f)
        stem = os.path.splitext(f)[0]
        if ext in IMAGE_EXTENSIONS:
            sidecar = stem + ".txt"
            pairs.append((f, sidecar if sidecar in by_stem.get(stem, ()) else None))
        elif ext == ".txt" and any(lower_ext(o) in IMAGE_EXTENSIONS for o in by_stem[stem]):
            continue  # a caption sidecar
        else:
            stats.add("ignored_file", f)
    if stats.counts["ignored_file"]:
        log.info("folder %s: ignored %d non-image files (e.g. %s)", folder, stats.counts["ignored_file"],
                 stats.examples.get("ignored_file", [])[:3])
    for d, err in unreadable:
        log.warning("folder %s: %s", d, err)
    return sorted(pairs + [(d, ERROR_MARK + err) for d, err in unreadable])


def read_image_file(image_path: str, sidecar: str | None, root: str | None = None,
                    load_bytes: bool = True, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
                    follow_symlinks: bool = False) -> dict[str, Any]:
    """One record for an image file and its optional caption sidecar (the Beam fan-out unit)."""
    caption: bytes | None = None
    meta: dict[str, Any] = {"sidecar": sidecar}
    if root:
        meta["relpath"] = (
            image_path[len(root.rstrip("/")) + 1 :] if image_path.startswith(root) else image_path
        )
    if sidecar is not None and sidecar.startswith(ERROR_MARK):  # an unreadable subfolder
        meta["sidecar"] = None
        return make_record(key=url_key(image_path), url=image_path, caption=None, path=image_path,
                           source=SOURCE, source_meta=meta, read_error=sidecar[len(ERROR_MARK):][:300])
    read = {"max_bytes": max_image_bytes, "root": root, "follow_symlinks": follow_symlinks}
    if sidecar is not None:
        raw, err = read_file_bytes(sidecar, **{**read, "max_bytes": MAX_SIDECAR_BYTES})
        if raw is None:
            meta["sidecar_error"] = err
        else:
            caption = raw.strip()
    image, error = (
        read_file_bytes(image_path, **read) if load_bytes else (None, local_check(image_path, read))
    )
    return make_record(key=url_key(image_path), url=image_path, caption=caption, image=image,
                       path=image_path, source=SOURCE, source_meta=meta, read_error=error)


def local_check(path: str, read: dict[str, Any]) -> str | None:
    """With ``--no-bytes`` the file is still checked (regular, size, symlink) so mining never opens a FIFO."""
    return (
        None
        if "://" in path
        else local_file_error(path, read["max_bytes"], read["root"], read["follow_symlinks"])
    )


def read_folder(folder: str, stats: ReadStats | None = None, load_bytes: bool = True,
                limit: int | None = None, **read_opts: Any) -> Iterator[dict[str, Any]]:
    """Records for every image under ``folder``, in sorted path order (streams the bytes)."""
    root = absolute(folder).rstrip("/")
    pairs = list_folder(root, stats)
    yield from read_pairs(pairs[:limit] if limit is not None else pairs, root, stats, load_bytes, **read_opts)


def read_pairs(pairs: list[tuple[str, str | None]], root: str, stats: ReadStats | None = None,
               load_bytes: bool = True, **read_opts: Any) -> Iterator[dict[str, Any]]:
    """Records for ``(image, sidecar)`` pairs of ``list_folder`` (all of them, or a Beam read unit's
    slice: keys are the paths' own, so any slice gives the same records)."""
    for image_path, sidecar in pairs:
        rec = read_image_file(image_path, sidecar, root=root, load_bytes=load_bytes, **read_opts)
        if rec["read_error"] and stats is not None and not rec["read_error"].startswith("unreadable_dir"):
            stats.add(rec["read_error"].split(":", 1)[0], image_path)
        yield rec

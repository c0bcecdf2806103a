"""Task shards: byte-reproducible WebDataset tars written atomically (``core.samples``'s one shard
writer, format ``iidata.instruction/1``), and readers.

Shards are ``{prefix}-{NNNNN}.tar`` in one folder. A shard file that already exists is
finished (it was renamed into place only when complete) and is skipped on rerun.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import webdataset as wds

from core import samples as sample_format
from core import storage
from datasets.instruction import Sample, from_wds, to_wds

PREFIX = "tasks"


def shard_name(index: int, prefix: str = PREFIX) -> str:
    return f"{prefix}-{index:05d}.tar"


def shard_path(folder: str, index: int, prefix: str = PREFIX) -> str:
    return storage.join(folder, shard_name(index, prefix))


def tar_bytes(samples: Iterable[Sample]) -> bytes:
    """One tar holding ``samples`` in the given order; same samples = same bytes."""
    return sample_format.tar_bytes(to_wds(s) for s in samples)


def write_shard(path: str, samples: Iterable[Sample], overwrite: bool = False) -> str | None:
    """Write one shard atomically; returns the path, or None when it already existed (skipped)."""
    written = sample_format.write_shard(path, (to_wds(s) for s in samples), skip_existing=not overwrite)
    return path if written else None


def list_shards(folder: str, prefix: str = PREFIX) -> list[str]:
    return storage.list_files(folder, f"{prefix}-*.tar")


def iter_raw(paths: str | list[str]) -> Iterator[dict[str, Any]]:
    """Raw (undecoded) WebDataset samples of one shard path, or a list of paths."""
    urls = [paths] if isinstance(paths, str) else list(paths)
    yield from wds.WebDataset(urls, shardshuffle=False, empty_check=False)


def iter_samples(paths: str | list[str]) -> Iterator[Sample]:
    """Samples decoded back into ``Sample`` objects (encoded image bytes kept)."""
    for raw in iter_raw(paths):
        yield from_wds(raw)


def iter_tensors(paths: str | list[str]) -> Iterator[dict[str, Any]]:
    """Samples decoded to tensors: images ``torch.float32 (3, H, W)``, json dict, npy arrays."""
    urls = [paths] if isinstance(paths, str) else list(paths)
    yield from wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("torchrgb")

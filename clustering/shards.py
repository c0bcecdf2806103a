"""Cluster shards: WebDataset tars, one sample per 5-pair cluster (docs/FORMATS.md "Cluster shards").

The sample format (``iidata.cluster/1``) and the tar writer are ``core.samples``'s; this module
turns a cluster row and its images into that sample and names the shard files.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from core import samples as sample_format
from core import storage


def as_jpeg(data: bytes) -> bytes:
    """JPEG bytes as they are; anything else decoded and re-encoded as JPEG (RGB, quality 95)."""
    if data[:3] == b"\xff\xd8\xff":
        return data
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGBA")
        bg = Image.new("RGB", rgb.size, (255, 255, 255))
        bg.paste(rgb, mask=rgb.split()[3])
        buf = io.BytesIO()
        bg.save(buf, "JPEG", quality=95)
        return buf.getvalue()


def sample_files(
    cluster: dict[str, Any], images: list[bytes], captions: list[str]
) -> list[tuple[str, bytes]]:
    """(member name, bytes) of one sample, without the ``__key__`` prefix
    (``core.samples.encode_cluster_sample``; images re-encoded as JPEG when they are not)."""
    fields = sample_format.encode_cluster_sample("", cluster, [as_jpeg(img) for img in images], captions)
    return [(k, v) for k, v in fields.items() if k != "__key__"]


def tar_bytes(samples: list[tuple[str, list[tuple[str, bytes]]]]) -> bytes:
    """A WebDataset tar from (key, files) samples, in the given order (``core.samples.tar_bytes``:
    members of a sample sorted by name, fixed metadata)."""
    return sample_format.tar_bytes({"__key__": key, **dict(files)} for key, files in samples)


def shard_path(out: str, index: int, prefix: str = "clusters") -> str:
    return storage.join(out, "shards", f"{prefix}-{index:05d}.tar")


def write_shard(out: str, index: int, samples: list[tuple[str, list[tuple[str, bytes]]]]) -> str:
    """Write shard ``index`` atomically (samples sorted by key), unless it already holds these bytes
    (a rerun after the clusters changed replaces it)."""
    path = shard_path(out, index)
    sample_format.write_shard(
        path,
        ({"__key__": key, **dict(files)} for key, files in sorted(samples, key=lambda s: s[0])),
        if_changed=True,
    )
    return path

"""Cluster shards: WebDataset tars, one sample per 5-pair cluster (docs/FORMATS.md "Cluster shards")."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

from PIL import Image

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


def sample_files(cluster: dict[str, Any], images: list[bytes], captions: list[str]) -> list[tuple[str, bytes]]:
    """(member name, bytes) of one sample, without the ``__key__`` prefix."""
    meta = {k: cluster[k] for k in ("cluster_id", "domain", "keys", "urls", "similarities")}
    meta["captions"] = captions
    files = [(f"{i}.jpg", as_jpeg(img)) for i, img in enumerate(images)]
    files.append(("txt", (captions[0] if captions else "").encode("utf-8")))  # the seed's caption
    files.append(("json", json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")))
    return files


def tar_bytes(samples: list[tuple[str, list[tuple[str, bytes]]]]) -> bytes:
    """A WebDataset tar from (key, files) samples, in the given order, with fixed metadata."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, files in samples:
            for name, data in files:
                info = tarfile.TarInfo(f"{key}.{name}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def shard_path(out: str, index: int, prefix: str = "clusters") -> str:
    return storage.join(out, "shards", f"{prefix}-{index:05d}.tar")


def write_shard(out: str, index: int, samples: list[tuple[str, list[tuple[str, bytes]]]]) -> str:
    """Write shard ``index`` atomically (samples sorted by key), unless it already holds these bytes
    (a rerun after the clusters changed replaces it)."""
    path = shard_path(out, index)
    storage.write_if_changed(path, tar_bytes(sorted(samples, key=lambda s: s[0])))
    return path

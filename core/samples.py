"""Shard formats: the one WebDataset shard writer, and the encode/decode pair of each sample kind.

Every shard this project writes (cluster shards of the clustering stage, task shards of the tasks
stage, exports) goes through :func:`tar_bytes` / :func:`write_shard`: the bytes of webdataset's
``TarWriter`` (written directly, streamed to the file) with fixed member metadata (mtime 0, uid/gid
0, one user/group name, mode 0444) and each sample's members sorted by name, so the same samples
give the same bytes on every machine and runner; the file is written to a temporary name and
renamed (``core.storage``), so a reader never sees half a shard. See docs/FORMATS.md.

Each sample's ``json`` member carries a ``format`` key naming its kind and version:

- ``iidata.cluster/1`` (:data:`CLUSTER_FORMAT`): one 5-pair cluster of the clustering stage:
  members ``0.jpg`` .. ``{n-1}.jpg`` (the seed first), ``txt`` (the seed's caption) and ``json``
  (``cluster_id``, ``domain``, ``keys``, ``urls``, ``similarities``, ``captions``);
- ``iidata.instruction/1`` (:data:`INSTRUCTION_FORMAT`): one multi-modal instruction of the tasks
  stage: ``target.jpg``, ``ctx{k}.{jpg,png}`` (k = 1 ...), ``txt`` (the instruction), ``json``
  (task, instruction, context with ``[ref#k]`` markers, lineage, meta) and optional
  ``{name}_emb.npy`` text-encoder embeddings.

Shards written before the ``format`` key existed are still read: :func:`sample_format` falls back
to the member names (``0.jpg`` or a ``captions`` list: a cluster; a ``target`` image: an
instruction). The ``[ref#k]`` reference markers live here too, so readers (training) and writers
(datasets) share one definition. Imports no stage code.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CLUSTER_FORMAT = "iidata.cluster/1"
INSTRUCTION_FORMAT = "iidata.instruction/1"
FORMATS = (CLUSTER_FORMAT, INSTRUCTION_FORMAT)

# Member metadata of every tar: fixed, so bytes depend only on the samples (webdataset's defaults).
TAR_MTIME = 0.0
TAR_USER = TAR_GROUP = "bigdata"
TAR_MODE = 0o444
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")

MARKER_RE = re.compile(r"\[ref#(\d+)\]")


def marker(k: int) -> str:
    """The k-th reference marker (1-based): ``[ref#k]``."""
    return f"[ref#{k}]"


def markers_in(text: str) -> list[str]:
    """Distinct markers mentioned in ``text``, in order of first appearance."""
    seen: list[str] = []
    for m in MARKER_RE.finditer(text):
        tag = marker(int(m.group(1)))
        if tag not in seen:
            seen.append(tag)
    return seen


# -- the shard writer ---------------------------------------------------------------------------
def _as_bytes(v: Any) -> bytes:
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v)
    raise TypeError(f"shard member must be bytes or str, not {type(v).__name__}")


_NUL = bytes(tarfile.RECORDSIZE)


def _write_tar(fh: Any, samples: Iterable[Mapping[str, Any]]) -> None:
    """Stream a tar of ``samples`` into ``fh``: the bytes of webdataset's ``TarWriter`` in stream
    mode ("w|") with this module's fixed metadata (``tests/test_samples_format.py`` checks they are
    identical), written directly.

    Each member is its stdlib header (``tarfile.TarInfo.tobuf``, the header ``TarWriter`` writes),
    its data in one ``write`` and the NUL padding to the next 512-byte block; the tar ends with two
    NUL blocks padded to a 10,240-byte record. Skipping ``tarfile``'s chunked copy through a
    ``BytesIO`` per member is what keeps this at or above ``webdataset.ShardWriter``'s speed
    (``bench/peers_shards.py``).
    """
    offset = 0
    for s in samples:
        if "__key__" not in s:
            raise ValueError("a shard sample needs a __key__")
        key = str(s["__key__"])
        members = {k: _as_bytes(v) for k, v in s.items() if not k.startswith("_")}
        for name in sorted(members):
            data = members[name]
            info = tarfile.TarInfo(f"{key}.{name}")
            info.size, info.mtime, info.mode = len(data), TAR_MTIME, TAR_MODE
            info.uname, info.gname = TAR_USER, TAR_GROUP
            header = info.tobuf(tarfile.DEFAULT_FORMAT, tarfile.ENCODING, "surrogateescape")
            pad = -len(data) % tarfile.BLOCKSIZE
            fh.write(header)
            fh.write(data)
            if pad:
                fh.write(_NUL[:pad])
            offset += len(header) + len(data) + pad
    offset += 2 * tarfile.BLOCKSIZE
    fh.write(_NUL[:2 * tarfile.BLOCKSIZE] + _NUL[:-offset % tarfile.RECORDSIZE])


def tar_bytes(samples: Iterable[Mapping[str, Any]]) -> bytes:
    """One WebDataset tar of ``samples`` (``{"__key__": key, member suffix: bytes|str}``), in the
    given order; each sample's members sorted by name, fixed metadata: same samples, same bytes."""
    buf = io.BytesIO()
    _write_tar(buf, samples)
    return buf.getvalue()


def write_shard(path: str, samples: Iterable[Mapping[str, Any]], *, skip_existing: bool = False,
                if_changed: bool = False) -> bool:
    """Write one shard atomically (temp file + rename); True when written.

    ``skip_existing``: a shard already at ``path`` is finished (it was renamed into place only when
    complete) and is kept. ``if_changed``: rewrite only when the bytes differ (the content is the
    fingerprint, so a rerun after the inputs changed replaces it).
    """
    from core import storage

    if skip_existing and storage.exists(path):
        return False
    if if_changed:
        return storage.write_if_changed(path, tar_bytes(samples))
    with storage.atomic_open(path) as fh:  # streamed: no whole-shard buffer, no extra copy
        _write_tar(fh, samples)
    return True


def image_member(raw: Mapping[str, Any], stem: str) -> bytes | None:
    """The bytes of image member ``stem.{jpg,jpeg,png,webp}`` of a raw sample, or None."""
    for ext in IMAGE_EXTS:
        if f"{stem}.{ext}" in raw:
            return raw[f"{stem}.{ext}"]
    return None


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8")


def sample_json(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The ``json`` member of a raw sample as a dict (KeyError when absent, ValueError when not an
    object or not JSON)."""
    meta = json.loads(raw["json"].decode("utf-8") if isinstance(raw["json"], bytes) else raw["json"])
    if not isinstance(meta, dict):
        raise ValueError("sample json is not an object")
    return meta


def sample_format(raw: Mapping[str, Any], meta: Mapping[str, Any]) -> str | None:
    """The sample's ``format``; for shards written before it existed, the documented fallback by
    member names: ``0.*`` image or a ``captions`` list -> cluster, ``target.*`` image -> instruction."""
    fmt = meta.get("format")
    if fmt is not None:
        return fmt if isinstance(fmt, str) else None
    if "0.jpg" in raw or "captions" in meta:
        return CLUSTER_FORMAT
    if image_member(raw, "target") is not None:
        return INSTRUCTION_FORMAT
    return None


# -- cluster samples ----------------------------------------------------------------------------
CLUSTER_FIELDS = ("cluster_id", "domain", "keys", "urls", "similarities")


@dataclass
class ClusterSample:
    """A decoded cluster sample: ``images[i]`` is member i's encoded bytes (None when missing)."""

    key: str
    meta: dict[str, Any]
    captions: list[str]
    images: list[bytes | None] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Members in the cluster (from its captions; 5 for the paper's clusters)."""
        return len(self.captions)


def encode_cluster_sample(key: str, cluster: Mapping[str, Any], images: list[bytes],
                          captions: list[str]) -> dict[str, Any]:
    """Members of one cluster sample: ``i.jpg`` (JPEG bytes, the caller encodes), ``txt`` (the
    seed's caption), ``json`` (the cluster's fields, ``captions``, ``format``)."""
    meta = {k: cluster[k] for k in CLUSTER_FIELDS}
    meta["captions"] = list(captions)
    meta["format"] = CLUSTER_FORMAT
    out: dict[str, Any] = {"__key__": key}
    for i, img in enumerate(images):
        out[f"{i}.jpg"] = img
    out["txt"] = (captions[0] if captions else "").encode("utf-8")
    out["json"] = _json(meta)
    return out


def decode_cluster_sample(raw: Mapping[str, Any]) -> ClusterSample:
    """A raw cluster sample back (ValueError when its captions are not a list of strings)."""
    meta = sample_json(raw)
    caps = meta.get("captions") or []
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise ValueError("cluster captions must be a list of strings")
    images = [image_member(raw, str(i)) for i in range(len(caps))]
    return ClusterSample(key=str(raw.get("__key__", "")), meta=meta, captions=caps, images=images)


# -- instruction samples ------------------------------------------------------------------------
@dataclass
class InstructionFields:
    """A decoded instruction sample: its ``json`` document and member bytes (context in order)."""

    key: str
    doc: dict[str, Any]
    target: bytes
    context: list[bytes]
    embeddings: dict[str, Any] = field(default_factory=dict)


def _npy(arr: Any) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def encode_instruction_sample(key: str, doc: Mapping[str, Any], target: bytes,
                              context: list[tuple[str, bytes]], embeddings: Mapping[str, Any] | None = None,
                              ) -> dict[str, Any]:
    """Members of one instruction sample. ``doc``: the json document (``instruction``, ``context``
    [{marker, text, kind, key, ext}], ...); ``context``: (ext, bytes) per context item in marker
    order; ``embeddings``: name -> (tokens, dim) array, stored float16 as ``{name}_emb.npy``."""
    import numpy as np

    out: dict[str, Any] = {"__key__": key, "target.jpg": target}
    for k, (ext, data) in enumerate(context, start=1):
        out[f"ctx{k}.{ext}"] = data
    out["json"] = json.dumps({**doc, "format": INSTRUCTION_FORMAT}, sort_keys=True).encode("utf-8")
    for name, arr in sorted((embeddings or {}).items()):
        out[f"{name}_emb.npy"] = _npy(np.asarray(arr).astype(np.float16))
    out["txt"] = str(doc.get("instruction", "")).encode("utf-8")  # what jpg+txt readers take
    return out


def decode_instruction_sample(raw: Mapping[str, Any]) -> InstructionFields:
    """A raw instruction sample back (KeyError for a missing member); embeddings never unpickle."""
    import numpy as np

    doc = sample_json(raw)
    ctx = [raw[f"ctx{k}.{c['ext']}"] for k, c in enumerate(doc.get("context") or [], start=1)]
    embs = {name[: -len("_emb.npy")]: np.load(io.BytesIO(v), allow_pickle=False)
            for name, v in raw.items() if isinstance(name, str) and name.endswith("_emb.npy")}
    target = image_member(raw, "target")
    if target is None:
        raise KeyError("target")
    return InstructionFields(
        key=str(raw.get("__key__", "")), doc=doc, target=target, context=ctx, embeddings=embs
    )

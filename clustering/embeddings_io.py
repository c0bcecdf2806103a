"""Embedding one record shard, and clip-retrieval's on-disk layout.

Layout under ``<out>/embeddings``: ``img_emb/img_emb_{i}.npy`` (float32, L2-normalised),
``text_emb/text_emb_{i}.npy`` and ``metadata/metadata_{i}.parquet`` with the same row order
(``key``, ``url``, ``caption``, ``sha256``, ``domain``, ``quality``, ``caption_hash``,
``phash``, ``phash_flip``, ``dhash`` (int64 bit patterns), ``thumb`` (32x32 RGB bytes for copy
verification, ``clustering/copy_features.py``) and ``embedding``).
``metadata_{i}`` is written last, so its presence marks a finished shard (skipped on rerun).
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa

from clustering.copy_features import thumbnail
from clustering.dedup import caption_hash
from clustering.phash import dhash, phash_pair, to_signed
from core import storage
from core.contracts import reject

STAGE = "cluster"  # as the stage summary of pipelines.build_clusters
META_SCHEMA = pa.schema([
    ("key", pa.string()), ("url", pa.string()), ("caption", pa.string()), ("sha256", pa.string()),
    ("domain", pa.string()), ("quality", pa.float32()), ("caption_hash", pa.string()),
    ("phash", pa.int64()), ("phash_flip", pa.int64()), ("dhash", pa.int64()), ("thumb", pa.binary()),
    ("embedding", pa.list_(pa.float32())),
])


def shard_paths(out: str, i: int) -> dict[str, str]:
    base = storage.join(out, "embeddings")
    return {
        "img_emb": storage.join(base, "img_emb", f"img_emb_{i}.npy"),
        "text_emb": storage.join(base, "text_emb", f"text_emb_{i}.npy"),
        "metadata": storage.join(base, "metadata", f"metadata_{i}.parquet"),
        "rejects": storage.join(base, "rejects", f"rejects_{i}.parquet"),
    }


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


MAX_SIDE = 1024  # decoded images are shrunk to this at once: the embedders use <= 320 px, hashes 32 px


def shrink(im):
    """``im`` with its long side at most ``MAX_SIDE`` (a 12-MP photo is 36 MB decoded; 64 of them
    per embedding batch was the clustering stage's memory peak). Smaller images are untouched,
    so their hashes and thumbnails are unchanged."""
    from PIL import Image

    w, h = im.size
    if max(w, h) <= MAX_SIDE:
        return im
    s = MAX_SIDE / max(w, h)
    return im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BOX, reducing_gap=3.0)


def embed_batch(rows, embedder) -> tuple[list[dict], list[dict]]:
    """Decode, hash and embed one batch of mined rows: (metadata rows with ``embedding`` and
    ``text_embedding`` as float vectors, reject rows). One model call per batch of decoded images."""
    from core.decode import decode_record

    images, batch, rejects = [], [], []
    for row in rows:
        try:
            dec = decode_record(row)
        except Exception as exc:  # noqa: BLE001 - one bad record never takes others down
            rejects.append(reject(row, STAGE, "decode_error", repr(exc)))
            continue
        if isinstance(dec, dict):
            rejects.append(dict(dec, stage=STAGE))
            continue
        images.append(shrink(dec.image))
        del dec
        batch.append({k: row.get(k) for k in ("key", "url", "caption", "sha256", "domain", "quality")})
    if not batch:
        return [], rejects
    img = embedder.embed_images(images)
    txt = embedder.embed_texts([r.get("caption") or "" for r in batch])
    metas = []
    for row, im, emb, temb in zip(batch, images, img, txt):
        ph, phf = phash_pair(im)
        q = row.get("quality")
        metas.append(
            {
                "key": row["key"],
                "url": row.get("url"),
                "caption": row.get("caption"),
                "sha256": row.get("sha256"),
                "domain": row.get("domain") or "all",
                "quality": float(q) if q is not None else None,
                "caption_hash": caption_hash(row.get("caption")),
                "phash": to_signed(ph),
                "phash_flip": to_signed(phf),
                "dhash": to_signed(dhash(im)),
                "thumb": thumbnail(im),
                "embedding": emb,
                "text_embedding": temb,
            }
        )
    return metas, rejects


def shard_arrays(kept: list[dict], dim: int) -> tuple[list[dict], np.ndarray, np.ndarray | None]:
    """Embedded rows -> (metadata rows as written, image matrix, text matrix or None when empty)."""
    img = np.stack([r["embedding"] for r in kept]) if kept else np.zeros((0, dim), np.float32)
    txt = np.stack([r["text_embedding"] for r in kept]) if kept else None
    metas = [{**{k: v for k, v in r.items() if k != "text_embedding"}, "embedding": r["embedding"].tolist()}
             for r in kept]
    return metas, img.astype(np.float32), txt


def embed_rows(
    rows, embedder, batch_size: int = 64
) -> tuple[list[dict], np.ndarray, np.ndarray | None, list[dict]]:
    """Decode, hash and embed mined rows (any iterable, consumed batch by batch, so only one batch of
    encoded bytes is held): (metadata rows, image vectors, text vectors, reject rows)."""
    from core.stage import batches

    kept, rejects = [], []
    for chunk in batches(rows, batch_size):
        k, r = embed_batch(chunk, embedder)
        kept += k
        rejects += r
    metas, img, txt = shard_arrays(kept, getattr(embedder, "dim", 0))
    return metas, img, txt, rejects


def write_shard(out: str, i: int, metas: list[dict], img: np.ndarray, txt: np.ndarray | None,
                rejects: list[dict]) -> None:
    """Write one embedding shard atomically, metadata last."""
    from core.contracts import REJECT_SCHEMA

    p = shard_paths(out, i)
    storage.atomic_write_bytes(p["img_emb"], npy_bytes(img))
    if txt is not None:
        storage.atomic_write_bytes(p["text_emb"], npy_bytes(txt.astype(np.float32)))
    storage.write_parquet(rejects, p["rejects"], schema=REJECT_SCHEMA)
    storage.write_parquet(metas, p["metadata"], schema=META_SCHEMA)


def read_shard_meta(out: str, i: int) -> list[dict]:
    return storage.read_parquet(shard_paths(out, i)["metadata"]).to_pylist()


def to_point(meta: dict) -> dict:
    """A clustering point (what flows through the Beam graph) from a metadata row."""
    p = {
        k: meta.get(k)
        for k in ("key", "url", "sha256", "domain", "quality", "caption_hash", "phash", "phash_flip", "thumb")
    }
    p["embedding"] = np.asarray(meta["embedding"], dtype=np.float32)
    return p

"""Streaming WebDataset shards (cluster shards for stage 1, task shards for stage 2) into training batches.

Determinism and resume: the shard list is split into ``world_size * num_workers`` streams
(stream g gets shards i with i % G == g; a stream with no shard of its own borrows shard g % n, so
uneven shard counts never leave a rank idle). Every stream is infinite (epochs reshuffle its shard
order from the seed), so training runs a fixed number of steps and all ranks stay in lockstep.
Raw samples pass a seeded shuffle buffer; the n-th raw sample of a stream is then decoded with an
RNG seeded by (seed, stream, n), so a stream is a pure function of (shards, seed, position) and
resuming means replaying undecoded raw samples up to the saved position.

Samples are decoded by their ``format`` (``core.samples``: ``iidata.cluster/1`` for stage 1,
``iidata.instruction/1`` for stage 2); shards written before that key existed are recognised by
their member names (``core.samples.sample_format``), so they still train.
Bad samples (undecodable image, missing field, bad JSON, unknown format) become counted rejects and
are skipped; an unreadable shard counts one ``bad_shard`` reject.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset import tariterators

from core import config as cfgsys
from core import samples as sample_format
from core import storage
from core.config import knob
from core.samples import CLUSTER_FORMAT, INSTRUCTION_FORMAT, marker


@dataclass(frozen=True)
class DataConfig:
    """The ``data`` section of a training config; image_size, lowres_size, max_context and seed are
    filled in by the trainer from the model, sr and train sections."""

    image_size: int = field(default=64, metadata=knob(
        "target (and context) resolution (default: model.image_size)", hidden=True))
    lowres_size: int = field(default=0, metadata=knob(
        ">0: also yield the target downsampled to this size (set from sr.lowres_size)", hidden=True))
    max_context: int = field(
        default=3, metadata=knob("context slots (set from model.max_context)", hidden=True)
    )
    batch_size: int = field(default=8, metadata=knob("samples per micro-batch per rank", min=1))
    shuffle_buffer: int = field(default=64, metadata=knob(
        "raw samples in the seeded shuffle buffer (0 = off)", min=0))
    num_workers: int = field(default=0, metadata=knob(
        "DataLoader workers per rank, each an independent shard stream (0 = in the main process)", min=0))
    seed: int = field(default=0, metadata=knob("data seed (set from train.seed)", hidden=True))

    @classmethod
    def from_dict(cls, d: dict) -> DataConfig:
        return cfgsys.from_dict(cls, d, "data")


def expand_shards(spec: str | list[str]) -> list[str]:
    """Comma-separated list, brace pattern (``a-{00000..00009}.tar``), folder or glob -> sorted tar paths."""
    if isinstance(spec, list | tuple):
        parts = list(spec)
    else:
        parts = [p for p in spec.split(",") if p]
    out: list[str] = []
    for p in parts:
        if "{" in p:
            out.extend(tariterators.braceexpand.braceexpand(p))
        elif any(c in p for c in "*?["):
            folder, pattern = p.rsplit("/", 1) if "/" in p else (".", p)
            out.extend(storage.list_files(folder, pattern))
        elif p.endswith(".tar"):
            out.append(p)
        else:
            out.extend(storage.list_files(p, "*.tar"))
    if not out:
        raise FileNotFoundError(f"no shards in {spec!r}")
    return sorted(dict.fromkeys(out))


def stream_shards(shards: list[str], stream: int, n_streams: int) -> list[str]:
    mine = [s for i, s in enumerate(shards) if i % n_streams == stream]
    return mine or [shards[stream % len(shards)]]


def _raw_samples(url: str, stats: Counter) -> Iterator[dict]:
    try:
        with storage.FileSystems.open(url) as fh:
            tar = tarfile.open(fileobj=fh, mode="r|*")
            files = (
                {"fname": m.name, "data": tar.extractfile(m).read(), "__url__": url}
                for m in tar
                if m.isfile()
            )
            yield from tariterators.group_by_keys(files)
    except (tarfile.TarError, OSError, ValueError):
        stats["read"] += 1
        stats["rejected:bad_shard"] += 1


def load_image(data: bytes, size: int) -> torch.Tensor:
    """Bytes -> RGB, centre square crop, resize to ``size``; float tensor (3, size, size) in [-1, 1]."""
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (size * 2, size * 2))
    img = img.convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    img = img.resize((size, size), Image.BICUBIC, reducing_gap=2.0)
    arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def _npy(raw: dict, name: str) -> np.ndarray | None:
    """A (tokens, dim) float embedding, or None when absent; never unpickles (object arrays are refused).

    Corrupt files, object/string dtypes, other shapes and NaN/Inf values raise ``RejectSample``.
    """
    data = raw.get(name)
    if data is None:
        return None
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:  # bad header, truncated, or pickled (object dtype)
        raise RejectSample("bad_npy") from e
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu" or arr.ndim != 2 or arr.shape[1] == 0:
        raise RejectSample("bad_npy")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise RejectSample("non_finite_embedding")
    return arr


_image_field = sample_format.image_member


class RejectSample(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def decode_sample(raw: dict, cfg: DataConfig, rng: random.Random) -> dict:
    """A raw cluster or task sample -> training example (target, text, K context slots)."""
    try:
        meta = json.loads(raw["json"].decode("utf-8"))
    except KeyError as e:
        raise RejectSample("missing_json") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RejectSample("bad_json") from e
    if not isinstance(meta, dict):  # valid JSON but a list, number or string
        raise RejectSample("bad_json")
    try:
        return _decode(raw, meta, cfg, rng)
    except (TypeError, AttributeError, KeyError, IndexError, ValueError) as e:  # fields of the wrong type
        raise RejectSample("malformed_sample") from e


def _decode(raw: dict, meta: dict, cfg: DataConfig, rng: random.Random) -> dict:
    K = cfg.max_context
    fmt = sample_format.sample_format(raw, meta)
    if fmt == CLUSTER_FORMAT:  # stage 1 cluster shard
        cluster = sample_format.decode_cluster_sample(raw)
        caps = cluster.captions
        idx = [i for i, img in enumerate(cluster.images) if img is not None]  # cluster size from the data
        if len(idx) < 2:
            raise RejectSample("cluster_too_small")
        rng.shuffle(idx)
        tgt, ctx = idx[0], idx[1 : 1 + K]
        target_bytes, text, text_emb = cluster.images[tgt], caps[tgt], None
        ctx_items = [(cluster.images[i], f"{marker(j + 1)} {caps[i]}", None) for j, i in enumerate(ctx)]
    elif fmt == INSTRUCTION_FORMAT and _image_field(raw, "target") is not None:  # stage 2 task shard
        target_bytes = _image_field(raw, "target")
        text = meta.get("instruction") or meta.get("target_caption") or ""
        if not isinstance(text, str):
            raise RejectSample("malformed_sample")
        text_emb = _npy(raw, "instruction_emb.npy")
        ctx_items = []
        for k, c in enumerate((meta.get("context") or [])[:K], start=1):
            b = _image_field(raw, f"ctx{k}")
            if b is None:
                raise RejectSample("missing_context_image")
            ctx_text = c.get("text", c.get("marker", marker(k)))
            if not isinstance(ctx_text, str):
                raise RejectSample("malformed_sample")
            ctx_items.append((b, ctx_text, _npy(raw, f"ctx{k}_emb.npy")))
    else:
        raise RejectSample("unknown_sample_format")
    try:
        image = load_image(target_bytes, cfg.image_size)
        ctx_imgs = [load_image(b, cfg.image_size) for b, _, _ in ctx_items]
    except Exception as e:  # PIL raises many types on corrupt data
        raise RejectSample("undecodable_image") from e
    ctx_images = torch.zeros(K, 3, cfg.image_size, cfg.image_size)
    ctx_mask = torch.zeros(K, dtype=torch.bool)
    for j, im in enumerate(ctx_imgs):
        ctx_images[j], ctx_mask[j] = im, True
    out = {
        "key": raw.get("__key__", ""),
        "image": image,
        "text": text,
        "text_emb": text_emb,
        "ctx_images": ctx_images,
        "ctx_mask": ctx_mask,
        "ctx_text": [t for _, t, _ in ctx_items] + [""] * (K - len(ctx_items)),
        "ctx_emb": [e for _, _, e in ctx_items] + [None] * (K - len(ctx_items)),
    }
    if cfg.lowres_size:
        out["lowres"] = torch.nn.functional.interpolate(
            image[None], size=(cfg.lowres_size,) * 2, mode="bilinear", antialias=True, align_corners=False)[0]
    return out


def collate(examples: list[dict]) -> dict:
    batch = {k: torch.stack([e[k] for e in examples]) for k in ("image", "ctx_images", "ctx_mask")}
    if "lowres" in examples[0]:
        batch["lowres"] = torch.stack([e["lowres"] for e in examples])
    for k in ("key", "text", "text_emb", "ctx_text", "ctx_emb"):
        batch[k] = [e[k] for e in examples]
    return batch


class ShardStream(IterableDataset):
    """Infinite, deterministic, resumable stream of batches for one rank (split further across workers).

    Each yielded batch carries ``_stream`` (global stream id), ``_pos`` (raw samples consumed by that
    stream after this batch) and ``_stats`` (cumulative read/kept/rejected counters of the stream).
    """

    def __init__(self, shards: list[str], cfg: DataConfig, rank: int = 0, world_size: int = 1,
                 start_positions: dict[int, int] | None = None, rotation: int = 0):
        self.shards, self.cfg, self.rank, self.world_size = shards, cfg, rank, world_size
        self.start_positions = dict(start_positions or {})
        self.rotation = rotation

    def n_streams(self) -> int:
        return self.world_size * max(1, self.cfg.num_workers)

    def _stream_id(self) -> int:
        info = get_worker_info()
        wid = info.id if info is not None else 0
        w = max(1, self.cfg.num_workers)
        # DataLoader takes worker batches round-robin from worker 0: after a resume with B batches
        # consumed, physical worker i plays logical stream (i + B) % W so the order continues exactly.
        return self.rank * w + (wid + self.rotation) % w

    def raw_stream(self, g: int, stats: Counter) -> Iterator[dict]:
        mine = stream_shards(self.shards, g, self.n_streams())
        rng = random.Random(f"{self.cfg.seed}/{g}/buffer")
        buf: list[dict] = []
        epoch = 0
        while True:
            order = list(mine)
            random.Random(f"{self.cfg.seed}/{g}/epoch{epoch}").shuffle(order)
            got = 0
            for url in order:
                for raw in _raw_samples(url, stats):
                    got += 1
                    if self.cfg.shuffle_buffer <= 1:
                        yield raw
                        continue
                    buf.append(raw)
                    if len(buf) >= self.cfg.shuffle_buffer:
                        j = rng.randrange(len(buf))
                        buf[j], buf[-1] = buf[-1], buf[j]
                        yield buf.pop()
            if got == 0 and stats["rejected:bad_shard"] >= len(order) * (epoch + 1):
                raise RuntimeError(f"stream {g}: no readable samples in {order}")
            epoch += 1

    def __iter__(self) -> Iterator[dict]:
        g = self._stream_id()
        stats: Counter = Counter()
        pos = self.start_positions.get(g, 0)
        raw_iter = self.raw_stream(g, stats)
        for _ in range(pos):  # replay without decoding
            next(raw_iter)
        stats.clear()
        pending: list[dict] = []
        for raw in raw_iter:
            rng = random.Random(f"{self.cfg.seed}/{g}/{pos}")
            pos += 1
            stats["read"] += 1
            try:
                pending.append(decode_sample(raw, self.cfg, rng))
                stats["kept"] += 1
            except RejectSample as e:
                stats[f"rejected:{e.reason}"] += 1
                continue
            if len(pending) == self.cfg.batch_size:
                batch = collate(pending)
                batch.update(_stream=g, _pos=pos, _stats=dict(stats))
                pending = []
                yield batch


def make_loader(shards: list[str], cfg: DataConfig, rank: int = 0, world_size: int = 1,
                start_positions: dict[int, int] | None = None, rotation: int = 0) -> DataLoader:
    """DataLoader over ShardStream: workers each yield whole batches, taken round-robin (in order)."""
    ds = ShardStream(shards, cfg, rank, world_size, start_positions, rotation)
    kw = {"num_workers": cfg.num_workers, "batch_size": None}
    if cfg.num_workers > 0:
        kw.update(prefetch_factor=2, persistent_workers=False)
    return DataLoader(ds, **kw)


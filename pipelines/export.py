"""Export a mined, clustered or task subset as an img2dataset-layout WebDataset folder.

    python -m pipelines.export --input RUN/mined    --output OUT/photos   [--domain photo --min-quality 0.5]
    python -m pipelines.export --input RUN/clusters --output OUT/clusters
    python -m pipelines.export --input RUN/tasks    --output OUT/t2i      [--task t2i --with-context]
    ... [--image-size 256 --resize-mode center_crop]   fixed-size targets that batch without a resize

Writes what img2dataset writes with ``output_format="webdataset"`` (docs/FORMATS.md "img2dataset
export"): ``NNNNN.tar`` holding ``KEY.jpg`` / ``KEY.txt`` / ``KEY.json`` per sample, ``NNNNN.parquet``
listing every exported row (a failed row has ``status`` != ``success`` and no tar member, as in
img2dataset), ``NNNNN_stats.json``; plus ``sizes.json`` (open_clip reads the sample count from it) and
``summary.json`` (read = kept + rejected + filtered). So open_clip's training loader (keys ``jpg;png`` /
``txt``), img2dataset consumers and ``python -m mining.readers`` read it as they are.

Same input and options = same bytes; a shard whose tar exists is finished and is not rewritten.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from PIL import Image, ImageOps

from clustering.shards import as_jpeg
from core import config as cfgsys
from core import samples as sample_format
from core import storage
from core.config import knob
from core.contracts import load_image_bytes

KINDS = ("mined", "clusters", "tasks")
RESIZE_MODES = ("no", "keep_ratio", "center_crop", "border")  # img2dataset's names and meanings
MAX_PIXELS = 64_000_000  # bigger images are rejected, not decoded
TOO_LARGE = "image_too_large"

# img2dataset's parquet columns (downloader.py), then ours: the record key (mining.readers keeps it)
# and the scalar fields of each kind (the tar's json holds all of them, nested ones included).
BASE_COLUMNS = [("url", pa.string()), ("caption", pa.string()), ("key", pa.string()), ("status", pa.string()),
                ("error_message", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
                ("original_width", pa.int32()), ("original_height", pa.int32()), ("exif", pa.string()),
                ("sha256", pa.string()), ("record_key", pa.string())]
EXTRA_COLUMNS = {
    "mined": [("domain", pa.string()), ("quality", pa.float64())],
    "clusters": [("domain", pa.string()), ("cluster_id", pa.string()), ("cluster_rank", pa.int32()),
                 ("similarity", pa.float64())],
    "tasks": [("task", pa.string())],
}


@dataclass(frozen=True)
class ExportConfig:
    """What to export and how. Filters select a subset; rows they drop are counted as ``filtered``."""

    kind: str = field(default="auto", metadata=knob("input kind (default: auto = detect it)",
                                                    choices=("auto", *KINDS)))
    shard_size: int = field(default=10_000, metadata=knob(  # img2dataset's number_sample_per_shard default
        "samples per shard", min=1))
    image_size: int | None = field(
        default=None, metadata=knob("target side in pixels (with --resize-mode)", min=1)
    )
    resize_mode: str = field(default="no", metadata=knob(
        "img2dataset's: center_crop or border give fixed-size, batchable images", choices=RESIZE_MODES))
    jpeg_quality: int = field(default=95, metadata=knob("JPEG quality of re-encoded images", min=1, max=100))
    domains: tuple[str, ...] = field(default=(), metadata=knob(
        "only these domains (repeatable or comma-separated; default: all)", flag="--domain", repeat=True))
    tasks: tuple[str, ...] = field(default=(), metadata=knob(
        "only these tasks (repeatable or comma-separated; default: all)", flag="--task", repeat=True))
    min_quality: float | None = field(default=None, metadata=knob("mined rows: only quality >= this"))
    limit: int | None = field(default=None, metadata=knob("at most this many rows (default: all)", min=0))
    with_context: bool = field(default=False, metadata=knob(
        "task exports: add ctxN.jpg|png members", flag="--with-context"))


class ExportError(ValueError):
    """Bad input folder or options: one line for the user, non-zero exit."""


# ---------------------------------------------------------------- input discovery


def _has(path: str, pattern: str) -> bool:
    return storage.exists(path) and bool(storage.list_files(path, pattern))


def resolve_input(path: str, kind: str = "auto") -> tuple[str, str]:
    """(kind, folder) for a run folder, a stage output folder, or the shard/parquet folder itself."""
    path = path.rstrip("/")
    candidates = {
        "mined": [
            (storage.join(path, "kept"), "*.parquet"),
            (storage.join(path, "mined", "kept"), "*.parquet"),
            (path, "*.parquet"),
        ],
        "clusters": [
            (storage.join(path, "shards"), "clusters-*.tar"),
            (storage.join(path, "clusters", "shards"), "clusters-*.tar"),
            (path, "clusters-*.tar"),
        ],
        "tasks": [
            (storage.join(path, "shards"), "tasks-*.tar"),
            (storage.join(path, "tasks", "shards"), "tasks-*.tar"),
            (path, "tasks-*.tar"),
        ],
    }
    kinds = KINDS if kind == "auto" else (kind,)
    if kind not in ("auto", *KINDS):
        raise ExportError(f"unknown --kind {kind!r} (one of auto, {', '.join(KINDS)})")
    found = []
    for k in kinds:
        hit = next((folder for folder, pattern in candidates[k] if _has(folder, pattern)), None)
        if hit:
            found.append((k, hit))
    if not found:
        raise ExportError(f"{path}: no mined kept/*.parquet, clusters-*.tar or tasks-*.tar found")
    if len(found) > 1:
        raise ExportError(f"{path} holds {', '.join(k for k, _ in found)} outputs: pick one with --kind")
    return found[0]


# ---------------------------------------------------------------- items per kind
# An item: record_key, url, caption (the txt), image (bytes or None), ext fields (extra tar members), meta.


def _mined_items(folder: str, cfg: ExportConfig) -> Iterator[tuple[dict[str, Any] | None, str | None]]:
    for row in storage.iter_rows(folder):
        if cfg.domains and row.get("domain") not in cfg.domains:
            yield None, "filtered"
            continue
        if cfg.min_quality is not None and (row.get("quality") is None or row["quality"] < cfg.min_quality):
            yield None, "filtered"
            continue
        image, error = None, None
        try:
            image = load_image_bytes(row)
        except OSError as exc:
            error = f"unreadable_path: {exc}"[:200]
        yield (
            {
                "key": row["key"],
                "url": row.get("url"),
                "caption": row.get("caption"),
                "image": image,
                "files": {},
                "error": error,
                "meta": {"domain": row.get("domain"), "quality": row.get("quality")},
            },
            None,
        )


def _raw_samples(folder: str, pattern: str) -> Iterator[dict[str, Any]]:
    import webdataset as wds

    urls = storage.list_files(folder, pattern)
    yield from wds.WebDataset(urls, shardshuffle=False, empty_check=False)


def _cluster_items(folder: str, cfg: ExportConfig) -> Iterator[tuple[dict[str, Any] | None, str | None]]:
    """Every distinct member of every cluster, seed first; a key seen in an earlier cluster is filtered."""
    seen: set[str] = set()
    for raw in _raw_samples(folder, "clusters-*.tar"):
        meta = json.loads(raw["json"])
        for i, key in enumerate(meta["keys"]):
            if key in seen or (cfg.domains and meta.get("domain") not in cfg.domains):
                yield None, "filtered"
                continue
            seen.add(key)
            sims = meta.get("similarities") or []
            yield (
                {
                    "key": key,
                    "url": meta["urls"][i],
                    "caption": meta["captions"][i],
                    "image": raw.get(f"{i}.jpg"),
                    "files": {},
                    "error": None,
                    "meta": {
                        "domain": meta.get("domain"),
                        "cluster_id": meta["cluster_id"],
                        "cluster_rank": i,
                        "similarity": sims[i] if i < len(sims) else None,
                    },
                },
                None,
            )


def _task_items(folder: str, cfg: ExportConfig) -> Iterator[tuple[dict[str, Any] | None, str | None]]:
    """One sample per task sample: target image, instruction as txt, the task json as meta."""
    for raw in _raw_samples(folder, "tasks-*.tar"):
        doc = json.loads(raw["json"])
        if cfg.tasks and doc["task"] not in cfg.tasks:
            yield None, "filtered"
            continue
        files = {}
        if cfg.with_context:
            files = {
                f"ctx{k}.{c['ext']}": raw[f"ctx{k}.{c['ext']}"] for k, c in enumerate(doc["context"], start=1)
            }
        yield (
            {
                "key": raw["__key__"],
                "url": "",
                "caption": doc["instruction"],
                "image": raw.get("target.jpg"),
                "files": files,
                "error": None,
                "meta": doc,
            },
            None,
        )


ITEMS = {"mined": _mined_items, "clusters": _cluster_items, "tasks": _task_items}


# ---------------------------------------------------------------- images


def fit_image(
    data: bytes, size: int | None, mode: str, quality: int = 95
) -> tuple[bytes, tuple[int, int], tuple[int, int]]:
    """(JPEG bytes, (w, h), (original w, original h)) with img2dataset's resize modes.

    ``no`` keeps the bytes (non-JPEG re-encoded as JPEG); ``keep_ratio`` scales the shorter side to
    ``size``; ``center_crop`` scales the shorter side to ``size`` and crops a ``size`` square;
    ``border`` scales the longer side to ``size`` and pads to a white square. The last two give
    equal shapes, so webdataset's default batching stacks them.
    """
    with Image.open(io.BytesIO(data)) as im:
        if im.width * im.height > MAX_PIXELS:
            raise ValueError(f"{TOO_LARGE}: {im.width}x{im.height}")
        original = im.size
        if mode == "no" or not size:
            out = as_jpeg(data)
            with Image.open(io.BytesIO(out)) as check:
                check.load()
                return out, check.size, original
        im.draft("RGB", (size, size))
        img = ImageOps.exif_transpose(im).convert("RGB")
    w, h = img.size
    if mode == "border":
        scale = size / max(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
        canvas = Image.new("RGB", (size, size), (255, 255, 255))
        canvas.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
        img = canvas
    else:
        scale = size / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        if mode == "center_crop":
            left, top = (img.width - size) // 2, (img.height - size) // 2
            img = img.crop((left, top, left + size, top + size))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, optimize=False)
    return buf.getvalue(), img.size, original


# ---------------------------------------------------------------- writing


def sample_key(shard: int, index: int, shard_size: int) -> str:
    """img2dataset's key: shard id then the index in the shard, zero-padded (9 digits for 10k shards)."""
    oom = max(1, math.ceil(math.log10(shard_size)))
    return f"{shard * 10 ** oom + index:0{5 + oom}d}"


def _schema(kind: str) -> pa.Schema:
    return pa.schema([pa.field(n, t) for n, t in BASE_COLUMNS + EXTRA_COLUMNS[kind]])


def _row_and_files(
    item: dict[str, Any], key: str, kind: str, cfg: ExportConfig
) -> tuple[dict[str, Any], list | None]:
    """The parquet row of one item and its tar members (None when it failed: no members, as in
    img2dataset)."""
    row: dict[str, Any] = {"url": item["url"] or "", "caption": item["caption"] or "", "key": key,
                           "status": "success", "error_message": None, "width": None, "height": None,
                           "original_width": None, "original_height": None, "exif": None, "sha256": None,
                           "record_key": item["key"]}
    for name, _ in EXTRA_COLUMNS[kind]:
        row[name] = item["meta"].get(name)
    if item.get("error") or not item["image"]:
        row["status"], row["error_message"] = "failed_to_resize", item.get("error") or "missing_image"
        return row, None
    try:
        jpg, (w, h), (ow, oh) = fit_image(item["image"], cfg.image_size, cfg.resize_mode, cfg.jpeg_quality)
    except Exception as exc:  # noqa: BLE001 - an undecodable image is this row's counted failure
        reason = TOO_LARGE if str(exc).startswith(TOO_LARGE) else f"undecodable_image: {type(exc).__name__}"
        row["status"], row["error_message"] = "failed_to_resize", f"{reason}: {exc}"[:200]
        return row, None
    row.update(
        width=w, height=h, original_width=ow, original_height=oh, sha256=hashlib.sha256(jpg).hexdigest()
    )
    doc = {k: v for k, v in row.items() if k not in ("exif",)} | {"meta": item["meta"]}
    files = [("jpg", jpg), ("txt", row["caption"].encode("utf-8")),
             ("json", json.dumps(doc, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8"))]
    return row, sorted(
        files + list(item["files"].items())
    )  # sorted, as webdataset's TarWriter (img2dataset) does


def _write_shard(output: str, index: int, kind: str, rows: list[dict], samples: list) -> dict[str, Any]:
    name = f"{index:05d}"
    status = Counter(
        r["status"] if r["status"] == "success" else r["error_message"].split(":")[0] for r in rows
    )
    stats = {"count": len(rows), "successes": len(samples), "failed_to_download": 0,
             "failed_to_resize": len(rows) - len(samples), "status_dict": dict(sorted(status.items()))}
    tar_path = storage.join(output, f"{name}.tar")
    if not storage.exists(tar_path):  # the tar goes last: it marks the shard finished
        storage.write_parquet(
            pa.Table.from_pylist(rows, schema=_schema(kind)), storage.join(output, f"{name}.parquet")
        )
        storage.atomic_write_bytes(
            storage.join(output, f"{name}_stats.json"), json.dumps(stats, indent=4).encode()
        )
        sample_format.write_shard(tar_path, ({"__key__": k, **dict(f)} for k, f in samples))
    return stats


def export(input_path: str, output: str, cfg: ExportConfig | None = None) -> dict[str, Any]:
    """Write the export; returns the summary (also written to ``output/summary.json``)."""
    cfg = cfg or ExportConfig()
    if cfg.resize_mode not in RESIZE_MODES:
        raise ExportError(f"unknown --resize-mode {cfg.resize_mode!r} (one of {', '.join(RESIZE_MODES)})")
    if cfg.resize_mode != "no" and not cfg.image_size:
        raise ExportError(f"--resize-mode {cfg.resize_mode} needs --image-size")
    if cfg.shard_size < 1:
        raise ExportError("--shard-size must be >= 1")
    kind, folder = resolve_input(input_path, cfg.kind)
    counts: Counter = Counter()
    sizes: dict[str, int] = {}
    rows: list[dict] = []
    samples: list = []
    shard = 0

    def flush() -> None:
        nonlocal rows, samples, shard
        stats = _write_shard(output, shard, kind, rows, samples)
        sizes[f"{shard:05d}.tar"] = stats["successes"]
        rows, samples, shard = [], [], shard + 1

    for item, skipped in ITEMS[kind](folder, cfg):
        counts["read"] += 1
        if skipped or (cfg.limit is not None and counts["exported"] >= cfg.limit):
            counts["filtered"] += 1
            continue
        counts["exported"] += 1
        key = sample_key(shard, len(rows), cfg.shard_size)
        row, files = _row_and_files(item, key, kind, cfg)
        rows.append(row)
        if files is None:
            counts[f"rejected:{row['error_message'].split(':')[0]}"] += 1
        else:
            samples.append((key, files))
        if len(rows) == cfg.shard_size:
            flush()
    if rows or shard == 0:
        flush()
    rejected = {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("rejected:")}
    kept = sum(sizes.values())
    summary = {
        "stage": "export",
        "kind": kind,
        "input": folder,
        "read": counts["read"],
        "kept": kept,
        "rejected": rejected,
        "filtered": counts["filtered"],
        "accounted": counts["read"] == kept + sum(rejected.values()) + counts["filtered"],
        "config": {
            "image_size": cfg.image_size,
            "resize_mode": cfg.resize_mode,
            "shard_size": cfg.shard_size,
            "domains": cfg.domains,
            "tasks": cfg.tasks,
            "min_quality": cfg.min_quality,
            "limit": cfg.limit,
            "with_context": cfg.with_context,
        },
        "outputs": {"shards": len(sizes), "folder": output},
    }
    storage.atomic_write_bytes(storage.join(output, "sizes.json"), json.dumps(sizes, indent=2).encode())
    storage.atomic_write_bytes(storage.join(output, "summary.json"), json.dumps(summary, indent=2).encode())
    return summary


def main(argv: list[str] | None = None) -> int:
    p = cfgsys.parser_for("python -m pipelines.export", __doc__)
    p.add_argument(
        "--input", required=True, help="run folder, mined/ clusters/ or tasks/ output, or their shards"
    )
    p.add_argument("--output", required=True, help="export folder (NNNNN.tar/.parquet/_stats.json)")
    cfgsys.add_flags(p, ExportConfig, "export options")
    cfgsys.add_config_args(p)
    try:
        a, cfg, _ = cfgsys.parse(p, ExportConfig, argv)
        summary = export(a.input, a.output, cfg)
    except (ExportError, cfgsys.ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # one line, as core.cli prints for every stage CLI
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Shard writing beside webdataset's ``ShardWriter`` and img2dataset's writer, same samples, side by side.

    python -m bench.peers_shards [--n 2000] [--per-shard 500] [--rounds 3]

Samples: JPEG + caption + JSON per sample (COCO val images when ../shared/data is present, cycled,
else procedural JPEGs), held in memory before timing. Two comparisons of equal work:

- tar only: ours (``core.samples.write_shard``: webdataset's ``TarWriter`` streamed into a temp
  file beside the shard, fixed tar metadata, renamed into place when complete) vs
  ``webdataset.ShardWriter(maxcount=per_shard)``;
- tar + per-shard parquet: ours (``pipelines.export._write_shard``: parquet, stats JSON, then the
  tar, each atomic) vs img2dataset 1.47 ``WebDatasetSampleWriter`` (tar + buffered parquet).

Rounds alternate the sides; each side's best is kept. Prints samples/s and ours / theirs.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import shutil
import tempfile
import time

import numpy as np
from PIL import Image


def _samples(n: int) -> list[tuple[str, bytes, str, dict]]:
    root = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "coco_mini", "val2017")
    blobs = [open(f, "rb").read() for f in sorted(glob.glob(os.path.join(root, "*.jpg")))[:200]]
    if not blobs:
        rng = np.random.default_rng(0)
        for _ in range(50):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (256, 320, 3), dtype=np.uint8)).save(buf, "JPEG", quality=85)
            blobs.append(buf.getvalue())
    out = []
    for i in range(n):
        meta = {"url": f"https://example.com/{i}.jpg", "caption": f"caption {i}", "key": f"{i:09d}",
                "status": "success", "error_message": None, "width": 640, "height": 480,
                "original_width": 640, "original_height": 480, "exif": None, "sha256": None}
        out.append((f"{i:09d}", blobs[i % len(blobs)], f"caption {i}", meta))
    return out


def ours_tar(samples, out: str, per: int) -> None:
    from core.samples import write_shard

    for s in range(0, len(samples), per):
        chunk = samples[s:s + per]
        write_shard(os.path.join(out, f"{s // per:05d}.tar"),
                    ({"__key__": k, "jpg": b, "txt": c, "json": json.dumps(m)} for k, b, c, m in chunk))


def wds_shardwriter(samples, out: str, per: int) -> None:
    import webdataset as wds

    with wds.ShardWriter(os.path.join(out, "%05d.tar"), maxcount=per, verbose=0) as sink:
        for k, b, c, m in samples:
            sink.write({"__key__": k, "jpg": b, "txt": c, "json": m})


def ours_export(samples, out: str, per: int) -> None:
    from pipelines.export import _write_shard

    for s in range(0, len(samples), per):
        rows, files = [], []
        for k, b, c, m in samples[s:s + per]:
            rows.append({**m, "record_key": k})
            files.append((k, [("jpg", b), ("json", json.dumps(m).encode()), ("txt", c.encode())]))
        _write_shard(out, s // per, "tasks", [dict(r, task=None) for r in rows], files)


def img2dataset_writer(samples, out: str, per: int) -> None:
    import pyarrow as pa
    from img2dataset.writer import WebDatasetSampleWriter

    schema = pa.schema(
        [
            ("url", pa.string()),
            ("caption", pa.string()),
            ("key", pa.string()),
            ("status", pa.string()),
            ("error_message", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("original_width", pa.int32()),
            ("original_height", pa.int32()),
            ("exif", pa.string()),
            ("sha256", pa.string()),
        ]
    )
    for s in range(0, len(samples), per):
        w = WebDatasetSampleWriter(s // per, out, True, 5, schema, "jpg")
        for k, b, c, m in samples[s:s + per]:
            w.write(b, k, c, dict(m))
        w.close()


PAIRS = [
    ("tar only", ("ours write_shard (atomic)", ours_tar), ("webdataset ShardWriter", wds_shardwriter)),
    (
        "tar + parquet",
        ("ours export shard", ours_export),
        ("img2dataset WebDatasetSampleWriter", img2dataset_writer),
    ),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--per-shard", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    samples = _samples(a.n)
    mb = sum(len(b) for _, b, _, _ in samples) / 2**20
    print(
        f"{a.n} samples ({mb:.0f} MiB of JPEG), {a.per_shard} per shard, "
        f"best of {a.rounds} alternating rounds"
    )
    tmp = tempfile.mkdtemp(prefix="bench_shards_")
    try:
        for label, (our_name, our_fn), (peer_name, peer_fn) in PAIRS:
            best = {our_name: float("inf"), peer_name: float("inf")}
            for r in range(a.rounds):
                for name, fn in (
                    ((our_name, our_fn), (peer_name, peer_fn))
                    if r % 2 == 0
                    else ((peer_name, peer_fn), (our_name, our_fn))
                ):
                    out = os.path.join(tmp, f"{len(best)}-{r}-{name.split()[0]}")
                    os.makedirs(out)
                    try:
                        t = time.perf_counter()
                        fn(samples, out, a.per_shard)
                        best[name] = min(best[name], time.perf_counter() - t)
                    except ImportError as exc:
                        best[name] = float("nan")
                        print(f"  {name}: not run ({exc})")
                    shutil.rmtree(out, ignore_errors=True)
            for name, sec in best.items():
                print(f"  {label:<14} {name:<36} {a.n / sec:9.0f} samples/s")
            print(
                f"  {label:<14} ratio ours / {peer_name:<23} {best[peer_name] / best[our_name]:6.2f}x "
                "(goal >= 1.0x)"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

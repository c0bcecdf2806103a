"""Toy shard writers in exactly the docs/FORMATS.md layouts (cluster and task shards), used by the
model/train tests while the real shard producers are built in parallel, plus format checks."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
from PIL import Image

from core import storage

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
THINGS = ["dog", "cat", "car", "tree", "house", "boat", "bird", "flower"]


def smooth_image(rng: np.random.Generator, size: int = 32) -> Image.Image:
    """A random low-frequency colour image (4x4 noise upsampled)."""
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.BILINEAR)


def encode(img: Image.Image, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=95) if fmt == "JPEG" else img.save(buf, format=fmt)
    return buf.getvalue()


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def write_tar(path: str, samples: list[dict]) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for s in samples:
            key = s["__key__"]
            for field, data in s.items():
                if field == "__key__":
                    continue
                info = tarfile.TarInfo(f"{key}.{field}")
                info.size = len(data)
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))
    return storage.atomic_write_bytes(path, buf.getvalue())


def caption(rng: np.random.Generator) -> str:
    return f"a {COLORS[rng.integers(len(COLORS))]} {THINGS[rng.integers(len(THINGS))]}"


def write_cluster_shards(folder: str, n_shards: int = 2, per_shard: int = 4, size: int = 32, seed: int = 0,
                         corrupt: int = 0) -> list[str]:
    """Stage-1 cluster shards: ``0.jpg``..``4.jpg`` + json; the first ``corrupt`` samples get a
    broken 0.jpg."""
    rng = np.random.default_rng(seed)
    paths, n = [], 0
    for s in range(n_shards):
        samples = []
        for _ in range(per_shard):
            cid = f"c{n:05d}"
            caps = [caption(rng) for _ in range(5)]
            sample = {"__key__": cid}
            for i in range(5):
                sample[f"{i}.jpg"] = encode(smooth_image(rng, size))
            if n < corrupt:
                sample["0.jpg"] = b"\xff\xd8 not a jpeg"
            sample["json"] = json.dumps(
                {
                    "cluster_id": cid,
                    "domain": "toy",
                    "keys": [f"{cid}-{i}" for i in range(5)],
                    "urls": [f"toy://{cid}/{i}" for i in range(5)],
                    "captions": caps,
                    "similarities": [1.0, 0.9, 0.8, 0.7, 0.6],
                }
            ).encode()
            samples.append(sample)
            n += 1
        paths.append(write_tar(storage.join(folder, f"clusters-{s:05d}.tar"), samples))
    return paths


def write_task_shards(folder: str, n_shards: int = 2, per_shard: int = 4, size: int = 32, seed: int = 0,
                      emb_dim: int | None = None) -> list[str]:
    """Stage-2 task shards (style-transfer-like, 2 contexts, one PNG); optional ``*_emb.npy`` of
    width emb_dim."""
    rng = np.random.default_rng(seed)
    paths, n = [], 0
    for s in range(n_shards):
        samples = []
        for _ in range(per_shard):
            key = f"style_transfer-{n:08x}"
            cap = caption(rng)
            meta = {
                "task": "style_transfer",
                "instruction": "Render [ref#2] in the style of [ref#1].",
                "target_caption": cap,
                "context": [
                    {
                        "marker": "[ref#1]",
                        "text": "[ref#1] style image: watercolor",
                        "kind": "style",
                        "key": "k1",
                    },
                    {"marker": "[ref#2]", "text": "[ref#2] content image", "kind": "content", "key": "k2"},
                ],
                "target_key": f"t{n}",
                "lineage": [f"t{n}", "k1", "k2"],
                "text_encoder": "all-MiniLM-L6-v2",
            }
            sample = {"__key__": key, "target.jpg": encode(smooth_image(rng, size)),
                      "ctx1.jpg": encode(smooth_image(rng, size)),
                      "ctx2.png": encode(smooth_image(rng, size), "PNG"), "json": json.dumps(meta).encode()}
            if emb_dim:
                sample["instruction_emb.npy"] = npy(rng.standard_normal((9, emb_dim)).astype(np.float16))
                sample["ctx1_emb.npy"] = npy(rng.standard_normal((6, emb_dim)).astype(np.float16))
                sample["ctx2_emb.npy"] = npy(rng.standard_normal((5, emb_dim)).astype(np.float16))
            samples.append(sample)
            n += 1
        paths.append(write_tar(storage.join(folder, f"tasks-{s:05d}.tar"), samples))
    return paths


def test_toy_shards_are_webdataset_readable(tmp_path):
    import webdataset as wds

    cl = write_cluster_shards(str(tmp_path / "c"), n_shards=2, per_shard=3)
    tk = write_task_shards(str(tmp_path / "t"), n_shards=1, per_shard=2, emb_dim=8)
    got = list(wds.WebDataset(cl, shardshuffle=False, empty_check=False))
    assert len(got) == 6 and all(f"{i}.jpg" in got[0] for i in range(5))
    assert json.loads(got[0]["json"])["captions"][0].startswith("a ")
    got = list(wds.WebDataset(tk, shardshuffle=False, empty_check=False))
    assert len(got) == 2 and {"target.jpg", "ctx1.jpg", "ctx2.png", "instruction_emb.npy"} <= set(got[0])

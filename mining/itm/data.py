"""Image-caption pairs for training the offline image-text projection, split by image.

Sources: ``coco_mini`` and ``flickr8k_1k`` (``metadata.json``: one entry per image with its 5
human captions). The split is fixed by the sha1 of ``"<dataset>/<file>"``, so an image and all
its captions land in one split, and the same file always lands in the same split:

* COCO: train 50%, val 20%, test 30% (a larger test share, so that the domain accuracy on
  COCO can be reported on images the projection never saw);
* Flickr8k: train 70%, val 10%, test 20%.

Features (EfficientNet-Lite0 pooled image vectors, MiniLM caption vectors) are cached in one
``.npz`` (no pickle) under ``out/itm_cache`` (gitignored), keyed by the list of files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
DATASETS = ("coco_mini", "flickr8k_1k")
SPLITS = {"coco_mini": (0.5, 0.7), "flickr8k_1k": (0.7, 0.8)}  # train below the first, val below the second
DEFAULT_CACHE = "out/itm_cache"
CAPTIONS_PER_IMAGE = 5


def split_of(dataset: str, file: str) -> str:
    """"train", "val" or "test" for one image (sha1 of dataset/file)."""
    h = int(hashlib.sha1(f"{dataset}/{file}".encode()).hexdigest()[:8], 16) / 2**32
    a, b = SPLITS.get(dataset, (0.7, 0.8))
    return "train" if h < a else "val" if h < b else "test"


@dataclass
class Pair:
    dataset: str
    file: str  # relative to the dataset folder
    path: str
    captions: list[str]
    split: str
    main_category: str | None = None


def load_pairs(data: str | Path = DEFAULT_DATA, datasets=DATASETS) -> list[Pair]:
    """Every image with exactly CAPTIONS_PER_IMAGE captions (first 5 when more), in file order."""
    out = []
    for ds in datasets:
        meta = Path(data) / ds / "metadata.json"
        if not meta.exists():
            continue
        for e in json.loads(meta.read_text(encoding="utf-8")):
            caps = [c for c in (e.get("captions") or [e.get("caption")]) if c and c.strip()]
            if len(caps) < CAPTIONS_PER_IMAGE:
                continue
            out.append(Pair(ds, e["file"], str(Path(data) / ds / e["file"]), caps[:CAPTIONS_PER_IMAGE],
                            split_of(ds, e["file"]), e.get("main_category")))
    return out


def features(pairs: list[Pair], cache_dir: str = DEFAULT_CACHE) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1280) image vectors and (N, 5, 384) caption vectors of ``pairs``, cached on disk."""
    from PIL import Image

    from core.features import ImageFeatures, TextFeatures

    tag = hashlib.sha1("\n".join(p.path for p in pairs).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"features-{tag}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        return z["image"], z["text"]
    img_f, txt_f = ImageFeatures(), TextFeatures()
    img = []
    for s in range(0, len(pairs), 64):
        ims = [Image.open(p.path).convert("RGB") for p in pairs[s : s + 64]]
        img.append(img_f.embed(ims))
    image = np.concatenate(img).astype(np.float32)
    text = txt_f.embed([c for p in pairs for c in p.captions]).reshape(len(pairs), CAPTIONS_PER_IMAGE, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, image=image, text=text.astype(np.float32))
    tmp.replace(path)
    return image, text.astype(np.float32)

"""Text-to-image queries over the clustering stage's embeddings (clip-retrieval layout).

    python -m clustering.query --embeddings OUT --text "a dog" [--k 10] [--space itm|openclip:M:P]

``OUT`` is a ``pipelines.build_clusters`` output (or its ``embeddings/`` folder). The space
follows the embedder recorded in ``OUT/summary.json``: an ``openclip:`` embedding is searched
with that CLIP model's text encoder (its own space); the ``offline`` EfficientNet-Lite0 vectors
are projected with the shipped image-text projection (:mod:`mining.itm`). Prints one JSON line
per hit: rank, key, cosine, caption, url.
"""

from __future__ import annotations

import io
import json
import re
import sys
from dataclasses import dataclass, field

import numpy as np

from core import cli, storage
from core import config as cfgsys
from core.config import knob


@dataclass(frozen=True)
class QueryOptions:
    """``python -m clustering.query`` options besides the folder and the text."""

    k: int = field(default=10, metadata=knob("hits to print", min=1))
    space: str | None = field(default=None, metadata=knob(
        "itm, itm:PATH or openclip:MODEL:PRETRAINED (default: from the embedder)"))


def _index(name: str) -> int:
    m = re.search(r"_(\d+)\.\w+$", name)
    return int(m.group(1)) if m else -1


def load_embeddings(folder: str) -> tuple[np.ndarray, list[dict], str | None]:
    """(image vectors (N, D), metadata rows (key, caption, url), embedder spec or None) of a
    clustering output."""
    base = folder if storage.exists(storage.join(folder, "img_emb")) else storage.join(folder, "embeddings")
    root = folder if base != folder else folder.rstrip("/").rsplit("/", 1)[0]
    vecs, rows = [], []
    for meta in sorted(storage.list_files(storage.join(base, "metadata"), "*.parquet"), key=_index):
        i = _index(meta)
        emb = storage.join(base, "img_emb", f"img_emb_{i}.npy")
        if not storage.exists(emb):
            continue
        v = np.load(io.BytesIO(storage.read_bytes(emb)), allow_pickle=False)
        r = storage.read_parquet(meta, columns=["key", "caption", "url"]).to_pylist()
        if len(r) != len(v):
            raise ValueError(f"shard {i}: {len(v)} vectors but {len(r)} metadata rows")
        vecs.append(v.astype(np.float32))
        rows += r
    if not vecs:
        raise FileNotFoundError(f"no embedding shards under {base}")
    spec = None
    summary = storage.join(root, "summary.json")
    if storage.exists(summary):
        cfg = json.loads(storage.read_bytes(summary)).get("config") or {}
        spec = (cfg.get("embedding") or {}).get("embedder") or cfg.get("embedder")  # older summaries: flat
    return np.concatenate(vecs), rows, spec


def search(
    vectors: np.ndarray, rows: list[dict], text: str, space, embedder: str | None, k: int = 10
) -> list[dict]:
    """The ``k`` images nearest to ``text`` in ``space`` (offline vectors are projected first)."""
    if embedder and embedder.startswith("openclip:"):
        iv = vectors
    elif hasattr(space, "embed_image_features"):
        iv = space.embed_image_features(vectors)
    else:
        raise ValueError(f"embeddings made by {embedder!r} can't be searched in {space.name}")
    if iv.shape[1] != space.embed_texts(["x"]).shape[1]:
        raise ValueError(f"embedding dim {iv.shape[1]} does not match the space {space.name}")
    sims = iv @ space.embed_texts([text])[0]
    order = np.argsort(-sims, kind="stable")[:k]
    return [
        {
            "rank": r + 1,
            "key": rows[i]["key"],
            "cosine": round(float(sims[i]), 4),
            "caption": rows[i]["caption"],
            "url": rows[i]["url"],
        }
        for r, i in enumerate(order)
    ]


def main(argv: list[str] | None = None) -> int:
    from mining.itm.model import make_space

    ap = cfgsys.parser_for("python -m clustering.query", __doc__)
    ap.add_argument("--embeddings", required=True, help="build_clusters output folder (or its embeddings/)")
    ap.add_argument("--text", required=True, help="query text")
    cfgsys.add_flags(ap, QueryOptions, "query options")
    cfgsys.add_config_args(ap)
    a, opts, _ = cfgsys.parse(ap, QueryOptions, argv)  # flag mistakes: ConfigError, one line via cli.run
    try:
        vectors, rows, embedder = load_embeddings(a.embeddings)
        if (
            embedder
            and embedder not in ("offline", "")
            and not embedder.startswith("openclip:")
            and not opts.space
        ):
            raise ValueError(f"no image-text space for embedder {embedder!r}; pass --space")
        space = make_space(
            opts.space or (embedder if embedder and embedder.startswith("openclip:") else "itm")
        )
        hits = search(vectors, rows, a.text, space, embedder, opts.k)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for h in hits:
        print(json.dumps(h))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))

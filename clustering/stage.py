"""The clustering stage's per-row work as a stage object (``core/stage.py``): embedding.

:class:`EmbedStage` decodes, hashes and embeds a batch of mined rows; :func:`embed_file` runs it
over one kept Parquet file and writes that file's embedding shard (clip-retrieval layout,
``clustering/embeddings_io.py``), skipping a shard whose manifest matches. The Beam graph
(``pipelines/cluster_transforms.py:EmbedShard``) and the local path (``clustering/local.py``)
both call :func:`embed_file`, so they write the same bytes.
"""

from __future__ import annotations

from typing import Any

from clustering import embeddings_io
from clustering.config import EmbeddingConfig
from core import storage
from core.stage import Stage, batches


class EmbedStage(Stage):
    """Mined rows -> metadata rows with ``embedding``/``text_embedding`` (+ hashes, thumbnail);
    undecodable rows -> ``decode_error`` / decode rejects."""

    name = "embed"
    config_cls = EmbeddingConfig
    reads = ("key", ("image", "path"))
    adds = ("embedding", "text_embedding", "phash", "phash_flip", "dhash", "thumb", "caption_hash")

    def setup(self) -> None:
        from clustering.embedders import make_embedder

        self.embedder = make_embedder(self.config.embedder, batch_size=min(self.config.batch_size, 64),
                                      faces=self.config.faces)

    def process_batch(self, rows: list[dict]) -> tuple[list[dict], list[dict]]:
        return embeddings_io.embed_batch(rows, self.embedder)

    @property
    def dim(self) -> int:
        return getattr(self.embedder, "dim", 0)


def embed_fingerprint(path: str, cfg: EmbeddingConfig) -> dict[str, Any]:
    """What an embedding shard depends on: its kept file, the embedder, the batch size, the code."""
    return storage.fingerprint(
        [path], {"embedder": cfg.embedder, "batch_size": cfg.batch_size, "faces": cfg.faces}, stage="embed"
    )


def embed_file(stage: EmbedStage, output: str, i: int, path: str) -> list[dict]:
    """Embedding shard ``i`` of ``output`` from kept file ``path`` (redone only when new or its file,
    embedder or code changed); returns its clustering points."""
    paths = embeddings_io.shard_paths(output, i)
    unit = [paths["metadata"], paths["img_emb"], paths["rejects"]]
    fp = embed_fingerprint(path, stage.config)
    if not storage.unit_done(unit, fp):
        stage.ensure_setup()
        kept, rejects = [], []
        for chunk in batches(storage.iter_rows(path), stage.config.batch_size):
            k, r = stage.process_batch(chunk)
            kept += k
            rejects += r
        metas, img, txt = embeddings_io.shard_arrays(kept, stage.dim)
        embeddings_io.write_shard(output, i, metas, img, txt, rejects)
        storage.finish_unit(unit, fp)
    else:
        metas = embeddings_io.read_shard_meta(output, i)
    return [embeddings_io.to_point(m) for m in metas]

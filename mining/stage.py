"""The mining stage as a stage object: decode -> quality score -> domain -> filter, per batch.

``MineStage.process_batch(records) -> (kept, rejects)``: each record is decoded once
(``core.decode``), scored by the quality scorer (``mining.quality``) and labelled by the domain
classifier (``mining.domains``) in one model call per batch, then filtered (``mining.filter``).
Kept rows gain the quality parts, ``domain``, ``domain_scores`` and the decoded ``width``/``height``.
``pipelines/mine.py`` runs it on Beam, one input file at a time; ``core.stage.run_local`` runs it
without Beam.
"""

from __future__ import annotations

import json
from typing import Any

from core.stage import Row, Stage
from mining.config import MiningConfig

_MODELS: dict[str, tuple] = {}  # per-process cache: one scorer + classifier per model config
KEPT_COLUMNS = (
    "quality",
    "quality_technical",
    "quality_brisque",
    "quality_learned",
    "domain",
    "domain_scores",
    "width",
    "height",
)


def load_models(cfg: MiningConfig) -> tuple:
    """(QualityScorer, domain classifier) for ``cfg``, loaded once per worker process."""
    from mining.domains import make_classifier
    from mining.quality.scorer import get_scorer

    key = json.dumps([cfg.quality_weights, cfg.use_brisque, cfg.domains, cfg.clip_model, cfg.clip_pretrained,
                      cfg.extra], sort_keys=True, default=str)
    if key not in _MODELS:
        _MODELS[key] = (get_scorer(cfg.quality_weights, cfg.use_brisque), make_classifier(cfg))
    return _MODELS[key]


class MineStage(Stage):
    """Record rows in, scored and filtered rows out; every record is kept or one reject."""

    name = "mine"
    config_cls = MiningConfig
    reads = ("key", ("image", "path"))  # a record file without them: foreign_schema rejects
    adds = KEPT_COLUMNS

    def setup(self) -> None:
        self.scorer, self.classifier = load_models(self.config)

    def process_batch(self, rows: list[Row]) -> tuple[list[Row], list[Row]]:
        from core.decode import Decoded, decode_record
        from mining.domains import label
        from mining.filter import apply_filter

        self.ensure_setup()
        cfg = self.config
        kept: list[Row] = []
        rejects: list[Row] = []
        decoded: list[Decoded] = []
        for rec in rows:
            out = decode_record(rec, cfg)
            if isinstance(out, Decoded):
                decoded.append(out)
            else:
                rejects.append(out)
        if not decoded:
            return kept, rejects
        images = [d.image for d in decoded]
        scores = self.scorer.score(images)
        probs = self.classifier.probs(images, [d.record["caption"] for d in decoded])
        for d, q, (dom, dom_json, best) in zip(decoded, scores, label(probs, cfg.domains)):
            # Scores are stored (and filtered) at 6 decimals: BRISQUE's last digits vary with the
            # worker process's threading, and reruns on any runner must give identical files.
            q = {k: round(v, 6) if isinstance(v, float) else v for k, v in q.items()}
            row: dict[str, Any] = dict(d.record, **q, domain=dom, domain_scores=dom_json, domain_score=best)
            ok, rej = apply_filter(row, cfg)
            if rej is not None:
                rejects.append(rej)
            else:
                ok.pop("domain_score", None)
                kept.append(ok)
        return kept, rejects

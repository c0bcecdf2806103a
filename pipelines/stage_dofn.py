"""The one generic Beam DoFn: runs any ``core.stage.Stage`` on keyed batches of rows.

Input elements are ``(key, [row, ...])`` (a model batch; the key says where its outputs go, e.g. the
input file); outputs are ``(key, ("kept", row))`` and ``(key, ("reject", row))``. The stage is built
from its class and config JSON in ``setup()``, so models load once per worker. Counters
``<stage>/kept`` and ``<stage>/reject_<reason>``; progress every 200 rows on stderr (logging).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from core import config as cfgsys

log = logging.getLogger("pipelines.stage")


class StageDoFn(beam.DoFn):
    def __init__(self, stage_cls: type, config_json: str):
        self.stage_cls, self.config_json = stage_cls, config_json
        self.kept = Metrics.counter(stage_cls.name, "kept")
        self.done = 0
        self.t0 = 0.0

    def setup(self) -> None:
        import json

        cls = self.stage_cls.config_cls
        cfg = cfgsys.from_dict(cls, json.loads(self.config_json)) if cls is not None else None
        self.stage = self.stage_cls(cfg)
        self.stage.ensure_setup()
        self.t0 = time.time()

    def process(self, item: tuple[Any, list[dict]]):
        key, rows = item
        kept, rejects = self.stage.process_batch(rows)
        for row in kept:
            self.kept.inc()
            yield key, ("kept", row)
        for row in rejects:
            Metrics.counter(self.stage.name, f"reject_{row['reason']}").inc()
            yield key, ("reject", row)
        before, self.done = self.done, self.done + len(rows)
        if self.done // 200 != before // 200:
            rate = self.done / max(time.time() - self.t0, 1e-6)
            log.warning("%s: %d records on this worker (%.1f/s)", self.stage.name, self.done, rate)

"""The stage contract: every stage is an object that maps a batch of rows to (kept, rejects).

A stage declares the columns it reads (:meth:`Stage.inputs`) and the columns it adds
(:meth:`Stage.outputs`); :meth:`Stage.check_input` compares them with an input's columns before any
row is processed, so a wrong input is one clear error, not a column of nulls. :meth:`Stage.setup`
loads models once per worker; :meth:`Stage.process_batch` must keep every row accounted for: each
input row comes out either kept (possibly with added columns) or as one reject row with a reason.

The same object runs three ways: :func:`run_local` (no Beam: tests, benchmarks, the demo's small
runs), ``pipelines.stage_dofn.StageDoFn`` (any Beam runner), and a stage's own graph in
``pipelines/`` where it needs the whole set (joins, group-bys, dedup passes). The idea follows
datatrove's ``PipelineStep`` and NeMo-Curator's ``ProcessingStage`` (``inputs()``/``outputs()``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

from core.cli import InputError
from core.config import closest, to_dict

Row = dict[str, Any]


class StageInputError(InputError):
    """The input lacks a column the stage reads."""


class Stage:
    """Base class: set ``name``, ``config_cls``; override :meth:`process_batch` (and :meth:`setup`)."""

    name: ClassVar[str] = "stage"
    config_cls: ClassVar[type | None] = None
    #: columns every input row must have; a tuple inside means "one of these"
    reads: ClassVar[tuple[str | tuple[str, ...], ...]] = ()
    #: columns the stage adds to kept rows
    adds: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any = None):
        if config is None and self.config_cls is not None:
            config = self.config_cls()
        self.config = config
        self._ready = False

    # -- contract ---------------------------------------------------------------------------
    def inputs(self) -> tuple[str | tuple[str, ...], ...]:
        """Columns read (a tuple entry: at least one of them)."""
        return self.reads

    def outputs(self) -> tuple[str, ...]:
        """Columns added to kept rows."""
        return self.adds

    def setup(self) -> None:
        """Load models and other per-worker state (called once before the first batch)."""

    def process_batch(self, rows: list[Row]) -> tuple[list[Row], list[Row]]:
        """(kept rows, reject rows); ``len(kept) + len(rejects) == len(rows)``."""
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------------
    def ensure_setup(self) -> None:
        if not self._ready:
            self.setup()
            self._ready = True

    def missing_columns(self, columns: Sequence[str]) -> list[str]:
        have = set(columns)
        missing = []
        for want in self.inputs():
            options = want if isinstance(want, tuple) else (want,)
            if not have & set(options):
                missing.append("/".join(options))
        return missing

    def check_input(self, columns: Sequence[str], source: str) -> None:
        """Raise :class:`StageInputError` naming the missing columns (and the closest present)."""
        missing = self.missing_columns(columns)
        if missing:
            hints = "".join(closest(m.split("/")[0], list(columns)) for m in missing)
            raise StageInputError(f"{source}: stage {self.name} needs column {', '.join(missing)}{hints}; "
                                  f"it has {', '.join(list(columns)[:20])}")

    def describe(self) -> dict[str, Any]:
        """Name, columns and config: what a summary records about the stage."""
        return {
            "stage": self.name,
            "inputs": ["/".join(c) if isinstance(c, tuple) else c for c in self.inputs()],
            "outputs": list(self.outputs()),
            "config": to_dict(self.config)
            if self.config is not None and not isinstance(self.config, dict)
            else self.config,
        }


def batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    """Consecutive fixed-size chunks: model batches (and so every float) do not depend on the runner."""
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_local(stage: Stage, rows: Iterable[Row], batch_size: int = 16) -> tuple[list[Row], list[Row]]:
    """Run ``stage`` over ``rows`` in this process, without Beam; checks the accounting."""
    stage.ensure_setup()
    kept: list[Row] = []
    rejects: list[Row] = []
    read = 0
    for batch in batches(rows, batch_size):
        read += len(batch)
        k, r = stage.process_batch(batch)
        kept.extend(k)
        rejects.extend(r)
    if len(kept) + len(rejects) != read:
        raise AssertionError(f"stage {stage.name}: kept {len(kept)} + rejected {len(rejects)} != read {read}")
    return kept, rejects

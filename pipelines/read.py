"""Beam graph of the read stage: the input split into read units, each unit read and written by one worker.

    python -m mining.readers --input X --output DIR --runner fnapi|direct-mp|DataflowRunner ...

The launcher plans units from cheap metadata (``mining.readers.units.plan_units``: the folder
listing, Parquet footers, one streaming scan of a CSV/TSV, JSONL or URL list for the byte offset
of each unit's first record: ``mining/readers/line_marks.py``), then::

    Create(units) -> [pre-pass: unit_sources -> GroupByKey(source) -> repeat_offsets
                      -> CoGroupByKey(unit)]            (only with several units of a counted kind)
                  -> Reshuffle -> ReadUnit              (reads one unit, writes its shards atomically,
                                                         then its counts as .read-units/unit-NNNNN.json)

and writes ``read_summary.json`` from the per-unit counts (``mining.readers.writer.finish``, as the
loop does). The reading logic is the readers' own (``mining/readers/``); the shards, keys and the
summary are byte-identical to the loop's for any split (``mining/readers/units.py`` says how).
One sink, no tagged outputs: the graph runs on DaskRunner too (``pipelines/safe_transforms.py``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import apache_beam as beam

from core import storage
from core.cli import InputError
from mining.readers import units as ru
from mining.readers.common import ReadStats
from mining.readers.dispatch import detect_kind
from mining.readers.writer import SHARD_PATTERN, ShardWriter, finish, prepare_output

UNITS_DIR = ".read-units"  # per-unit counts, merged into the summary and then removed


class ReadUnit(beam.DoFn):
    """One unit -> its record shards (from shard ``start // shard_size`` on) and its counts file.

    A user error in the input (an empty table, a gzip bomb) is not raised in the worker, where each
    runner wraps it differently: it goes into the counts file and the launcher raises it."""

    def __init__(self, input: str, kind: str, output_dir: str, shard_size: int, work_dir: str,
                 opts: dict[str, Any]):
        self.input, self.kind, self.output_dir, self.shard_size = input, kind, output_dir, shard_size
        self.work_dir, self.opts = work_dir, opts

    def process(self, item):
        index, joined = item
        unit = list(joined["unit"])[0]
        key_start = dict(joined["offsets"])
        stats = ReadStats()
        out = ShardWriter(self.output_dir, self.shard_size, unit["start"] // self.shard_size)
        error = None
        try:
            for rec in ru.read_unit(unit, self.input, self.kind, stats, key_start, work_dir=self.work_dir,
                                    **self.opts):
                out.add(rec)
            out.flush()
        except InputError as exc:
            error = str(exc)
        result = {"index": index, "rows": unit["rows"], "read": out.read, "errors": dict(out.errors),
                  "written": out.written, "skipped": out.skipped, "shards": out.shards,
                  "stats": stats.as_dict(), "error": error}
        storage.atomic_write_bytes(unit_counts_path(self.output_dir, index), json.dumps(result).encode())
        yield index


def unit_counts_path(output_dir: str, index: int) -> str:
    return storage.join(output_dir, UNITS_DIR, f"unit-{index:05d}.json")


def _remove_counts(output_dir: str) -> None:
    """Delete the per-unit counts files, then their folder (object stores: the prefix goes with them)."""
    units_dir = storage.join(output_dir, UNITS_DIR)
    if not storage.exists(units_dir):
        return
    found = storage.list_files(units_dir, "*.json")
    if found:
        storage.FileSystems.delete(found)
    if storage.exists(units_dir):
        storage.FileSystems.delete([units_dir])


def _keyed_sources(item, url_col: str):
    index, unit = item
    for source, count in ru.unit_sources(unit, url_col).items():
        yield source, (index, count)


def build_graph(p: beam.Pipeline, units: list[dict[str, Any]], read_fn: ReadUnit, url_col: str = "url"):
    """The read graph on ``p``: units (with their key offsets) -> Reshuffle -> ReadUnit."""
    keyed = p | "Units" >> beam.Create(list(enumerate(units)))
    if ru.needs_key_offsets(units):
        offsets = (keyed
                   | "Sources" >> beam.FlatMap(_keyed_sources, url_col)
                   | "BySource" >> beam.GroupByKey()
                   | "Offsets" >> beam.FlatMap(lambda kv: ru.repeat_offsets((kv[0], list(kv[1])))))
        joined = {"unit": keyed, "offsets": offsets} | "Join" >> beam.CoGroupByKey()
    else:
        joined = keyed | "NoOffsets" >> beam.Map(lambda kv: (kv[0], {"unit": [kv[1]], "offsets": []}))
    return joined | "Spread" >> beam.Reshuffle() | "Read" >> beam.ParDo(read_fn)


@storage.holds_output_lock(arg="output_dir")
def run(input: str, output_dir: str, shard_size: int = 1000, work_dir: str | None = None,
        kind: str | None = None, unit_rows: int = 100_000, runner: str = "fnapi", workers: int = 2,
        beam_args: list[str] | None = None, **opts: Any) -> dict[str, Any]:
    """``write_records`` as a Beam graph (same arguments, plus the unit size and the runner): the same
    shards and ``read_summary.json``; returns the summary (with ``units`` added when the input was split)."""
    from pipelines.runners import make_pipeline

    output_dir, work_dir = prepare_output(output_dir, shard_size, work_dir)
    kind = kind or detect_kind(input)
    start = time.perf_counter()
    units, launcher_stats = ru.plan_units(input, kind, shard_size, unit_rows, **opts)
    _remove_counts(output_dir)  # a killed run's
    p = make_pipeline(runner, beam_args or (), workers=workers)
    build_graph(p, units, ReadUnit(input, kind, output_dir, shard_size, work_dir, opts),
                opts.get("url_col", "url"))
    p.run().wait_until_finish()
    results = [json.loads(storage.read_bytes(unit_counts_path(output_dir, i))) for i in range(len(units))]
    _remove_counts(output_dir)
    for r in results:
        if r["error"]:
            raise InputError(r["error"])
        if r["rows"] is not None and r["read"] != r["rows"]:  # the plan's count is what aligns the shards
            raise RuntimeError(f"read unit {r['index']} gave {r['read']} records, planned {r['rows']}")
    errors: Counter = Counter()
    for r in results:
        errors.update(r["errors"])
    stats = ru.merge_stats([launcher_stats.as_dict()] + [r["stats"] for r in results])
    shards = [s for r in results for s in r["shards"]]
    assert shards == [storage.join(output_dir, SHARD_PATTERN.format(i)) for i in range(len(shards))]
    extra = {"units": len(units)} if len(units) > 1 else None
    return finish(input, output_dir, kind, shard_size, opts, sum(r["read"] for r in results),
                  errors, shards, sum(r["written"] for r in results), sum(r["skipped"] for r in results),
                  stats, time.perf_counter() - start, extra)

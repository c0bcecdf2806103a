"""Beam pipeline: decode -> quality score -> domain -> filter, record Parquet in, kept/rejects Parquet out.

    python -m pipelines.mine --input RECORDS(.parquet|folder) --output OUT [--runner FnApiRunner]

Output: ``OUT/kept/<input stem>.parquet`` (base columns + quality parts, domain, domain_scores,
decoded width/height), ``OUT/rejects/<input stem>.parquet`` (REJECT_SCHEMA) and
``OUT/summary.json``. One output pair per input file, written atomically once the whole file is
processed, then its manifest (``OUT/kept/.units/<stem>.parquet.json``: the input's content hash, the
mining config, the code version); on rerun an input is skipped only when its pair and a matching
manifest exist, so a changed input or config redoes it, and outputs of inputs no longer given are
removed. Rows inside each output
are sorted by key, so the same input + config gives the same files. Works on FnApiRunner and
on DirectRunner (``--direct_running_mode=multi_processing``) and on any portable runner.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics

from core import cli, storage
from core import config as cfgsys
from core.cli import require, stdout_to_stderr
from core.config import section
from mining.config import MiningConfig
from mining.run import (
    STAGE,
    foreign_rejects,
    input_files,
    out_paths,
    remove_orphans,
    summarize,
    unit_fingerprint,
    unreadable_rejects,
    write_outputs,
)
from mining.stage import MineStage
from pipelines.runners import RunnerConfig
from pipelines.stage_dofn import StageDoFn

log = logging.getLogger("pipelines.mine")


class ReadRecords(beam.DoFn):
    """One input Parquet file -> (file, row) pairs; files whose outputs match their manifest are skipped."""

    def __init__(self, output: str, batch_size: int, config_json: str = "{}"):
        self.output, self.batch_size, self.config_json = output, batch_size, config_json
        self.read = Metrics.counter(STAGE, "read")
        self.skipped = Metrics.counter(STAGE, "files_skipped")
        self.redone = Metrics.counter(STAGE, "files_stale_redone")

    def process(self, path: str):
        kept, rej = out_paths(self.output, path)
        fp = unit_fingerprint(path, self.config_json)
        if storage.unit_done([kept, rej], fp):
            self.skipped.inc()
            return
        if storage.exists(kept) or storage.exists(rej):
            self.redone.inc()
            log.warning(
                "mine: %s changed (input, config or code) since its outputs were written: redoing it", path
            )
        # the marker carries the fingerprint, and makes a file with zero rows (or zero kept) still get
        # its outputs
        yield (path, -1), (-1, "marker", fp)
        # Fixed chunks of consecutive rows: model batches (and so every float) do not depend on the runner.
        done = 0
        try:
            foreign = foreign_rejects(path)
            for i, row in enumerate(foreign if foreign is not None else storage.iter_rows(path)):
                self.read.inc()
                done += 1
                yield (path, i // self.batch_size), (i, "reject" if foreign is not None else "record", row)
        except Exception as exc:  # noqa: BLE001 - a truncated or corrupt shard is a named reject, never fatal
            for j, rej in enumerate(unreadable_rejects(path, exc, done)):
                self.read.inc()
                yield (path, -2), (j, "reject", rej)


def _in_order(item):
    (path, _), values = item
    return path, [(kind, rec) for _, kind, rec in sorted(values, key=lambda v: v[0])]


def chunk_records(item):
    """((file, chunk), [(row index, kind, row)]) -> (file, [records in file order]): one model batch."""
    path, values = _in_order(item)
    records = [rec for kind, rec in values if kind == "record"]
    if records:
        yield path, records


def chunk_passthrough(item):
    """The chunk's markers and whole-file rejects, which bypass the stage. (Two consumers of one
    PCollection rather than tagged outputs: some runners, e.g. DaskRunner, mishandle those.)"""
    path, values = _in_order(item)
    for kind, rec in values:
        if kind != "record":
            yield path, (kind, rec)


class WriteShard(beam.DoFn):
    """All rows of one input file -> its kept and rejects Parquet files, sorted by key, atomically."""

    def __init__(self, output: str):
        self.output = output

    def process(self, item):
        path, values = item
        yield write_outputs(self.output, path, values)


@storage.holds_output_lock
def run(input: str, output: str, runner: str = "fnapi", workers: int = 2,
        beam_args: list[str] | None = None, config: MiningConfig | None = None, **options) -> dict:
    """Run the mining stage with ``config`` (``options``: :class:`MiningConfig` fields to change).
    Returns the summary."""
    cfg = cfgsys.replace_leaves(config or MiningConfig(), **options)
    files = input_files(input)
    remove_orphans(output, files)
    t0 = time.time()
    from pipelines.runners import make_pipeline

    p = make_pipeline(runner, beam_args or (), workers=workers)
    chunks = (
        p
        | "Files" >> beam.Create(files)
        | "Read" >> beam.ParDo(ReadRecords(output, cfg.batch_size, cfg.to_json()))
        | "Chunks" >> beam.GroupByKey()
    )
    mined = (
        chunks
        | "Batch" >> beam.FlatMap(chunk_records)
        | "Mine" >> beam.ParDo(StageDoFn(MineStage, cfg.to_json()))
    )
    passthrough = chunks | "Passthrough" >> beam.FlatMap(chunk_passthrough)
    _ = (
        (mined, passthrough)
        | "Merge" >> beam.Flatten()
        | "ByFile" >> beam.GroupByKey()
        | "Write" >> beam.ParDo(WriteShard(output))
    )
    result = p.run()
    result.wait_until_finish()
    metrics = {}
    try:
        for c in result.metrics().query()["counters"]:
            metrics[c.key.metric.name] = metrics.get(c.key.metric.name, 0) + int(
                c.committed or c.attempted or 0
            )
    except Exception:  # noqa: BLE001 - some runners do not report metrics
        pass
    return summarize(input, output, dict(sorted(metrics.items())), time.time() - t0, cfg)


@dataclass(frozen=True)
class MineCommand:
    """Everything ``python -m pipelines.mine`` takes besides its folders (YAML / --set keys)."""

    runner: RunnerConfig = section(RunnerConfig, "Beam runner")
    mining: MiningConfig = section(MiningConfig, "mining")


def main(argv: list[str] | None = None) -> int:
    ap = cfgsys.parser_for("python -m pipelines.mine", __doc__)
    ap.add_argument("--input", required=True, help="record Parquet file or folder of *.parquet")
    ap.add_argument("--output", required=True, help="output folder (kept/, rejects/, summary.json)")
    cfgsys.add_flags(ap, MineCommand, "options")
    cfgsys.add_config_args(ap)
    a, cmd, beam_args = cfgsys.parse(ap, MineCommand, argv, beam=True)
    logging.basicConfig(level=logging.WARNING)
    require(storage.exists(a.input), f"input {a.input} does not exist")
    with stdout_to_stderr():  # model loading prints (efficientnet-pytorch): stdout carries only the summary
        summary = run(a.input, a.output, runner=cmd.runner.runner, workers=cmd.runner.workers,
                      beam_args=beam_args, config=cmd.mining)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    from pipelines.runners import exit_after

    exit_after(cli.run(main))

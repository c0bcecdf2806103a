"""CLI: ``python -m mining.readers --input X --output DIR`` writes record shards and prints the summary.

Read an input (img2dataset output folder, image folder, table, URL list) into
records-NNNNN.parquet shards of the record schema. ``--runner local`` (the default) reads in this
process; a Beam runner (fnapi, direct-mp, DataflowRunner, ... with its options) reads the input's
units in parallel (pipelines/read.py) and writes the same shards.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from dataclasses import dataclass, field

from core import config as cfgsys
from core.cli import run, stdout_to_stderr
from core.config import section
from mining.readers.config import ReadersConfig
from mining.readers.writer import write_records
from pipelines.runners import RunnerConfig

LOCAL = "local"


def _runner_field() -> field:
    """RunnerConfig's runner knob with ``local`` (the one-process loop) as the reader's default."""
    beam = {f.name: f for f in dataclasses.fields(RunnerConfig)}["runner"].metadata
    help = f"{LOCAL}: this process, no Beam; or a {beam['help']}"
    return field(default=LOCAL, metadata={**beam, "help": help})


@dataclass(frozen=True)
class ReadRunnerConfig(RunnerConfig):
    runner: str = _runner_field()


@dataclass(frozen=True)
class ReadCommand(ReadersConfig):
    """Everything ``python -m mining.readers`` takes besides its folders (YAML / --set keys)."""

    runner: ReadRunnerConfig = section(ReadRunnerConfig, "runner")


def build_parser() -> cfgsys.Parser:
    p = cfgsys.parser_for("python -m mining.readers", __doc__)
    p.add_argument("--input", required=True, help="file or folder (local path or Beam URI)")
    p.add_argument("--output", required=True, help="output folder for records-NNNNN.parquet")
    cfgsys.add_flags(p, ReadCommand, "reader options")
    cfgsys.add_config_args(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log reader details")
    p.add_argument("--debug", action="store_true", help="show tracebacks for input errors too")
    return p


def input_columns(input: str, kind: str | None) -> list[str] | None:
    """The columns a table or URL-list input has (None for folders and img2dataset output)."""
    from mining.readers.common import absolute
    from mining.readers.dispatch import detect_kind
    from mining.readers.table import table_columns

    kind = kind or detect_kind(input)
    if kind == "table":
        return table_columns(absolute(input))
    if kind == "urls":
        return ["url"]  # a URL list: one url per line
    return None


def check_input_columns(input: str, cfg: ReadersConfig) -> None:
    """Column options the user set must name columns of the input (closest column in the error)."""
    if not cfgsys.column_knobs(cfg, changed_only=True):
        return
    columns = input_columns(input, cfg.kind)
    if columns is not None:
        cfgsys.check_columns(cfg, columns, input, changed_only=True)


def main(argv: list[str] | None = None) -> dict:
    args, cfg, beam_args = cfgsys.parse(build_parser(), ReadCommand, argv, beam=True)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if beam_args and cfg.runner.runner == LOCAL:
        flag = beam_args[0].split("=", 1)[0]
        raise cfgsys.ConfigError(f"{flag} is a Beam option: give a Beam --runner too")
    check_input_columns(args.input, cfg)
    common = {"shard_size": cfg.shard_size, "work_dir": cfg.work_dir, "kind": cfg.kind, "limit": cfg.limit,
              **cfg.reader_options()}
    with stdout_to_stderr():  # img2dataset prints its progress: stdout carries only the summary
        if cfg.runner.runner == LOCAL:
            summary = write_records(args.input, args.output, **common)
        else:
            from pipelines.read import run as run_graph

            summary = run_graph(args.input, args.output, unit_rows=cfg.unit_rows, runner=cfg.runner.runner,
                                workers=cfg.runner.workers, beam_args=beam_args, **common)
    json.dump(summary, sys.stdout, indent=2)
    print()
    return summary


if __name__ == "__main__":
    from pipelines.runners import exit_after

    exit_after(run(main))  # after a dask run: leave without the interpreter's teardown (see exit_after)

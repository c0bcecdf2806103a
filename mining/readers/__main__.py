"""CLI: ``python -m mining.readers --input X --output DIR`` writes record shards and prints the summary.

Read an input (img2dataset output folder, image folder, table, URL list) into
records-NNNNN.parquet shards of the record schema.
"""

from __future__ import annotations

import json
import logging
import sys

from core import config as cfgsys
from core.cli import run, stdout_to_stderr
from mining.readers.config import ReadersConfig
from mining.readers.writer import write_records


def build_parser() -> cfgsys.Parser:
    p = cfgsys.parser_for("python -m mining.readers", __doc__)
    p.add_argument("--input", required=True, help="file or folder (local path or Beam URI)")
    p.add_argument("--output", required=True, help="output folder for records-NNNNN.parquet")
    cfgsys.add_flags(p, ReadersConfig, "reader options")
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
    args, cfg, _ = cfgsys.parse(build_parser(), ReadersConfig, argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    check_input_columns(args.input, cfg)
    with stdout_to_stderr():  # img2dataset prints its progress: stdout carries only the summary
        summary = write_records(args.input, args.output, shard_size=cfg.shard_size, work_dir=cfg.work_dir,
                                kind=cfg.kind, limit=cfg.limit, **cfg.reader_options())
    json.dump(summary, sys.stdout, indent=2)
    print()
    return summary


if __name__ == "__main__":
    raise SystemExit(run(main))

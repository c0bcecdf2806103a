"""CLI: ``python -m mining.readers --input X --output DIR`` writes record shards and prints the summary."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from core.cli import require, run, stdout_to_stderr
from mining.readers.common import DEFAULT_MAX_IMAGE_BYTES
from mining.readers.dispatch import KINDS
from mining.readers.urls import DEFAULTS
from mining.readers.writer import write_records


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mining.readers",
        description="Read an input (img2dataset output folder, image folder, table, URL list) into "
                    "records-NNNNN.parquet shards of the record schema.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--input", required=True, help="file or folder (local path or Beam URI)")
    p.add_argument("--output", required=True, help="output folder for records-NNNNN.parquet")
    p.add_argument("--shard-size", type=int, default=1000, help="records per output shard")
    p.add_argument("--kind", default=None, choices=KINDS, help="force the input kind; None detects it")
    p.add_argument("--limit", type=int, default=None, help="read at most this many input rows; None = all")
    p.add_argument("--work-dir", default=None, help="download folder for URL inputs; None = OUTPUT/_download")
    p.add_argument("--caption-col", default=None, help="caption column; None = caption, text, or the first of captions")
    p.add_argument("--path-col", default=None, help="image path column; None = the first of path, file, filepath, ...")
    p.add_argument("--url-col", default="url", help="URL column")
    p.add_argument("--no-bytes", action="store_true", help="local inputs: store only `path`, not the image bytes")
    p.add_argument("--max-image-bytes", type=int, default=DEFAULT_MAX_IMAGE_BYTES,
                   help="larger image files (and tar members, downloads) are refused: file_too_large")
    p.add_argument("--follow-symlinks", action="store_true",
                   help="follow symlinks that point outside the input's folder (default: symlink_outside_root)")
    g = p.add_argument_group("download (URL inputs, through img2dataset)")
    g.add_argument("--processes", type=int, default=DEFAULTS["processes"], help="img2dataset processes")
    g.add_argument("--threads", type=int, default=DEFAULTS["threads"], help="download threads per process")
    g.add_argument("--timeout", type=int, default=DEFAULTS["timeout"], help="seconds per request")
    g.add_argument("--retries", type=int, default=DEFAULTS["retries"], help="retries per URL")
    g.add_argument("--shard-samples", type=int, default=DEFAULTS["shard_samples"], help="URLs per img2dataset shard")
    g.add_argument("--reencode", choices=["none", "skip"], default=DEFAULTS["reencode"],
                   help="none: keep downloaded bytes exactly; skip: decode-check, re-encode non-JPEG")
    g.add_argument("--allow-private-addresses", action="store_true",
                   help="fetch loopback/link-local/private hosts too (default: private_address reject)")
    g.add_argument("--user-agent-token", default=DEFAULTS["user_agent_token"], help="token added to the user agent")
    p.add_argument("-v", "--verbose", action="store_true", help="log reader details")
    p.add_argument("--debug", action="store_true", help="show tracebacks for input errors too")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    opts = {"caption_col": args.caption_col, "url_col": args.url_col, "processes": args.processes,
            "threads": args.threads, "timeout": args.timeout, "retries": args.retries,
            "shard_samples": args.shard_samples, "reencode": args.reencode,
            "user_agent_token": args.user_agent_token, "allow_private_addresses": args.allow_private_addresses,
            "max_image_bytes": args.max_image_bytes, "follow_symlinks": args.follow_symlinks}
    for name in ("shard_size", "processes", "threads", "timeout", "max_image_bytes"):
        require(getattr(args, name) >= 1, f"--{name.replace('_', '-')} must be >= 1, not {getattr(args, name)}")
    require(args.retries >= 0 and (args.limit is None or args.limit >= 0), "--retries and --limit must be >= 0")
    if args.path_col:
        opts["path_col"] = args.path_col
    if args.no_bytes:
        opts["load_bytes"] = False
    with stdout_to_stderr():  # img2dataset prints its progress: stdout carries only the summary
        summary = write_records(args.input, args.output, shard_size=args.shard_size, work_dir=args.work_dir,
                                kind=args.kind, limit=args.limit, **opts)
    json.dump(summary, sys.stdout, indent=2)
    print()
    return summary


if __name__ == "__main__":
    raise SystemExit(run(main))

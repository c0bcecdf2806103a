"""The read stage's Beam graph (``pipelines/read.py``) against the one-process loop, on real images,
and one read unit's peak memory as a function of the unit size.

    nice -n 10 .venv/bin/python -m bench.read_units [--work /tmp/read_units_bench] [--only csv]

Input: the 1,000 Flickr8k images of ``../shared/data/flickr8k_1k`` (all of them; no split is
involved, nothing is tuned), as an image folder and as a Parquet table of paths (row groups of
128 rows). ``same``: the loop and the graph on FnApiRunner with units of 200 records (5 units),
shards of 100: seconds of each, their ratio, and whether every output file is byte-identical; the
same for the table as a CSV (quoted captions). ``scan``: the launcher's pre-pass of a CSV
(``mining.readers.line_marks.csv_marks``: where each unit starts) against the loop's own parse of
the same file (``iter_table_rows``, no images read), on the CSV repeated 100 times (100,000 rows).
``memory``: a process that plans the table (each image three times, 3,000 rows) and reads its first unit
(``mining.readers.units.read_unit`` into ``ShardWriter``), for unit sizes 100, 500 and 1,000 records
at shards of 100, and for shards of 50 and 200 at units of 1,000: its peak resident set size
(Beam, pyarrow and PIL imports included) and the peak of Python allocations while reading
(``tracemalloc``: the records, image bytes included); what a worker holds is the shard being filled,
not the unit. (The images are small, ~20 KB: scale by the mean image size.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]

UNIT_CHILD = """
import sys, tracemalloc
from mining.readers import units as ru
from mining.readers.common import ReadStats
from mining.readers.writer import ShardWriter
table, out, unit_rows, shard = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
units, _ = ru.plan_units(table, "table", shard, unit_rows)
w = ShardWriter(out, shard)
# max_image_bytes 1 MiB: read_file_bytes reads max_bytes + 1 at once, which CPython allocates up front
# (64 MiB by default, transient and never touched, so not resident): it would hide the records here
opts = {"max_image_bytes": 2**20}
next(ru.read_unit(units[0], table, "table", ReadStats(), **opts))  # lazy imports before the count
tracemalloc.start()
biggest = in_shard = 0
for rec in ru.read_unit(units[0], table, "table", ReadStats(), **opts):
    in_shard += len(rec["image"] or b"")
    w.add(rec)
    if not w.buffer:
        biggest, in_shard = max(biggest, in_shard), 0
w.flush()
print(w.read, tracemalloc.get_traced_memory()[1] / 2**20, max(biggest, in_shard) / 2**20)
"""


def peak_mib(cmd: list[str]) -> tuple[float, str]:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO)
    out = p.stdout.read().decode()
    _, _, usage = os.wait4(p.pid, 0)
    return usage.ru_maxrss / 1024.0, out.strip()


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def same(src: str, work: Path, label: str) -> None:
    from mining.readers import write_records
    from pipelines.read import run as run_graph

    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    write_records(src, str(out), shard_size=100)
    t_loop = time.perf_counter() - t0
    loop = files(out)
    shutil.rmtree(out)
    t0 = time.perf_counter()
    summary = run_graph(src, str(out), shard_size=100, unit_rows=200, runner="fnapi")
    t_graph = time.perf_counter() - t0
    print(f"{label}: {summary['read']} records, {summary.get('units', 1)} units; loop {t_loop:.2f} s, "
          f"graph (FnApiRunner) {t_graph:.2f} s, graph/loop {t_graph / t_loop:.2f}; "
          f"byte-identical files: {files(out) == loop} ({len(loop)} files)")


def scan(csv_path: Path, work: Path) -> None:
    """The launcher's CSV pre-pass against the loop's parse of the same rows, on 100 copies of the CSV."""
    from mining.readers.line_marks import csv_marks
    from mining.readers.table_rows import iter_table_rows

    head, *rows = csv_path.read_bytes().splitlines(keepends=True)
    big = work / "flickr-x100.csv"
    big.write_bytes(head + b"".join(rows) * 100)
    t0 = time.perf_counter()
    n_loop = sum(1 for _ in iter_table_rows(str(big)))
    t_loop = time.perf_counter() - t0
    t0 = time.perf_counter()
    marks, n = csv_marks(str(big), 1000)
    t_scan = time.perf_counter() - t0
    print(f"csv scan: {n} rows ({big.stat().st_size / 2**20:.1f} MiB), {len(marks) + 1} units of 1,000; "
          f"launcher scan {t_scan:.2f} s, loop's parse {t_loop:.2f} s ({n_loop} rows), scan/parse "
          f"{t_scan / t_loop:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/read_units_bench")
    ap.add_argument("--only", choices=("csv",), help="only the CSV table and the CSV scan")
    args = ap.parse_args(argv)
    data = SHARED / "flickr8k_1k"
    if not (data / "images").is_dir():
        print(f"skipped: {data} is absent")
        return 0
    import pyarrow as pa
    import pyarrow.csv  # noqa: F401 - pa.csv
    import pyarrow.parquet as pq

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    meta = json.loads((data / "metadata.json").read_text())
    table = work / "flickr.parquet"
    pq.write_table(pa.table({"file": [str(data / m["file"]) for m in meta],
                             "caption": [m["captions"][0] for m in meta]}), table, row_group_size=128)
    csv_table = work / "flickr.csv"
    pa.csv.write_csv(pq.read_table(table), csv_table)  # quotes every string
    same(str(csv_table), work, "csv table")
    scan(csv_table, work)
    if args.only == "csv":
        return 0
    same(str(data / "images"), work, "folder")
    same(str(table), work, "parquet table")
    big = work / "flickr-x3.parquet"  # every image three times: every unit size below is a split unit
    pq.write_table(pa.table({"file": [str(data / m["file"]) for m in meta * 3],
                             "caption": [m["captions"][0] for m in meta * 3]}), big, row_group_size=128)
    for unit_rows, shard in ((100, 100), (500, 100), (1000, 100), (1000, 50), (1000, 200)):
        out = work / f"unit-{unit_rows}-{shard}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        mib, said = peak_mib([sys.executable, "-c", UNIT_CHILD, str(big), str(out), str(unit_rows),
                              str(shard)])
        n, traced, biggest = said.split()
        print(f"one unit of {n} records, shards of {shard}: peak RSS {mib:.0f} MiB (imports included), "
              f"peak Python allocations while reading {float(traced):.1f} MiB = "
              f"{float(traced) / float(biggest):.2f} x the image bytes of its largest shard "
              f"({float(biggest):.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The read stage at 100k and 1M pairs, same code path at both sizes: the one-process loop against the
Beam graph (``direct-mp``, 2 worker processes), side by side.

    nice -n 5 .venv/bin/python -m bench.read_scale --rows 100000 1000000 --work /tmp/read_scale

Input: a Parquet table of ``path, caption`` rows (row groups of 50,000) whose paths cycle over 1,000
small JPEGs (64 x 48, about 1 KB; written once under ``--work``), so the output stays near 1 KB per
pair. What it measures is the reader's own cost per pair (open, cap and read the file, probe its
header, key, write the records shard), not image decoding or download; scale the byte-bound part by
the mean image size of a real corpus. Prints, per size and runner: wall and CPU seconds (the command
and its children), peak RSS of the largest process, seconds and CPU seconds per million pairs, and
whether the two runners' shards are byte-identical.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

RUNNERS = {"local": ["--runner", "local"],
           "direct-mp": ["--runner", "direct-mp", "--workers", "2", "--unit-rows", "25000"]}


def write_input(work: str, n: int) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    imgs = os.path.join(work, "images")
    if not os.path.isdir(imgs):
        os.makedirs(imgs + ".tmp", exist_ok=True)
        for i in range(1000):
            Image.new("RGB", (64, 48), (i % 251, (7 * i) % 253, (13 * i) % 255)).save(
                os.path.join(imgs + ".tmp", f"{i:04d}.jpg"), quality=90)
        os.replace(imgs + ".tmp", imgs)
    path = os.path.join(work, f"pairs-{n}.parquet")
    if not os.path.exists(path):
        schema = pa.schema([("path", pa.string()), ("caption", pa.string())])
        with pq.ParquetWriter(path + ".tmp", schema) as w:
            for s in range(0, n, 50000):
                idx = range(s, min(n, s + 50000))
                w.write_table(pa.table({"path": [os.path.join(imgs, f"{i % 1000:04d}.jpg") for i in idx],
                                        "caption": [f"a small photo number {i}" for i in idx]}))
        os.replace(path + ".tmp", path)
    return path


def digest(folder: str) -> str:
    h = hashlib.sha256()
    for f in sorted(os.listdir(folder)):
        if f.endswith(".parquet"):
            h.update(f.encode())
            with open(os.path.join(folder, f), "rb") as fh:
                h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


def run_one(table: str, out: str, runner: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "mining.readers", "--input", table, "--output", out, "--path-col", "path",
           *RUNNERS[runner]]
    t0 = time.perf_counter()
    with open(out + ".stdout", "w") as so, open(out + ".stderr", "w") as se:
        proc = subprocess.Popen(cmd, stdout=so, stderr=se)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own usage (its waited children included)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        err = open(out + ".stderr").read().strip().splitlines()[-1:]
        raise SystemExit(f"{runner}: rc {os.waitstatus_to_exitcode(status)}: {err}")
    summary = json.loads(open(out + ".stdout").read())
    return {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_mib": round(usage.ru_maxrss / 1024, 1),
            "read": summary.get("read"), "kept": summary.get("kept"), "digest": digest(out)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100000])
    ap.add_argument("--work", default="/tmp/read_scale")
    ap.add_argument("--runners", nargs="+", default=list(RUNNERS), choices=list(RUNNERS))
    args = ap.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    rows = []
    for n in args.rows:
        table = write_input(args.work, n)
        got = {}
        for runner in args.runners:
            got[runner] = run_one(table, os.path.join(args.work, f"out-{runner}-{n}"), runner)
            print(n, runner, got[runner], file=sys.stderr, flush=True)
        same = len({g["digest"] for g in got.values()}) == 1
        for runner, g in got.items():
            rows.append((n, runner, g, same))
    print("| pairs | runner | wall s | CPU s | peak RSS (largest process) | wall s per 1M | CPU s per 1M "
          "| shards identical |")
    print("|---|---|---|---|---|---|---|---|")
    for n, runner, g, same in rows:
        per = 1e6 / n
        print(f"| {n:,} | {runner} | {g['wall_s']} | {g['cpu_s']} | {g['peak_mib']:,.0f} MiB | "
              f"{g['wall_s'] * per:,.0f} | {g['cpu_s'] * per:,.0f} | {same} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

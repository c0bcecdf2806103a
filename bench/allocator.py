"""glibc allocator thresholds (``core/malloc.py``) on vs off, side by side on the same stage run.

    python -m bench.allocator --mined out/demo/mined [--rounds 1] [--stage clusters]

Runs ``python -m pipelines.build_clusters --mined DIR`` (the clustering stage: the embedder's
feature maps and dedup's crop grids are the allocation churn) in fresh processes, alternating
``IIDATA_MALLOC=default`` (glibc's own thresholds) and the tuned default, and prints wall, user
and system seconds and peak RSS (``/usr/bin/time``-style, from ``os.wait4``) for each, the
ratios, and whether both runs wrote the same ``clusters.parquet`` / ``duplicates.parquet`` bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time


def _run(mined: str, out: str, tuned: bool) -> dict:
    env = dict(os.environ)
    env.pop("IIDATA_MALLOC", None)
    if not tuned:
        env["IIDATA_MALLOC"] = "default"
    cmd = [sys.executable, "-m", "pipelines.build_clusters", "--mined", mined, "--output", out]
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"build_clusters failed: {err.strip().splitlines()[-1:]}")
    digest = hashlib.sha256()
    for name in ("clusters.parquet", "duplicates.parquet"):
        with open(os.path.join(out, name), "rb") as fh:
            digest.update(fh.read())
    return {"wall": wall, "user": ru.ru_utime, "sys": ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024,
            "tables": digest.hexdigest()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mined", required=True, help="a mined folder (e.g. out/demo/mined)")
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bench_alloc_")
    best: dict[str, dict] = {}
    try:
        for r in range(a.rounds):
            for tuned in ((False, True) if r % 2 == 0 else (True, False)):
                name = "tuned" if tuned else "glibc default"
                out = os.path.join(tmp, f"{r}-{int(tuned)}")
                m = _run(a.mined, out, tuned)
                shutil.rmtree(out, ignore_errors=True)
                print(f"  round {r} {name:14s} wall {m['wall']:7.1f} s  user {m['user']:7.1f} s  "
                      f"sys {m['sys']:6.1f} s  peak RSS {m['rss_mb']:7.0f} MiB", file=sys.stderr)
                if name not in best or m["wall"] < best[name]["wall"]:
                    best[name] = m
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    d, t = best["glibc default"], best["tuned"]
    speed = d["wall"] / t["wall"]
    print(f"wall: default {d['wall']:.1f} s, tuned {t['wall']:.1f} s: tuned {speed:.2f}x faster")
    print(f"sys:  default {d['sys']:.1f} s, tuned {t['sys']:.1f} s")
    ratio = t["rss_mb"] / d["rss_mb"]
    print(f"peak RSS: default {d['rss_mb']:.0f} MiB, tuned {t['rss_mb']:.0f} MiB ({ratio:.2f}x)")
    print(f"same clusters/duplicates bytes: {d['tables'] == t['tables']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

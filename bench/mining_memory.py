"""Peak memory of the mining stage on big photos, full-size decode against the working-size decode,
side by side in one run; and how much the scores move on real big photos when they are shrunk.

    nice -n 10 .venv/bin/python -m bench.mining_memory peak [--n 20] [--size 4000x3000] \\
        [--work /tmp/mining_mem]
    nice -n 10 .venv/bin/python -m bench.mining_memory scores [--min-side 1025] [--limit 0]

``peak``: builds ``--n`` JPEGs (quality 92) by upscaling the first COCO images of
``../shared/data/coco_mini`` to ``--size`` (with their captions as ``.txt`` sidecars) under
``--work`` (never the repository), reads them with ``python -m mining.readers``, then mines the
records twice, each in its own process: ``work_side=0`` (every image decoded at full size, the old
behaviour) and the default (``python -m pipelines.mine``, images shrunk to a 1024-px short side on
decode). Prints each process's peak resident set size (``wait4``'s ``ru_maxrss``, the figure
``/usr/bin/time -v`` prints), the ratio, and checks that both runs keep the same rows with the
same true ``width``/``height``, and by how much ``quality`` differs.

``scores``: every shared image whose short side exceeds ``--min-side`` (StyleDrop and CelebA hold
real photos of up to 7730 x 7730), scored from a full decode and from the working-size decode:
the differences of ``quality`` and its parts, the domain agreement and the rank correlation.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def peak_mib(cmd: list[str]) -> tuple[float, int, float]:
    """(peak RSS in MiB of ``cmd``'s process tree, exit code, seconds); output goes to /dev/null."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024.0, p.returncode, time.perf_counter() - t0


def build_photos(folder: Path, n: int, size: tuple[int, int], coco: Path) -> int:
    """``n`` upscaled COCO photos as JPEG + caption sidecars in ``folder`` (kept when already there)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    with open(coco / "metadata.csv", newline="", encoding="utf-8") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["file"])[:n]
    for r in rows:
        out = folder / (Path(r["file"]).stem + ".jpg")
        if not out.exists():
            Image.open(coco / r["file"]).convert("RGB").resize(size, Image.Resampling.BICUBIC).save(
                out, quality=92
            )
            out.with_suffix(".txt").write_text(r["caption"], encoding="utf-8")
    return len(rows)


def _kept(folder: Path) -> dict[str, dict]:
    import pyarrow.parquet as pq

    rows = {}
    for f in sorted((folder / "kept").glob("*.parquet")):
        for r in pq.read_table(f, columns=["key", "width", "height", "quality", "domain"]).to_pylist():
            rows[r["key"]] = r
    return rows


def peak(args) -> dict:
    coco = Path(args.coco)
    if not (coco / "metadata.csv").exists():
        print(f"SKIP: {coco} not found")
        return {}
    work = Path(args.work)
    w, h = (int(v) for v in args.size.lower().split("x"))
    n = build_photos(work / "photos", args.n, (w, h), coco)
    py = sys.executable
    res = {"images": n, "size": f"{w}x{h}"}
    read = peak_mib(
        [py, "-m", "mining.readers", "--input", str(work / "photos"), "--output", str(work / "records")]
    )
    res["read_mib"] = round(read[0], 1)
    runs = {
        "full_size": [
            py,
            "-c",
            "import sys; from pipelines.mine import run; run(sys.argv[1], sys.argv[2], work_side=0)",
            str(work / "records"),
            str(work / "mined_full"),
        ],
        "work_side": [
            py,
            "-m",
            "pipelines.mine",
            "--input",
            str(work / "records"),
            "--output",
            str(work / "mined"),
        ],
    }
    for name, cmd in runs.items():
        mib, rc, sec = peak_mib(cmd)
        if rc != 0:
            raise SystemExit(f"{name}: exit code {rc}: {' '.join(cmd)}")
        res[f"mine_{name}_mib"] = round(mib, 1)
        res[f"mine_{name}_s"] = round(sec, 1)
        print(name, {"peak_mib": round(mib, 1), "seconds": round(sec, 1)}, flush=True)
    res["peak_ratio"] = round(res["mine_full_size_mib"] / res["mine_work_side_mib"], 2)
    before, after = _kept(work / "mined_full"), _kept(work / "mined")
    res["kept"] = [len(before), len(after)]
    common = sorted(set(before) & set(after))
    res["same_kept_keys"] = set(before) == set(after)
    res["same_true_size"] = all(
        (before[k]["width"], before[k]["height"]) == (after[k]["width"], after[k]["height"]) for k in common
    )
    res["true_sizes"] = sorted({f"{after[k]['width']}x{after[k]['height']}" for k in common})
    dq = [abs(before[k]["quality"] - after[k]["quality"]) for k in common]
    res["quality_abs_diff_max"] = round(max(dq, default=0.0), 4)
    res["quality_abs_diff_mean"] = round(sum(dq) / max(1, len(dq)), 4)
    res["same_domain"] = sum(before[k]["domain"] == after[k]["domain"] for k in common)
    print("RESULT", json.dumps(res), flush=True)
    return res


def big_images(min_side: int, limit: int) -> list[Path]:
    from PIL import Image

    out = []
    for sub in ("styledrop", "celeba_faces", "image_zoo", "bsds500", "coco_mini", "biq2021", "flickr8k_1k"):
        for f in sorted((SHARED / sub).rglob("*")):
            if f.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp") and f.is_file():
                try:
                    if min(Image.open(f).size) >= min_side:
                        out.append(f)
                except Exception:  # noqa: BLE001 - not an image: skip
                    continue
    return out[:limit] if limit else out


def scores(args) -> dict:
    import numpy as np
    from scipy.stats import spearmanr

    from core.decode import decode_sized
    from mining.config import MiningConfig
    from mining.domains import label, make_classifier
    from mining.quality.scorer import get_scorer

    files = big_images(args.min_side, args.limit)
    if not files:
        print(f"SKIP: no shared image with a short side >= {args.min_side}")
        return {}
    cfg = MiningConfig()
    scorer, clf = get_scorer(None, True), make_classifier(cfg)
    parts = ("quality", "quality_technical", "quality_brisque", "quality_learned")
    got: dict[str, dict[str, list]] = {"full": {p: [] for p in parts}, "work": {p: [] for p in parts}}
    doms: dict[str, list] = {"full": [], "work": []}
    for f in files:
        data = f.read_bytes()
        for name, side in (("full", 0), ("work", cfg.work_side)):
            im, _, _, _ = decode_sized(data, MiningConfig(work_side=side))
            s = scorer.score([im])[0]
            for p in parts:
                got[name][p].append(np.nan if s[p] is None else s[p])
            doms[name].append(label(clf.image_probs([im]), cfg.domains)[0][0])
            del im
    res = {"images": len(files), "min_side": args.min_side}
    for p in parts:
        a, b = np.array(got["full"][p]), np.array(got["work"][p])
        ok = ~(np.isnan(a) | np.isnan(b))
        d = np.abs(a - b)[ok]
        res[p] = {"abs_diff_max": round(float(d.max()), 4), "abs_diff_mean": round(float(d.mean()), 4),
                  "srcc_full_vs_work": round(float(spearmanr(a[ok], b[ok])[0]), 4)}
    res["same_image_domain"] = f"{sum(x == y for x, y in zip(doms['full'], doms['work']))}/{len(files)}"
    print("RESULT", json.dumps(res), flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.mining_memory", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("peak", help="peak RSS of mining, full-size decode vs working-size decode")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--size", default="4000x3000")
    p.add_argument("--work", default="/tmp/mining_mem")
    p.add_argument("--coco", default=str(SHARED / "coco_mini"))
    s = sub.add_parser("scores", help="score changes on real big shared photos")
    s.add_argument("--min-side", type=int, default=1025)
    s.add_argument("--limit", type=int, default=0)
    a = ap.parse_args(argv)
    peak(a) if a.cmd == "peak" else scores(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

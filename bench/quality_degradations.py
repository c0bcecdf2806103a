"""Does every degradation lower the score? Fraction of real COCO images whose degraded copy scores
below the original, per degradation, for each part and the combination (side by side).

    python -m bench.quality_degradations [--data ../shared/data/coco_mini] [--subset val2017] [--limit 0]

The gates of the committed weights were chosen on train2017's degradations (`mining.quality.train`):
``--subset val2017`` reports on images that took no part in that choice.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

PARTS = ("quality", "quality_technical", "quality_brisque", "quality_learned")


def main(argv: list[str] | None = None) -> int:
    from PIL import Image
    from tqdm import tqdm

    from mining.quality.degradations import DEGRADATIONS
    from mining.quality.scorer import QualityScorer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument(
        "--data",
        default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_mini"),
        help="coco_mini folder",
    )
    ap.add_argument("--subset", default="*2017", help="folder glob under --data (train2017, val2017 or both)")
    ap.add_argument("--limit", type=int, default=40, help="first N images, sorted by path (0 = all 239)")
    a = ap.parse_args(argv)
    files = sorted(Path(a.data).glob(f"{a.subset}/*.jpg"))
    if not files:
        print(f"skipped: no images under {a.data}")
        return 0
    files = files[: a.limit] if a.limit else files
    scorer = QualityScorer()
    lower = {d: {p: 0 for p in PARTS} for d in DEGRADATIONS}
    deltas = {d: [] for d in DEGRADATIONS}
    for f in tqdm(files, desc="degradations", unit="img"):
        im = Image.open(f).convert("RGB")
        variants = [im] + [fn(im) for fn in DEGRADATIONS.values()]
        scores = scorer.score(variants)
        for d, s in zip(DEGRADATIONS, scores[1:]):
            for p in PARTS:
                if s[p] is not None and scores[0][p] is not None and s[p] < scores[0][p]:
                    lower[d][p] += 1
            deltas[d].append(scores[0]["quality"] - s["quality"])
    n = len(files)
    print(f"{n} COCO images ({a.subset}): fraction whose degraded copy scores below the original")
    print("| degradation | combined quality | technical | BRISQUE | learned | mean drop (combined) |")
    print("|---|---|---|---|---|---|")
    for d in DEGRADATIONS:
        print(
            f"| {d} | "
            + " | ".join(f"{lower[d][p] / n:.3f}" for p in PARTS)
            + f" | {np.mean(deltas[d]):.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

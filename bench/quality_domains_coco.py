"""Domain accuracy of the offline classifier on real COCO images (../shared/data/coco_mini).

COCO's main category gives the reference domain where it maps cleanly (person -> people,
the 10 animal classes -> animals, the 8 vehicle classes -> vehicles, the 10 food classes ->
food, hand-held/household objects -> products); other images are not scored. Prints accuracy
for the image part, the caption part and the combination, side by side, per domain.

    python -m bench.quality_domains_coco [--data ../shared/data/coco_mini] [--limit 0]
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path

import numpy as np

COCO_DOMAIN = {"person": "people"}
COCO_DOMAIN |= dict.fromkeys(
    ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"), "animals"
)
COCO_DOMAIN |= dict.fromkeys(
    ("bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat"), "vehicles"
)
COCO_DOMAIN |= dict.fromkeys(
    ("banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake"),
    "food",
)
COCO_DOMAIN |= dict.fromkeys(
    (
        "bottle",
        "cup",
        "wine glass",
        "scissors",
        "toothbrush",
        "suitcase",
        "backpack",
        "handbag",
        "umbrella",
        "tie",
        "laptop",
        "cell phone",
        "remote",
        "keyboard",
        "mouse",
        "clock",
        "vase",
        "teddy bear",
        "hair drier",
        "book",
        "knife",
        "tv",
        "microwave",
        "toaster",
        "refrigerator",
        "oven",
    ),
    "products",
)


def load(data: Path, limit: int = 0):
    rows = []
    with open(data / "metadata.csv", newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            d = COCO_DOMAIN.get(r["main_category"])
            if d:
                rows.append((data / r["file"], r["caption"], d))
    return rows[:limit] if limit else rows


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    from mining.config import DEFAULT_DOMAINS
    from mining.domains import OfflineDomainClassifier

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument(
        "--data",
        default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_mini"),
        help="coco_mini folder",
    )
    ap.add_argument("--limit", type=int, default=0, help="score only the first N mapped images (0 = all)")
    a = ap.parse_args(argv)
    data = Path(a.data)
    if not (data / "metadata.csv").exists():
        print(f"skipped: {data} is absent")
        return 0
    rows = load(data, a.limit)
    clf = OfflineDomainClassifier(DEFAULT_DOMAINS)
    images = [Image.open(p).convert("RGB") for p, _, _ in rows]
    caps = [c for _, c, _ in rows]
    truth = [d for _, _, d in rows]
    doms = np.array(clf.domains)
    pi, pt = clf.image_probs(images), clf.text_probs(caps)
    w = clf.text_weight
    preds = {"image": doms[pi.argmax(1)], "caption": doms[pt.argmax(1)],
             "combined": doms[((1 - w) * pi + w * pt).argmax(1)]}
    print(f"{len(rows)} COCO images with a mapped main category: {dict(Counter(truth))}")
    print(f"| domain | n | image only | caption only | combined (text_weight={w}) |")
    print("|---|---|---|---|---|")
    for d in sorted(set(truth)) + ["all"]:
        m = np.array([t == d or d == "all" for t in truth])
        accs = [float((preds[k][m] == np.array(truth)[m]).mean()) for k in ("image", "caption", "combined")]
        print(f"| {d} | {int(m.sum())} | " + " | ".join(f"{x:.3f}" for x in accs) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

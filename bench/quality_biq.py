"""Quality scores vs human opinion on held-out BIQ2021 test images (never seen by the head or blend).

Prints SRCC and PLCC (Pearson, no logistic refit) side by side for (a) the technical measures,
(b) BRISQUE, (c) the learned head, (d) the combination, plus a baseline fitted here on the same
train split: ridge on globally pooled native-view penultimate features only (the "single depth" head),
and a distribution-shift check: per BIQ2021 subset, a head refitted without that subset scores its
test rows (``mining.quality.train.cross_subset``).
Uses the committed ``mining/weights/quality_head.npz`` and the feature cache (extracting what is
missing, which is slow on a CPU: ``make train-quality-head`` fills it first).

    python -m bench.quality_biq [--biq ../shared/data/biq2021] [--cache out/quality_cache]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from mining.quality.biq import DEFAULT_CACHE
    from mining.quality.ridge import fit_head
    from mining.quality.scorer import LearnedHead
    from mining.quality.train import evaluate, prepare, srcc_plcc, tuned_predictions

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--biq", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "biq2021"),
                    help="BIQ2021 folder")
    ap.add_argument("--cache", default=DEFAULT_CACHE, help="feature cache folder")
    ap.add_argument("--max-train", type=int, default=0, help="train rows for the baseline (0 = as the head)")
    ap.add_argument(
        "--speed-images", type=int, default=16, help="images for the extractor speed line (0 = skip)"
    )
    a = ap.parse_args(argv)
    if not (Path(a.biq) / "metadata.csv").exists():
        print(f"skipped: {a.biq} is absent")
        return 0
    head = LearnedHead()
    import json

    meta = json.loads(head.path.with_suffix(".json").read_text())
    max_train = a.max_train or meta.get("max_train", 0)
    train_list = meta.get("train_list")
    if train_list and not Path(train_list).is_absolute():
        train_list = str(Path(__file__).resolve().parents[1] / train_list)
    rows, feats, parts = prepare(a.biq, a.cache, max_train, train_list)
    split = np.array([r["split"] for r in rows])
    mos = np.array([r["mos"] for r in rows])
    te, tr = split == "test", split == "train"
    hd = {"mu": head.mu, "sd": head.sd, "w": head.w, "b": head.b, "power": head.power}
    gates = {
        "share": head.share,
        "clip_floor": head.clip_floor,
        "clip_gamma": head.clip_gamma,
        "floors": head.floors,
        "gate_gamma": head.gate_gamma,
    }
    rows_te = [r for r, t in zip(rows, te) if t]
    tuned = tuned_predictions(rows_te, str(head.tuned_file)) if head.tuned_weight > 0 else None
    res = evaluate(rows_te, feats[te], {k: v[te] for k, v in parts.items()}, hd,
                   head.blend_w, head.blend_b, head.fill, gates, tuned, head.tuned_weight)
    # baseline: the 1280 head-channel means of the native-resolution view only
    # (global pooled penultimate features)
    from mining.quality.deep import global_pool_columns

    cols = global_pool_columns()
    base = fit_head(feats[tr][:, cols], mos[tr])
    pred = ((feats[te][:, cols] - base["mu"]) / base["sd"]) @ base["w"] + base["b"]
    bs, bp = srcc_plcc(pred, mos[te])
    print(
        f"BIQ2021 held-out test split: {int(te.sum())} images (train {int(tr.sum())}, "
        f"val {int((split == 'val').sum())})"
    )
    print("| scorer | SRCC | PLCC |")
    print("|---|---|---|")
    names = {
        "technical": "(a) technical measures",
        "brisque": "(b) BRISQUE (bundled SVR)",
        "learned": f"(c) learned head ({1 - head.tuned_weight:g} x frozen ridge + {head.tuned_weight:g} x "
        f"predictor of {head.tuned_file.name if head.tuned_file else '-'})",
        "combination": "(d) combination (val-fitted blend, extreme-only gates)",
    }
    for k, label in names.items():
        print(f"| {label} | {res[k]['srcc']:.3f} | {res[k]['plcc']:.3f} |")
    print(f"| baseline: ridge on global pooled native-resolution features | {bs:.3f} | {bp:.3f} |")
    if tuned is not None:
        s, p = srcc_plcc(tuned, mos[te])
        r = evaluate(rows_te, feats[te], {k: v[te] for k, v in parts.items()}, hd, head.blend_w, head.blend_b,
                     head.fill, gates)["learned"]
        ep = json.loads(head.tuned_file.with_suffix(".json").read_text()).get("best_epoch")
        print(
            f"| parts of (c): ReLU6 Lite0 predictor alone (delta epoch {ep}; 0 = adapters at zero) | "
            f"{s:.3f} | {p:.3f} |"
        )
        print(f"| parts of (c): frozen ridge head alone | {r['srcc']:.3f} | {r['plcc']:.3f} |")
    if "ridge_alpha" in meta and meta.get("feature_version") == head.feature_version:
        from mining.quality.train import cross_subset

        cs = cross_subset(
            rows, feats, float(meta["ridge_alpha"]), head.power, bool(meta.get("group_norm", False))
        )
        print(
            "cross-subset (distribution shift): SRCC within each subset's test rows, "
            "head fitted on the train + val"
        )
        print("rows of the other subsets only (unseen) vs of every subset (seen), same penalty")
        print("| subset | test images | unseen subset | seen |")
        print("|---|---|---|---|")
        for k, v in cs.items():
            print(f"| {k} | {v['n']} | {v['unseen_srcc']:.3f} | {v['seen_srcc']:.3f} |")
    if a.speed_images:
        speed([r["file"] for r in rows[: a.speed_images]])
    return 0


def speed(files: list[str]) -> None:
    """Extractor images/s side by side: the v2 learned part (ReLU6 predictor: native 512 view, blocks
    4..15 + head, mean+std) and the current extractor on PyTorch and on onnxruntime."""
    import time

    from PIL import Image

    from mining.quality import deep

    ims = [Image.open(f).convert("RGB") for f in files]
    res = {}
    for name, kw in (("v2 (onnx, native512, blocks 4-15 + head, mean+std)",
                      {"views": (("native", 512),), "taps": tuple(range(4, 16)), "stats": ("mean", "std"),
                       "backend": "onnx"}),
                     ("current views on torch", {"backend": "torch"}),
                     ("current views on onnxruntime (pipeline default)", {"backend": "onnx"})):
        qf = deep.QualityFeatures(threads=2, **kw)
        qf(ims[:2])  # warm-up
        t = time.perf_counter()
        qf(ims)
        res[name] = len(ims) / (time.perf_counter() - t)
    base = next(iter(res.values()))
    print(f"extractor speed on {len(ims)} BIQ2021 images (2 threads, same run):")
    for name, v in res.items():
        print(f"  {name}: {v:.2f} images/s ({v / base:.2f}x v2)")


if __name__ == "__main__":
    raise SystemExit(main())

"""The offline image-text projection on held-out images: retrieval recall, COCO domain accuracy,
and the caption-alignment rule, side by side with baselines.

Splits are by image (``mining.itm.data``). Figures printed:

1. Image->text and text->image recall@1/5/10 on the **test** split of each dataset with the
   shipped weights, next to a random ranking and the closed-form ridge map (no contrastive step).
2. Domain accuracy on COCO images with a mapped main category (the reference labels of
   ``bench.quality_domains_coco``): the ImageNet-map classifier (the former default, 0.697 on all
   132) vs image-text matching, (a) on the test split with the shipped weights, text weight chosen
   on the val split; (b) on all 132 by 5-fold cross-fitting: each COCO image is classified by a
   projection trained without it (Flickr8k train+val and the other COCO folds), same settings.
3. The caption-alignment rule (``mining.itm.align``): share of test pairs kept with their own
   caption vs with another image's caption.
4. With ``--styled N``: the styled-generation filter on N COCO val and N test images stylised
   (Magenta) with StyleDrop styles, the real path of ``datasets.tasks.styled``: the caption rank of
   each target with its own and with another image's caption; the styled threshold is chosen on val.

    python -m bench.itm_coco [--data ../shared/data] [--folds 5] [--imagenet] [--styled 30]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

TEXT_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


class CachedImages:
    """Stands in for ``ImageFeatures``: "images" are row indices into cached vectors."""

    def __init__(self, feats: np.ndarray):
        self.feats = feats

    def embed(self, idx):
        return self.feats[np.asarray(idx, dtype=int)]


def domain_probs(weights, feats, idx, captions, domains):
    """(image probs, caption probs) of the ITM classifier for cached rows ``idx``."""
    from mining.domains import ItmDomainClassifier
    from mining.itm.model import ItmSpace

    clf = ItmDomainClassifier(domains, space=ItmSpace(weights, image_features=CachedImages(feats)))
    return clf.image_probs(list(idx)), clf.text_probs(captions)


def acc(p, truth, doms):
    return float((np.array(doms)[p.argmax(1)] == np.array(truth)).mean()) if len(truth) else float("nan")


def styled_filter(pairs, data, weights, n):
    """Stylise n COCO val and n test images (StyleDrop styles in turn): caption ranks of the targets with
    their own and another image's caption; the styled threshold is chosen on val (balanced accuracy)."""
    import csv
    from collections import Counter

    from PIL import Image

    from datasets.style import ArbitraryStyleTransfer
    from mining.itm.align import Aligner
    from mining.itm.model import ItmSpace

    rows = list(csv.DictReader(open(Path(data) / "styledrop" / "metadata.csv", encoding="utf-8")))
    styles = [Image.open(Path(data) / "styledrop" / r["file"]).convert("RGB") for r in rows[:6]]
    for s in styles:
        s.thumbnail((384, 384))
    st, al = ArbitraryStyleTransfer(), Aligner(ItmSpace(weights))
    ranks = {}
    for split in ("val", "test"):
        sel = [p for p in pairs if p.dataset == "coco_mini" and p.split == split][:n]
        own, other, gain = [], [], []
        for i, p in enumerate(sel):
            content = Image.open(p.path).convert("RGB")
            content.thumbnail((384, 384))
            style = styles[i % len(styles)]
            target = st.transfer(content, st.style_vector(style))
            c1 = al.styled(target, style, content, p.captions[0])
            c2 = al.styled(target, style, content, sel[(i + 7) % len(sel)].captions[0])
            own.append(c1.caption_rank)
            other.append(c2.caption_rank)
            gain.append(c1.style_gain)
        ranks[split] = (np.array(own), np.array(other), np.array(gain))
    grid = (0.25, 0.5, 0.6, 0.75)
    bal = {q: ((ranks["val"][0] >= q).mean() + (ranks["val"][1] < q).mean()) / 2 for q in grid}
    best = max(grid, key=lambda q: (bal[q], -q))
    print(
        f"\nstyled targets ({n} COCO val + {n} test images x {len(styles)} StyleDrop styles, Magenta): "
        f"style gain > 0 for val {(ranks['val'][2] > 0).mean():.3f}, test {(ranks['test'][2] > 0).mean():.3f}"
    )
    print(
        "| min caption rank (styled) | split | kept, own caption | kept, another image's caption | "
        "val balanced acc |"
    )
    print("|---|---|---|---|---|")
    for q in grid:
        for split in ("val", "test"):
            o, x, _ = ranks[split]
            print(
                f"| {q}{' (chosen)' if q == best else ''} | {split} | {(o >= q).mean():.3f} | "
                f"{(x >= q).mean():.3f} | "
                f"{bal[q]:.3f} |"
            )
    print(f"verdicts at {best}, test: " + str(dict(Counter(
        "style_misaligned" if g <= 0 else "caption_misaligned" if o < best else "kept"
        for o, g in zip(ranks["test"][0], ranks["test"][2])))))


def main(argv: list[str] | None = None) -> int:
    from bench.quality_domains_coco import COCO_DOMAIN
    from mining.config import DEFAULT_DOMAINS
    from mining.itm.align import Aligner
    from mining.itm.data import DEFAULT_DATA, features, load_pairs
    from mining.itm.model import DEFAULT_WEIGHTS, ItmSpace, Projection
    from mining.itm.train import FitConfig, fit, random_recall, retrieval, ridge_init, split_arrays

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--folds", type=int, default=5, help="COCO cross-fitting folds (0: skip)")
    ap.add_argument(
        "--imagenet", action="store_true", help="also run the ImageNet-map classifier (loads images)"
    )
    ap.add_argument(
        "--styled", type=int, default=0, help="stylise N COCO test images and run the styled filter"
    )
    ap.add_argument("--skip", default="", help="comma list of parts to skip: retrieval,domains,align")
    a = ap.parse_args(argv)
    pairs = load_pairs(a.data)
    if not pairs or not Path(a.weights).exists():
        print(f"skipped: no data under {a.data} or no weights {a.weights}")
        return 0
    img, txt = features(pairs)
    proj = Projection.load(a.weights)
    print(f"weights {a.weights}: {json.dumps(proj.meta.get('config'))}, step {proj.meta.get('step')}")

    skip = set(a.skip.split(","))
    if a.styled:
        styled_filter(pairs, a.data, a.weights, a.styled)
    # 1. retrieval on test
    tr = split_arrays(pairs, img, txt, "train")
    w0, b0 = ridge_init(*tr, 1.0)
    ridge = Projection(w0, b0, None, 14.3)
    print("\n| test split | images | i2t R@1 | i2t R@5 | t2i R@1 | t2i R@5 | random i2t R@5 | random t2i R@5 "
          "| ridge i2t R@5 | ridge t2i R@5 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for ds in () if "retrieval" in skip else ("coco_mini", "flickr8k_1k", None):
        te = split_arrays(pairs, img, txt, "test", ds)
        r, rr, base = retrieval(proj, *te), retrieval(ridge, *te), random_recall(len(te[0]))
        print(
            f"| {ds or 'both (one pool)'} | {len(te[0])} | {r['i2t_r1']:.3f} | {r['i2t_r5']:.3f} "
            f"| {r['t2i_r1']:.3f} | {r['t2i_r5']:.3f} | {base['i2t']:.3f} | {base['t2i']:.3f} "
            f"| {rr['i2t_r5']:.3f} | {rr['t2i_r5']:.3f} |"
        )

    # 2. domains on COCO
    doms = DEFAULT_DOMAINS
    coco = [
        (i, p) for i, p in enumerate(pairs) if p.dataset == "coco_mini" and COCO_DOMAIN.get(p.main_category)
    ]
    by = {s: [(i, p) for i, p in coco if p.split == s] for s in ("train", "val", "test")}
    print(
        f"\nCOCO images with a mapped main category: {len(coco)} (train {len(by['train'])}, "
        f"val {len(by['val'])}, "
        f"test {len(by['test'])}); caption = the first of 5 (as bench.quality_domains_coco)"
    )

    def run(weights, rows):
        idx = [i for i, _ in rows]
        pi, pt = domain_probs(weights, img, idx, [p.captions[0] for _, p in rows], doms)
        return pi, pt, [COCO_DOMAIN[p.main_category] for _, p in rows]

    if "domains" in skip:
        return 0
    pi, pt, truth = run(a.weights, by["val"])
    val_acc = {w: acc((1 - w) * pi + w * pt, truth, doms) for w in TEXT_WEIGHTS}
    w_best = max(TEXT_WEIGHTS, key=lambda w: (val_acc[w], -abs(w - 0.5)))
    print("val accuracy by text weight: " + ", ".join(f"{w}: {v:.3f}" for w, v in val_acc.items())
          + f" -> chosen {w_best}")
    pi, pt, truth = run(a.weights, by["test"])
    print("\n| COCO domain accuracy | n | image only | caption only | combined |")
    print("|---|---|---|---|---|")
    print(
        f"| ITM, test split (shipped weights, text weight {w_best}) | {len(truth)} | "
        f"{acc(pi, truth, doms):.3f} | "
        f"{acc(pt, truth, doms):.3f} | {acc((1 - w_best) * pi + w_best * pt, truth, doms):.3f} |"
    )
    if a.imagenet:
        from PIL import Image

        from mining.domains import OfflineDomainClassifier

        clf = OfflineDomainClassifier(doms)
        ims = [Image.open(p.path).convert("RGB") for _, p in by["test"]]
        qi, qt = clf.image_probs(ims), clf.text_probs([p.captions[0] for _, p in by["test"]])
        print(
            f"| ImageNet map, test split (text weight {clf.text_weight}) | {len(truth)} | "
            f"{acc(qi, truth, doms):.3f} | {acc(qt, truth, doms):.3f} | "
            f"{acc((1 - clf.text_weight) * qi + clf.text_weight * qt, truth, doms):.3f} |"
        )
    if a.folds:
        cfg = FitConfig(**proj.meta["config"]) if proj.meta.get("config") else FitConfig()
        cfg = FitConfig(**{**cfg.__dict__, "steps": int(proj.meta.get("step") or cfg.steps)})
        coco_idx = np.array([i for i, _ in coco])
        fold = np.array([int(p.file.rsplit("/", 1)[-1].split(".")[0]) % a.folds for _, p in coco])
        base_train = np.array([p.dataset == "flickr8k_1k" and p.split != "test" for p in pairs])
        coco_all = np.array([p.dataset == "coco_mini" for p in pairs])
        pi_all, pt_all = np.zeros((len(coco), len(doms))), np.zeros((len(coco), len(doms)))
        tmp = Path("out/itm_cache")
        tmp.mkdir(parents=True, exist_ok=True)
        for f in range(a.folds):
            held = set(coco_idx[fold == f].tolist())
            m = base_train | (coco_all & ~np.isin(np.arange(len(pairs)), list(held)))
            pf, _ = fit(img[m], txt[m], cfg)
            path = tmp / f"crossfit-{f}.npz"
            pf.save(path, {"fold": f})
            rows = [coco[j] for j in np.flatnonzero(fold == f)]
            pi_f, pt_f, _ = run(path, rows)
            pi_all[fold == f], pt_all[fold == f] = pi_f, pt_f
        truth = [COCO_DOMAIN[p.main_category] for _, p in coco]
        print(
            f"| ITM, all {len(coco)} by {a.folds}-fold cross-fitting (text weight {w_best}) | {len(coco)} | "
            f"{acc(pi_all, truth, doms):.3f} | {acc(pt_all, truth, doms):.3f} | "
            f"{acc((1 - w_best) * pi_all + w_best * pt_all, truth, doms):.3f} |"
        )
        print(
            f"| ImageNet map, all {len(coco)} (docs/mining.md, bench.quality_domains_coco) | "
            "132 | 0.614 | 0.614 | 0.697 |"
        )
        for d in sorted(set(truth)):
            mm = np.array([t == d for t in truth])
            c = (1 - w_best) * pi_all + w_best * pt_all
            print(
                f"|   {d} (cross-fit) | {int(mm.sum())} | {acc(pi_all[mm], np.array(truth)[mm], doms):.3f} | "
                f"{acc(pt_all[mm], np.array(truth)[mm], doms):.3f} | "
                f"{acc(c[mm], np.array(truth)[mm], doms):.3f} |"
            )

    # 3. caption-alignment rule on test pairs (own caption vs another image's caption)
    space = ItmSpace(a.weights, image_features=CachedImages(img))
    al = Aligner(space)
    print(
        "\n| alignment rule (min caption rank) | split | pairs | kept, own caption | "
        "kept, another image's caption |"
    )
    print("|---|---|---|---|---|")
    for split in ("val", "test"):
        idx = np.array([i for i, p in enumerate(pairs) if p.split == split])
        iv = space.embed_images(list(idx))
        own = space.proj.text(txt[idx, 0])
        other = space.proj.text(txt[np.roll(idx, 7), 0])
        for q in (0.25, 0.5, 0.75, 0.9):
            _, r_own = al.caption_rank_from_vectors(iv, own)
            _, r_oth = al.caption_rank_from_vectors(iv, other)
            print(f"| {q} | {split} | {len(idx)} | {(r_own >= q).mean():.3f} | {(r_oth >= q).mean():.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

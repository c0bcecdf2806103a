"""Train the learned quality head and the blend on BIQ2021 (``make train-quality-head``).

Split (by sha1 of the file name, see :mod:`mining.quality.biq`): the ridge head is fitted on
train (its penalty chosen by val SRCC), the non-negative blend on val, and test is only ever used
for reporting. The gates (clipping, extreme technical measures) only act at the extremes; their
parameters are chosen on the degradations of the COCO train2017 images (``--coco``): among the
settings whose combined score drops for at least ``--degradation-target`` of the images under
every degradation, the one with the best val SRCC. Features are cached under ``--cache`` (gitignored).

    python -m mining.quality.train --biq ../shared/data/biq2021 --out mining/weights/quality_head.npz
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from scipy import stats

from mining.quality import technical as tech
from mining.quality.biq import DEFAULT_CACHE, cached_matrix, deep_features, hash_key, load_biq
from mining.quality.finetune import DEFAULT_DELTA
from mining.quality.ridge import fit_head, ridge_predict
from mining.quality.scorer import BLEND_INPUTS, DEFAULT_WEIGHTS, blend_matrix, final_quality

PART_COLUMNS = ("brisque", "technical") + tuple(f"m_{n}" for n in tech.NAMES)
PARTS_VERSION = "parts-brisque-technical-v1"
# v3 head: ridge penalties relative to the mean squared norm of a (scaled) training row, chosen by val SRCC
LAMBDAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
POWER = 1.0  # signed power applied to the pooled features before standardising (1 = none)
DEPTHS = ((0, 5), (5, 11), (11, 16), (16, 17))  # tap groups: stride <= 8, stride 16, stride 32, the head
TECHNICAL_SHARE = 0.0  # fixed share of the technical score (0: the gates below carry the priors)
# Gates (see mining/quality/scorer.py): floors of the mapped measures below which an image is an outlier
# (about the 1st percentile of BIQ2021 val photos; far below clean COCO photos), and the grids searched.
GATE_FLOORS = {"sharpness": 0.3, "noise": 0.15, "blockiness": 0.03}
CLIP_FLOORS = (0.1, 0.2, 0.3)
CLIP_GAMMAS = (0.5, 1.0, 2.0)
GATE_GAMMAS = (0.0, 0.25, 0.5, 1.0)
DEGRADATION_TARGET = 0.98  # 0.95 let one val2017 over-exposed copy outscore its original (test)
DEFAULT_COCO = "../shared/data/coco_mini"
TUNED_WEIGHTS = tuple(np.round(np.linspace(0, 1, 11), 2))  # share of the fine-tuned predictor, chosen on val


def load_image(path: str):
    """A PIL RGB image; ``path#name`` applies the degradation ``name`` of
    :mod:`mining.quality.degradations`."""
    from PIL import Image

    from mining.quality.degradations import DEGRADATIONS

    path, _, deg = path.partition("#")
    im = Image.open(path).convert("RGB")
    return DEGRADATIONS[deg](im) if deg else im


def hand_parts(rows: list[dict], cache_dir: str = DEFAULT_CACHE) -> dict[str, np.ndarray]:
    """Cached BRISQUE + technical parts (columns PART_COLUMNS) and ``clip_high`` for rows."""
    from mining.quality.brisque_score import Brisque

    b = Brisque()

    def fn(paths):
        out = []
        for p in paths:
            rgb = np.asarray(load_image(p))
            t, m = tech.technical(rgb)
            try:
                bs = b.score(rgb)
            except Exception:  # noqa: BLE001
                bs = np.nan
            out.append([bs, t] + [m[n] for n in tech.NAMES])
        return np.array(out)

    mat = cached_matrix(rows, PARTS_VERSION, fn, cache_dir, chunk=100, desc="brisque+technical")
    out = {c: mat[:, i] for i, c in enumerate(PART_COLUMNS)}

    def clip_fn(paths):
        return np.array([[tech.raw_measures(np.asarray(load_image(p)))["clip_high"]] for p in paths])

    out["clip_high"] = cached_matrix(rows, "clip-high-v1", clip_fn, cache_dir, chunk=100, desc="clipping")[
        :, 0
    ]
    return out


def tuned_predictions(rows: list[dict], delta: str, cache_dir: str = DEFAULT_CACHE) -> np.ndarray:
    """Fine-tuned predictor outputs for rows (``path#degradation`` allowed), cached per image under a tag
    naming the delta's sha1."""
    from mining.quality.finetune import TunedQuality, file_sha1

    model = []

    def fn(paths):
        if not model:
            model.append(TunedQuality(delta, threads=1))
        return model[0]([load_image(p) for p in paths])[:, None]

    return cached_matrix(rows, f"tuned-{file_sha1(delta)[:12]}", fn, cache_dir, desc="fine-tuned predictor")[
        :, 0
    ]


def mix(ridge: np.ndarray, tuned: np.ndarray | None, t: float) -> np.ndarray:
    """The learned part: ``(1 - t) * ridge + t * tuned`` clipped to [0, 1] (as
    :meth:`LearnedHead.predict`)."""
    return np.clip((1 - t) * ridge + (t * tuned if t > 0 else 0.0), 0, 1)


def srcc_plcc(pred: np.ndarray, mos: np.ndarray) -> tuple[float, float]:
    """Spearman and Pearson correlation (NaN predictions are replaced by the median)."""
    pred = np.where(np.isnan(pred), np.nanmedian(pred), pred)
    return float(stats.spearmanr(pred, mos).statistic), float(stats.pearsonr(pred, mos).statistic)


def column_scale() -> np.ndarray:
    """Per feature column ``1 / sqrt(size of its group)``, a group being one (view, pooling statistic,
    depth range of :data:`DEPTHS`): every group then weighs the same in the ridge fit, so the 1280-wide
    head output does not outvote the 16-wide first block by its width alone."""
    from mining.quality.deep import column_layout

    lay = column_layout()
    depth = np.zeros(lay["tap"].max() + 1, int)
    for i, (lo, hi) in enumerate(DEPTHS):
        depth[lo:hi] = i
    key = (lay["view"] * 10 + lay["stat"]) * 10 + depth[lay["tap"]]
    _, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
    return (1.0 / np.sqrt(counts[inv])).astype(np.float64)


def fit_blend(parts: dict[str, np.ndarray], y: np.ndarray) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LinearRegression

    m = LinearRegression(positive=True).fit(blend_matrix(parts), y)
    return m.coef_.astype(np.float32), float(m.intercept_)


def default_gates() -> dict:
    """Gate parameters that leave every score unchanged (no gate)."""
    return {"share": TECHNICAL_SHARE, "clip_floor": 0.0, "clip_gamma": 0.0, "floors": dict(GATE_FLOORS),
            "gate_gamma": 0.0}


def combined(
    parts: dict[str, np.ndarray], learned: np.ndarray, blend_w, blend_b, fill: float, gates: dict
) -> np.ndarray:
    """The scorer's ``quality`` from cached parts (same formula as :meth:`LearnedHead.final`)."""
    p = dict(parts, learned=learned)
    blend = np.clip(blend_matrix(p, fill) @ blend_w + blend_b, 0, 1)
    return final_quality(
        blend,
        p["technical"],
        p["m_resolution"],
        p["clip_high"],
        gates["share"],
        gates["clip_gamma"],
        gates["clip_floor"],
        {k: p[f"m_{k}"] for k in gates["floors"]},
        gates["floors"],
        gates["gate_gamma"],
    )


def evaluate(rows, feats, parts, head, blend_w, blend_b, fill: float = 0.5,
             gates: dict | None = None, tuned: np.ndarray | None = None, tuned_weight: float = 0.0,
             ) -> dict[str, dict[str, float]]:
    """SRCC/PLCC per part and for the combination on the rows given."""
    learned = mix(ridge_predict(head, feats), tuned, tuned_weight)
    combo = combined(parts, learned, blend_w, blend_b, fill, gates or default_gates())
    mos = np.array([r["mos"] for r in rows])
    res = {}
    for name, v in (("technical", parts["technical"]), ("brisque", parts["brisque"]), ("learned", learned),
                    ("combination", combo)):
        s, pl = srcc_plcc(v, mos)
        res[name] = {"srcc": s, "plcc": pl}
    return res


def degradation_parts(
    coco: str, subset: str, cache: str
) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """(hand parts, deep features, degradation names) for every COCO image of ``subset`` and its degraded
    copies: arrays of shape (n_images, 1 + n_degradations, ...); column 0 is the original."""
    from mining.quality.degradations import DEGRADATIONS

    files = sorted(Path(coco).glob(f"{subset}/*.jpg"))
    kinds = [""] + list(DEGRADATIONS)
    rows = [
        {"file": f"{f}#{k}" if k else str(f), "name": f"coco/{f.parent.name}/{f.name}#{k}", "split": "train"}
        for f in files
        for k in kinds
    ]
    parts = hand_parts(rows, cache)
    feats = deep_features(rows, cache, loader=load_image)
    n, v = len(files), len(kinds)
    return {k: a.reshape(n, v) for k, a in parts.items()}, feats.reshape(n, v, -1), list(DEGRADATIONS)


def degradation_fractions(quality: np.ndarray, names: list[str]) -> dict[str, float]:
    """Fraction of images whose degraded copy (columns 1..) scores below the original (column 0)."""
    return {d: float((quality[:, i + 1] < quality[:, 0]).mean()) for i, d in enumerate(names)}


def choose_gates(
    val: tuple, deg: tuple, target: float = DEGRADATION_TARGET, share: float = TECHNICAL_SHARE
) -> tuple:
    """Grid search: among gate settings whose every degradation fraction on ``deg`` is >= ``target``, the best
    val SRCC (else the setting with the highest worst-case fraction). ``val`` = (parts, learned, mos, blend_w,
    blend_b, fill); ``deg`` = (parts, learned, names). Returns (gates, val SRCC, fractions, table)."""
    vp, vl, mos, bw, bb, fill = val
    dp, dl, names = deg
    flat = {k: a.reshape(-1) for k, a in dp.items()}
    best, table = None, []
    for cf in CLIP_FLOORS:
        for cg in CLIP_GAMMAS:
            for gg in GATE_GAMMAS:
                g = default_gates() | {"share": share, "clip_floor": cf, "clip_gamma": cg, "gate_gamma": gg}
                r = float(stats.spearmanr(combined(vp, vl, bw, bb, fill, g), mos).statistic)
                fr = degradation_fractions(
                    combined(flat, dl.reshape(-1), bw, bb, fill, g).reshape(dl.shape), names
                )
                worst = min(fr.values())
                key = (worst >= target, r if worst >= target else worst)
                table.append((cf, cg, gg, r, worst))
                if best is None or key > best[0]:
                    best = (key, g, r, fr)
    return best[1], best[2], best[3], table


def select_rows(rows: list[dict], max_train: int = 0, train_list: str | None = None) -> list[dict]:
    """Every val/test row, and the train rows named in ``train_list`` (a text file, one name per
    line; None = all), limited to the ``max_train`` with the smallest name hash (0 = no limit)."""
    if train_list:
        names = set(Path(train_list).read_text(encoding="utf-8").splitlines())
        rows = [r for r in rows if r["split"] != "train" or r["name"] in names]
    if not max_train:
        return rows
    train = sorted((r for r in rows if r["split"] == "train"), key=lambda r: hash_key(r["name"]))
    keep = {r["name"] for r in train[:max_train]}
    return [r for r in rows if r["split"] != "train" or r["name"] in keep]


def prepare(biq: str, cache: str, max_train: int = 0, train_list: str | None = None):
    """(rows, deep features, hand parts for val+test rows as full-length arrays with NaN for train)."""
    rows = select_rows(load_biq(biq), max_train, train_list)
    feats = deep_features(rows, cache)
    idx = [i for i, r in enumerate(rows) if r["split"] != "train"]
    sub = hand_parts([rows[i] for i in idx], cache)
    parts = {k: np.full(len(rows), np.nan) for k in sub}
    for k in sub:
        parts[k][idx] = sub[k]
    return rows, feats, parts


def train(biq: str, out: str, cache: str = DEFAULT_CACHE, max_train: int = 0, train_list: str | None = None,
          share: float = TECHNICAL_SHARE, coco: str = DEFAULT_COCO, coco_subset: str = "train2017",
          target: float = DEGRADATION_TARGET, finetune: str | None = None, power: float = POWER,
          group_norm: bool = False, refit: bool = True, gates_from: str | None = None) -> dict:
    from core.storage import atomic_write_bytes
    from mining.quality.deep import FEATURE_VERSION
    from mining.quality.finetune import file_sha1

    rows, feats, parts = prepare(biq, cache, max_train, train_list)
    split = np.array([r["split"] for r in rows])
    mos = np.array([r["mos"] for r in rows])
    tr, va, te = (split == "train"), (split == "val"), (split == "test")
    scale = column_scale() if group_norm else None
    head = fit_head(feats[tr], mos[tr], feats[va], mos[va], LAMBDAS, scale, power, relative=True)
    val_head = head
    if refit:  # the shipped head: the val-chosen penalty, refitted on train + val (test stays untouched)
        tv = tr | va
        head = fit_head(feats[tv], mos[tv], alphas=(float(head["alpha"]),), scale=scale, power=power)

    def ridge(f):  # the train-only head on val (blend, t and gates are chosen with honest val predictions)
        return ridge_predict(val_head, f)

    tuned, tw, tuned_val = None, 0.0, {}
    if finetune:  # the fine-tuned predictor on val + test; its share of the learned part chosen by val SRCC
        held = [i for i, r in enumerate(rows) if r["split"] != "train"]
        tuned = np.full(len(rows), np.nan)
        tuned[held] = tuned_predictions([rows[i] for i in held], finetune, cache)
        tuned_val = {float(t): float(stats.spearmanr(mix(ridge(feats[va]), tuned[va], t), mos[va]).statistic)
                     for t in TUNED_WEIGHTS}
        tw = max(tuned_val, key=lambda t: (round(tuned_val[t], 6), t))

    def predict(f, tu=None):
        return mix(ridge(f), tu, tw)

    learned = predict(feats, tuned)
    sel = lambda m: {k: v[m] for k, v in parts.items()}  # noqa: E731
    blend_w, blend_b = fit_blend(sel(va) | {"learned": learned[va]}, mos[va])
    fill = float(np.nanmean(parts["brisque"][va]))
    blend_val = stats.spearmanr(
        combined(sel(va), learned[va], blend_w, blend_b, fill, default_gates()), mos[va]
    ).statistic
    if (
        blend_val < stats.spearmanr(learned[va], mos[va]).statistic
    ):  # the MSE-fitted blend must earn its place
        blend_w, blend_b = np.eye(len(BLEND_INPUTS), dtype=np.float32)[0], 0.0
    gates, gate_info = default_gates() | {"share": share}, {}
    if gates_from:  # keep the gates of an earlier fit (stored priors) instead of searching them again
        prev = json.loads(Path(gates_from).read_text())
        gates, gate_info = (
            prev["gates"],
            dict(prev.get("gate_selection", {}), reused_from=Path(gates_from).name),
        )
    elif coco and sorted(Path(coco).glob(f"{coco_subset}/*.jpg")):
        dp, df, names = degradation_parts(coco, coco_subset, cache)
        dt = None
        if tw > 0:
            files = sorted(Path(coco).glob(f"{coco_subset}/*.jpg"))
            kinds = [""] + names
            drows = [{"file": f"{f}#{k}" if k else str(f), "name": f"coco/{f.parent.name}/{f.name}#{k}"}
                     for f in files for k in kinds]
            dt = tuned_predictions(drows, finetune, cache).reshape(df.shape[:2])
        gates, val_srcc, fractions, table = choose_gates(
            (sel(va), learned[va], mos[va], blend_w, blend_b, fill),
            (dp, predict(df, dt), names),
            target,
            share,
        )
        gate_info = {
            "coco_subset": coco_subset,
            "images": int(df.shape[0]),
            "target": target,
            "val_srcc": val_srcc,
            "fractions": fractions,
            "grid": [
                dict(zip(("clip_floor", "clip_gamma", "gate_gamma", "val_srcc", "worst_fraction"), t))
                for t in table
            ],
        }
    rows_te = [r for r, t in zip(rows, te) if t]
    metrics = {
        "val": evaluate(
            [r for r, t in zip(rows, va) if t],
            feats[va],
            sel(va),
            val_head,
            blend_w,
            blend_b,
            fill,
            gates,
            None if tuned is None else tuned[va],
            tw,
        ),
        "test": evaluate(
            rows_te,
            feats[te],
            sel(te),
            head,
            blend_w,
            blend_b,
            fill,
            gates,
            None if tuned is None else tuned[te],
            tw,
        ),
    }
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        mu=head["mu"],
        sd=head["sd"],
        w=head["w"],
        b=head["b"],
        blend_w=blend_w,
        blend_b=np.float32(blend_b),
        blend_inputs=np.array(BLEND_INPUTS),
        feature_version=np.array(FEATURE_VERSION),
        alpha=head["alpha"],
        max_train=np.int64(max_train),
        brisque_fill=np.float32(fill),
        technical_share=np.float32(gates["share"]),
        clip_gamma=np.float32(gates["clip_gamma"]),
        clip_floor=np.float32(gates["clip_floor"]),
        gate_measures=np.array(list(gates["floors"])),
        gate_floors=np.array(list(gates["floors"].values()), np.float32),
        gate_gamma=np.float32(gates["gate_gamma"]),
        tuned_weight=np.float32(tw),
        power=np.float32(power),
        refit_train_val=np.bool_(refit),
        **(
            {"tuned_file": np.array(Path(finetune).name), "tuned_sha1": np.array(file_sha1(finetune))}
            if tw > 0
            else {}
        ),
    )
    atomic_write_bytes(out, buf.getvalue())
    summary = {
        "max_train": max_train,
        "train_list": train_list,
        "n": {"train": int(tr.sum()), "val": int(va.sum()), "test": int(te.sum())},
        "ridge_alpha": float(head["alpha"]),
        "power": power,
        "group_norm": group_norm,
        "refit_train_val": refit,
        "blend": dict(zip(BLEND_INPUTS, map(float, blend_w))),
        "blend_bias": blend_b,
        "gates": gates,
        "gate_selection": gate_info,
        "metrics": metrics,
        "feature_version": FEATURE_VERSION,
        "tuned_weight": tw,
        "tuned_val_srcc": tuned_val,
        "finetune": Path(finetune).name if finetune else None,
    }
    atomic_write_bytes(str(Path(out).with_suffix(".json")), json.dumps(summary, indent=2).encode())
    atomic_write_bytes(str(Path(out).parent / "NOTE.md"), note(summary, Path(out).name).encode())
    return summary


def cross_subset(rows: list[dict], feats: np.ndarray, alpha: float, power: float = POWER,
                 group_norm: bool = False) -> dict[str, dict[str, float]]:
    """A distribution-shift check: for each BIQ2021 ``subset``, a head (penalty ``alpha``) fitted on the
    train + val rows of the OTHER subsets scores the test rows of that subset; beside it, the SRCC within
    the same rows of a head fitted on the train + val rows of every subset."""
    sub = np.array([r["subset"] for r in rows])
    split = np.array([r["split"] for r in rows])
    mos = np.array([r["mos"] for r in rows])
    scale = column_scale() if group_norm else None
    tv = split != "test"
    full = fit_head(feats[tv], mos[tv], alphas=(alpha,), scale=scale, power=power)
    out = {}
    for s in sorted(set(sub)):
        fit, ev = tv & (sub != s), (split == "test") & (sub == s)
        if not ev.any() or not fit.any():
            continue
        h = fit_head(feats[fit], mos[fit], alphas=(alpha,), scale=scale, power=power)
        out[s] = {"n": int(ev.sum()), "unseen_srcc": srcc_plcc(ridge_predict(h, feats[ev]), mos[ev])[0],
                  "seen_srcc": srcc_plcc(ridge_predict(full, feats[ev]), mos[ev])[0]}
    return out


def note(s: dict, name: str) -> str:
    """The NOTE.md beside the weights: data, split, metric."""
    t, g, gi = s["metrics"]["test"], s["gates"], s["gate_selection"]
    groups = (
        "each (view, statistic, depth) group weighted equally" if s.get("group_norm") else "no group weights"
    )
    lines = [
        f"# `{name}`: learned quality head + blend",
        "",
        "Data: BIQ2021 (`../shared/data/biq2021`, a stratified 3,000-image sample of its "
        "official train split,",
        "512x512, human mean opinion score `mos` in [0, 1]).",
        "",
        "Split: sha1 of the file name (`mining/quality/biq.py`): 80% train / 10% val / 10% test.",
        f"Used: train {s['n']['train']} images (train_list={s['train_list']}, max_train={s['max_train']};",
        f"no list and 0 = all 2,387), val {s['n']['val']}, test {s['n']['test']} (never used for fitting).",
        "",
        f"Features: `{s['feature_version']}` (`mining/quality/deep.py`): EfficientNet-Lite0 ImageNet weights",
        "with its own ReLU6, mean, std, max and 4x4-patch std pooled outputs of all 16 blocks and the head,",
        "for the image at its native resolution (short side capped at 512, centre crop <= 512x512).",
        "",
        f"Head: ridge on standardised features (signed power {s.get('power', 1.0):g} first; "
        f"{groups}),",
        f"penalty {s['ridge_alpha']:g} chosen by SRCC on val with the head fitted on train"
        + (
            "; the shipped head is refitted on train + val with that penalty."
            if s.get("refit_train_val")
            else "."
        ),
        f"Learned part: (1 - t) * ridge + t * fine-tuned predictor (`{s.get('finetune')}`, see",
        "`quality_finetune.json` and `mining/quality/finetune.py`), t = "
        f"{s.get('tuned_weight', 0.0):g} chosen by val SRCC over 0, 0.1, .., 1.",
        "Blend: non-negative least squares on val over [learned, BRISQUE, technical, 6 technical measures],",
        "kept only if it beats the learned head's val SRCC, else the learned head alone",
        f"(weights: {', '.join(f'{k} {v:.3f}' for k, v in s['blend'].items() if v > 0)}); "
        "times gates that act",
        f"only at extremes (`mining/quality/scorer.py`): clipping gate above {g['clip_floor']:g} "
        "blown-out fraction",
        f"(exponent {g['clip_gamma']:g}), extreme-measure gate (floors {g['floors']}, "
        f"exponent {g['gate_gamma']:g})",
        f"and the resolution gate; technical share {g['share']:g}.",
    ]
    if gi:
        fr = ", ".join(f"{k} {v:.3f}" for k, v in gi["fractions"].items())
        if gi.get("reused_from"):
            lines += [
                f"Gates kept from `{gi['reused_from']}` (`--gates-from`, not searched again); "
                "when they were chosen:"
            ]
        lines += [
            f"Gates chosen on the degradations of {gi['images']} COCO {gi['coco_subset']} images: "
            "best val SRCC",
            f"({gi['val_srcc']:.3f}) with every degradation lowering the score for >= {gi['target']:g} "
            f"of them ({fr}).",
        ]
    lines += ["", "Metric (held-out test split, Spearman SRCC / Pearson PLCC against MOS):", "",
              "| scorer | SRCC | PLCC |", "|---|---|---|"]
    for k in ("technical", "brisque", "learned", "combination"):
        lines.append(f"| {k} | {t[k]['srcc']:.3f} | {t[k]['plcc']:.3f} |")
    lines += [
        "",
        "Reproduce: `make train-quality-head` (see `mk/mining.mk`; features cached in out/quality_cache).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--biq", default="../shared/data/biq2021", help="BIQ2021 folder with metadata.csv")
    ap.add_argument(
        "--out", default=str(DEFAULT_WEIGHTS), help="weights file to write (.npz; a .json beside)"
    )
    ap.add_argument("--cache", default=DEFAULT_CACHE, help="feature cache folder (gitignored)")
    ap.add_argument("--max-train", type=int, default=0,
                    help="use only this many train images (smallest name hash first); 0 = all")
    ap.add_argument("--train-list", default=None, help="text file of train image names to use (default: all)")
    ap.add_argument("--technical-share", type=float, default=TECHNICAL_SHARE,
                    help="fixed share of the technical score mixed into the blend")
    ap.add_argument(
        "--coco", default=DEFAULT_COCO, help="coco_mini folder for choosing the gates ('' = no gates)"
    )
    ap.add_argument(
        "--coco-subset", default="train2017", help="COCO folder whose degradations choose the gates"
    )
    ap.add_argument(
        "--degradation-target",
        type=float,
        default=DEGRADATION_TARGET,
        help="minimum fraction of COCO images whose degraded copy must score lower, per degradation",
    )
    ap.add_argument(
        "--finetune",
        default=str(DEFAULT_DELTA) if DEFAULT_DELTA.exists() else "",
        help="fine-tune delta (make train-quality-finetune) mixed into the learned part ('' = ridge only)",
    )
    ap.add_argument(
        "--power", type=float, default=POWER, help="signed power on the pooled features (1 = none)"
    )
    ap.add_argument(
        "--group-norm", action="store_true", help="weigh each (view, statistic, depth) group equally"
    )
    ap.add_argument(
        "--no-refit", action="store_true", help="ship the train-only head (default: refit on train + val)"
    )
    ap.add_argument(
        "--gates-from", default="", help="an earlier quality_head.json whose gates are kept (no search)"
    )
    a = ap.parse_args(argv)
    if a.finetune and not Path(a.finetune).exists():
        print(
            f"note: {a.finetune} is absent (make train-quality-finetune): fitting the frozen ridge head only"
        )
        a.finetune = ""
    s = train(
        a.biq,
        a.out,
        a.cache,
        a.max_train,
        a.train_list or None,
        a.technical_share,
        a.coco,
        a.coco_subset,
        a.degradation_target,
        a.finetune or None,
        a.power,
        a.group_norm,
        not a.no_refit,
        a.gates_from or None,
    )
    print(
        json.dumps(
            {k: v for k, v in s.items() if k != "gate_selection"}
            | {"gate_fractions": s["gate_selection"].get("fractions")},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

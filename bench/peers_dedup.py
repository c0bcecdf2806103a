"""Near-duplicate detection beside imagededup, on the same precomputed encodings, side by side.

    python -m bench.peers_dedup [--sizes 10000,100000] [--threshold 0.97] [--dim 512]

Items: ``bench.clustering_scale.synth`` unit vectors (topics with cosine ~0.5 inside a topic, 5 %
planted near-copies at cosine > 0.99), the stand-in for image embeddings. Each side gets the same
float32 matrix and the dedup stage's cosine threshold (``DedupConfig.cos_threshold``):

- ours: ``clustering.knn.close_pairs`` (exact pairs >= threshold, no n x n matrix);
- imagededup ``CNN.find_duplicates(encoding_map=..., min_similarity_threshold=...)`` (its own search
  on given encodings; the MobileNet it would download is never built: only the search is timed).
  It holds the full n x n similarity matrix, so it is run only where that fits in memory;
- imagededup ``PHash.find_duplicates(encoding_map=..., max_distance_threshold=10)`` (its default) on
  64-bit codes of the same items (sign of 64 random projections, SimHash: no images exist here,
  so this times its Hamming search and counts which pairs a 64-bit hash finds at its default).

Prints pairs found by each, pairs in one set and not the other, seconds and the speed ratio.
imagededup is installed by ``make bench-peers`` (``mk/bench_peers.mk``); without it the peer
rows say so.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from bench.clustering_scale import synth


def _cnn_peer():
    """imagededup's CNN search object without its network (the constructor builds a pretrained MobileNet)."""
    from imagededup.methods import CNN
    from imagededup.utils.logger import return_logger

    cnn = CNN.__new__(CNN)
    cnn.logger, cnn.verbose = return_logger("imagededup.cnn"), 0
    return cnn


def _pairs_from_map(result: dict, index: dict[str, int]) -> set[tuple[int, int]]:
    out = set()
    for a, dups in result.items():
        i = index[a]
        for d in dups:
            j = index[d[0] if isinstance(d, tuple) else d]
            out.add((min(i, j), max(i, j)))
    return out


def ours(x: np.ndarray, threshold: float) -> tuple[set[tuple[int, int]], float]:
    from clustering.knn import close_pairs

    t = time.perf_counter()
    cp = close_pairs(x, threshold)
    sec = time.perf_counter() - t
    return set(zip(cp.pair_i.tolist(), cp.pair_j.tolist())), sec


def imagededup_cnn(x: np.ndarray, threshold: float) -> tuple[set[tuple[int, int]], float]:
    names = [f"{i}.jpg" for i in range(len(x))]
    enc = dict(zip(names, x))
    cnn = _cnn_peer()
    t = time.perf_counter()
    res = cnn.find_duplicates(encoding_map=enc, min_similarity_threshold=threshold, scores=False)
    sec = time.perf_counter() - t
    return _pairs_from_map(res, {n: i for i, n in enumerate(names)}), sec


def simhash_codes(x: np.ndarray, bits: int = 64, seed: int = 0) -> list[str]:
    proj = np.random.default_rng(seed).standard_normal((x.shape[1], bits)).astype(np.float32)
    b = (x @ proj > 0).astype(np.uint8)
    packed = np.packbits(b, axis=1)
    return [row.tobytes().hex() for row in packed]


def imagededup_phash(x: np.ndarray, distance: int = 10) -> tuple[set[tuple[int, int]], float]:
    from imagededup.methods import PHash

    names = [f"{i}.jpg" for i in range(len(x))]
    enc = dict(zip(names, simhash_codes(x)))
    ph = PHash(verbose=False)
    t = time.perf_counter()
    res = ph.find_duplicates(encoding_map=enc, max_distance_threshold=distance, scores=False)
    sec = time.perf_counter() - t
    return _pairs_from_map(res, {n: i for i, n in enumerate(names)}), sec


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh}
        return info.get("MemAvailable", 0)
    except OSError:
        return 0


def peer_status() -> str | None:
    """None when imagededup imports, else why not."""
    try:
        import imagededup.methods  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure is the reason reported
        return f"imagededup not importable ({type(exc).__name__}: {exc}); run `make bench-peers`"
    return None


def main(argv: list[str] | None = None) -> int:
    from clustering.dedup import DedupConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--threshold", type=float, default=DedupConfig().resolved().cos_threshold)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument(
        "--phash-max",
        type=int,
        default=10_000,
        help="largest n for the PHash search (quadratic: 10k took minutes)",
    )
    a = ap.parse_args(argv)
    missing = peer_status()
    print(
        f"threshold {a.threshold}, dim {a.dim}, cpus {os.cpu_count()}; "
        f"peer: {missing or 'imagededup importable'}"
    )
    print(
        f"{'n':>7} {'side':<22} {'pairs':>8} {'only ours':>9} {'only peer':>9} "
        f"{'seconds':>8} {'ours x faster':>13}"
    )
    for n in [int(s) for s in a.sizes.split(",")]:
        x = synth(n, a.dim, 0.05, seed=0)
        mine, t_ours = ours(x, a.threshold)
        print(
            f"{n:>7} {'ours close_pairs':<22} {len(mine):>8} {'':>9} {'':>9} {t_ours:>8.2f} {'':>13}",
            flush=True,
        )
        if missing:
            print(f"{n:>7} {'imagededup':<22} not run: {missing}")
            continue
        need = 2 * n * n * 4  # its float32 n x n matrix, and the vstack copy of the chunks above 10k rows
        if need > 0.8 * _available_bytes():
            print(f"{n:>7} {'imagededup CNN':<22} not run: its n x n similarity matrix needs "
                  f"{need / 2**30:.0f} GiB, {_available_bytes() / 2**30:.0f} GiB available", flush=True)
        else:
            theirs, t = imagededup_cnn(x, a.threshold)
            print(f"{n:>7} {'imagededup CNN search':<22} {len(theirs):>8} {len(mine - theirs):>9} "
                  f"{len(theirs - mine):>9} {t:>8.2f} {t / t_ours:>12.1f}x", flush=True)
        if n <= a.phash_max:
            theirs, t = imagededup_phash(x)
            print(f"{n:>7} {'imagededup PHash search':<22} {len(theirs):>8} {len(mine - theirs):>9} "
                  f"{len(theirs - mine):>9} {t:>8.2f} {t / t_ours:>12.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

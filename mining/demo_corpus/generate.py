"""Plan, render and write the demo corpus (images/, pairs.csv, truth.csv, summary.json)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from typing import Any

from tqdm import tqdm

from core import storage
from core.contracts import OccurrenceKeys
from mining.demo_corpus import planted_copies as dg
from mining.demo_corpus.captions import caption_for, recaption
from mining.demo_corpus.draw import DOMAINS, make_subject, render_sprite, rng_for
from mining.demo_corpus.views import render_view

VERSION = 1  # bump when the output for a given (n, seed) changes
VIEWS_PER_GROUP = 12  # target originals per group (never fewer than 8 when n allows)
PNG_FRACTION = 0.05
TRUTH_COLUMNS = ["row", "path", "url", "key", "group", "view", "domain", "role", "degradation",
                 "duplicate_of", "duplicate_of_path", "duplicate_of_key"]


def role_counts(n: int) -> dict[str, dict[str, int]]:
    """Rows per role and degradation: 10% near-duplicates, 8% low quality, 4.8% broken, rest originals."""
    def split(total: int, kinds: tuple[str, ...]) -> dict[str, int]:
        return {k: total // len(kinds) + (1 if i < total % len(kinds) else 0) for i, k in enumerate(kinds)}

    nd, lq, br = round(0.10 * n), round(0.08 * n), round(0.048 * n)
    return {"original": {"": n - nd - lq - br}, "near_duplicate": split(nd, dg.NEAR_DUPLICATE),
            "low_quality": split(lq, dg.LOW_QUALITY), "broken": split(br, dg.BROKEN)}


def group_sizes(originals: int) -> list[int]:
    groups = max(1, originals // VIEWS_PER_GROUP)
    return [originals // groups + (1 if g < originals % groups else 0) for g in range(groups)]


def _url(group: int, view: int, ext: str, host: str = "demo.invalid", copy: int | None = None) -> str:
    suffix = "" if copy is None else f"_c{copy:04d}"
    return f"https://{host}/g{group:03d}/v{view:02d}{suffix}.{ext}"


def plan_and_render(n: int, seed: int, progress: bool = True) -> list[dict[str, Any]]:
    """All rows, in file order, each with its bytes (``data``) and truth fields."""
    counts = role_counts(n)
    sizes = group_sizes(counts["original"][""])
    subjects = subjects_for(n, seed)
    sprites = [render_sprite(seed, s) for s in subjects]
    bar = tqdm(total=n, desc="demo corpus", unit="img", disable=not progress)
    rows: list[dict[str, Any]] = []
    for g, size in enumerate(sizes):
        for v in range(size):
            r = rng_for(seed, 4, g, v)
            img, phrase = render_view(seed, subjects[g], sprites[g], v)
            png = r.random() < PNG_FRACTION
            data = dg.encode(img, "PNG") if png else dg.encode(img, quality=int(r.integers(85, 96)))
            rows.append(
                {
                    "group": g,
                    "view": v,
                    "role": "original",
                    "degradation": "",
                    "dup": None,
                    "data": data,
                    "ext": "png" if png else "jpg",
                    "url": _url(g, v, "png" if png else "jpg"),
                    "caption": caption_for(r, subjects[g], phrase).encode("utf-8"),
                    "phrase": phrase,
                }
            )
            bar.update()
    originals = len(rows)
    order = rng_for(seed, 5).permutation(originals)
    derived = [(role, k) for role in ("near_duplicate", "low_quality") for k, c in counts[role].items()
               for _ in range(c)]
    for i, (role, kind) in enumerate(derived):
        src = rows[int(order[i % originals])]
        r = rng_for(seed, 6, i)
        g = src["group"]
        row = {
            "group": g,
            "view": src["view"],
            "role": role,
            "degradation": kind,
            "dup": int(order[i % originals]),
            "data": dg.degrade(src["data"], kind, r),
            "ext": "jpg",
        }
        if kind == "same_url":
            row.update(
                url=src["url"], ext=src["ext"], caption=recaption(r, subjects[g], src["phrase"]).encode()
            )
        else:
            host = ["cdn.demo.invalid", "img.mirror.invalid", "static.blog.invalid"][int(r.integers(3))]
            row.update(url=_url(g, src["view"], "jpg", host, copy=i), caption=src["caption"])
        rows.append(row)
        bar.update()
    broken = [k for k, c in counts["broken"].items() for _ in range(c)]
    for i, kind in enumerate(broken):  # fresh, unseen views of a group subject
        r = rng_for(seed, 7, i)
        g = int(r.integers(len(sizes)))
        v = sizes[g] + i
        img, phrase = render_view(seed, subjects[g], sprites[g], v)
        data = dg.encode(img, quality=int(r.integers(85, 96)))
        caption = caption_for(r, subjects[g], phrase)
        row = {"group": g, "view": v, "role": "broken", "degradation": kind, "dup": None, "ext": "jpg",
               "url": _url(g, v, "jpg"), "data": data, "caption": caption.encode("utf-8")}
        if kind == "truncated":
            row["data"] = dg.truncate(data, r)
        elif kind == "zero_bytes":
            row["data"] = b""
        elif kind == "empty_caption":
            row["caption"] = b""
        else:
            row["caption"] = dg.non_utf8(caption)
        rows.append(row)
        bar.update()
    bar.close()
    return _shuffle(rows, seed)


def _shuffle(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Deterministic file order; a same-URL repeat always comes after its original."""
    pos = [int(p) for p in rng_for(seed, 8).permutation(len(rows))]  # pos[i] = file position of plan row i
    for i, row in enumerate(rows):
        if row["degradation"] == "same_url" and pos[i] < pos[row["dup"]]:
            pos[i], pos[row["dup"]] = pos[row["dup"]], pos[i]
    out: list[dict[str, Any]] = [{}] * len(rows)
    for i, row in enumerate(rows):
        out[pos[i]] = dict(row, row=pos[i], dup_row=None if row["dup"] is None else pos[row["dup"]])
    for row in out:
        row["path"] = f"images/{row['row']:05d}.{row['ext']}"
    for row in out:  # a same-URL repeat points at the original's file (same URL, same bytes)
        if row["degradation"] == "same_url":
            row["path"] = out[row["dup_row"]]["path"]
    keys = OccurrenceKeys()
    for row in out:
        row["key"] = keys(row["url"])
    return out


def _csv_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    """CSV as raw bytes: byte fields pass through unchanged (invalid UTF-8 stays invalid)."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([c.decode("utf-8", "surrogateescape") if isinstance(c, bytes) else c for c in r])
    return buf.getvalue().encode("utf-8", "surrogateescape")


def generate(output_dir: str, n: int = 1000, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Write the corpus to ``output_dir``; a finished corpus with the same (n, seed) is kept as is."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    t0 = time.perf_counter()
    summary_path = storage.join(output_dir, "summary.json")
    if storage.exists(summary_path):
        done = json.loads(storage.read_bytes(summary_path))
        if (done.get("n"), done.get("seed"), done.get("version")) == (n, seed, VERSION):
            outputs = {k: storage.join(output_dir, v.rstrip("/")) for k, v in done["files"].items()}
            return dict(done, outputs=dict(outputs, summary=summary_path), skipped=True,
                        seconds=round(time.perf_counter() - t0, 3))
    rows = plan_and_render(n, seed, progress)
    written = set()
    for row in rows:
        if row["path"] not in written:
            storage.atomic_write_bytes(storage.join(output_dir, row["path"]), row["data"])
            written.add(row["path"])
    pairs = [[row["path"], row["url"], row["caption"]] for row in rows]
    truth = []
    for row in rows:
        dup = rows[row["dup_row"]] if row["dup_row"] is not None else None
        truth.append([row["row"], row["path"], row["url"], row["key"], row["group"], row["view"],
                      DOMAINS[row["group"] % len(DOMAINS)], row["role"], row["degradation"],
                      "" if dup is None else dup["row"], "" if dup is None else dup["path"],
                      "" if dup is None else dup["key"]])
    outputs = {"pairs": storage.join(output_dir, "pairs.csv"), "truth": storage.join(output_dir, "truth.csv"),
               "images": storage.join(output_dir, "images"), "summary": summary_path}
    storage.atomic_write_bytes(outputs["pairs"], _csv_bytes(["path", "url", "caption"], pairs))
    storage.atomic_write_bytes(outputs["truth"], _csv_bytes(TRUTH_COLUMNS, truth))
    counts = role_counts(n)
    groups = sorted({row["group"] for row in rows if row["role"] == "original"})
    sizes = group_sizes(counts["original"][""])
    summary = {
        "stage": "demo_corpus",
        "version": VERSION,
        "n": n,
        "seed": seed,
        "rows": len(rows),
        "roles": {role: sum(c.values()) for role, c in counts.items()},
        "degradations": {
            k: c for role in ("near_duplicate", "low_quality", "broken") for k, c in counts[role].items()
        },
        "groups": len(groups),
        "views_per_group": {"min": min(sizes), "max": max(sizes)},
        "groups_per_domain": {
            d: sum(1 for g in groups if g % len(DOMAINS) == i) for i, d in enumerate(DOMAINS)
        },
        "image_files": len(written),
        "png_files": sum(1 for p in written if p.endswith(".png")),
        "files": {"pairs": "pairs.csv", "truth": "truth.csv", "images": "images/"},
    }
    storage.atomic_write_bytes(summary_path, json.dumps(summary, indent=2, sort_keys=True).encode())
    return dict(summary, outputs=outputs, skipped=False, seconds=round(time.perf_counter() - t0, 3))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mining.demo_corpus", description=__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--output", required=True, help="output folder (local or any Beam filesystem path)")
    ap.add_argument("--n", type=int, default=1000, help="number of image-text pairs (rows of pairs.csv)")
    ap.add_argument("--seed", type=int, default=0, help="random seed; same seed = byte-identical output")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    summary = generate(args.output, n=args.n, seed=args.seed, progress=not args.quiet)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def subjects_for(n: int, seed: int) -> list:
    """The group subjects ``generate(n=n, seed=seed)`` draws (index = group id)."""
    sizes = group_sizes(role_counts(n)["original"][""])
    per_domain = [0] * len(DOMAINS)
    out = []
    for g in range(len(sizes)):
        d = g % len(DOMAINS)
        out.append(make_subject(seed, g, DOMAINS[d], per_domain[d]))
        per_domain[d] += 1
    return out


def render_background_only(seed: int, subject, view: int):
    """The exact background of view ``view`` of ``subject``, without the subject (RGB image)."""
    return render_view(seed, subject, None, view, with_subject=False)[0]

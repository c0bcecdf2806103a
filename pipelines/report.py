"""A static HTML report of a run: one self-contained file, no server needed.

    python -m pipelines.report --run out/demo --output out/demo/report

Sections: stage accounting, 5-pair clusters (images, captions, similarities), rejects by reason with
examples, one sample per task (instruction, context thumbnails, target), the dataset card, training
curves and sample grids. Each section reads what the run wrote and says so when a stage's output is absent.
"""

from __future__ import annotations

import argparse
import base64
import csv
import glob
import html
import io
import json
import os
from collections import Counter, defaultdict
from typing import Any

from PIL import Image

from mining import storage

THUMB = 112


def _thumb(data: bytes | None, size: int = THUMB) -> str:
    """An <img> with a JPEG thumbnail as a data URI, or a placeholder when the bytes don't decode."""
    if not data:
        return '<div class="ph">no image</div>'
    try:
        im = Image.open(io.BytesIO(data))
        im.draft("RGB", (size * 2, size * 2))
        im = im.convert("RGB")
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=80)
    except Exception:  # noqa: BLE001 - undecodable inputs are exactly what rejects hold
        return '<div class="ph">undecodable</div>'
    return f'<img src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}" alt="">'


def _esc(text: Any) -> str:
    return html.escape("" if text is None else str(text))


def _first(pattern: str) -> str | None:
    found = sorted(glob.glob(pattern, recursive=True))
    return found[0] if found else None


def _rows_by_key(run: str, keys: set[str]) -> dict[str, dict[str, Any]]:
    """Records (image bytes, caption) for ``keys`` from the run's record shards."""
    found: dict[str, dict[str, Any]] = {}
    for folder in (os.path.join(run, "mined", "kept"), os.path.join(run, "records")):
        if not os.path.isdir(folder) or len(found) == len(keys):
            continue
        for row in storage.iter_rows(folder, columns=["key", "caption", "image", "path", "url"]):
            if row["key"] in keys and row["key"] not in found:
                found[row["key"]] = row
    return found


def _section_stages(run: str) -> str:
    path = os.path.join(run, "demo_summary.json")
    if not os.path.exists(path):
        return "<p>No demo summary (run <code>make demo</code>).</p>"
    rows = []
    for r in json.load(open(path)):
        s = r.get("summary") or {}
        rej = s.get("rejected") or {}
        rej_txt = ", ".join(f"{k}: {v}" for k, v in sorted(rej.items(), key=lambda kv: -kv[1])) if isinstance(rej, dict) else rej
        rows.append(
            f"<tr><td>{_esc(r['stage'])}</td><td>{_esc(r['status'])}</td><td>{_esc(s.get('read', ''))}</td>"
            f"<td>{_esc(s.get('kept', ''))}</td><td>{_esc(rej_txt)}</td><td>{_esc(r.get('why', ''))}</td></tr>"
        )
    return (
        "<table><tr><th>stage</th><th>status</th><th>read</th><th>kept</th><th>rejected by reason</th><th>note</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _section_clusters(run: str, limit: int) -> str:
    path = _first(os.path.join(run, "**", "clusters.parquet"))
    if not path:
        return "<p>No clusters.parquet in this run.</p>"
    clusters = storage.read_parquet(path).to_pylist()
    shown = clusters[:limit]
    rows = _rows_by_key(run, {k for c in shown for k in c["keys"]})
    parts = [f"<p>{len(clusters)} clusters of 5 pairs (showing {len(shown)}); seed first.</p>"]
    summ_path = os.path.join(os.path.dirname(path), "summary.json")
    if os.path.exists(summ_path):
        summ = json.load(open(summ_path))
        facts = [f"{k.replace('_', ' ')}: {summ[k]}" for k in ("clusters_kept", "clusters_too_small",
                                                                "clusters_weak", "cross_domain_duplicates") if k in summ]
        dups = summ.get("duplicates_removed") or {}
        if dups:
            facts.append("duplicates removed by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(dups.items())))
        parts.append(f"<p class=\"facts\">{_esc('; '.join(facts))}</p>")
    for c in shown:
        cells = []
        sims = c.get("similarities") or [None] * len(c["keys"])
        for key, sim in zip(c["keys"], sims):
            row = rows.get(key, {})
            data = row.get("image") or (storage.read_bytes(row["path"]) if row.get("path") else None)
            sim_txt = f"{sim:.3f}" if isinstance(sim, float) else ""
            cells.append(f'<figure>{_thumb(data)}<figcaption>{_esc(row.get("caption", key))}<br><b>{sim_txt}</b></figcaption></figure>')
        parts.append(f'<div class="cluster"><h3>{_esc(c["cluster_id"])} · {_esc(c.get("domain"))}</h3>{"".join(cells)}</div>')
    return "".join(parts)


def _section_rejects(run: str, per_reason: int = 3) -> str:
    folder = os.path.join(run, "mined", "rejects")
    if not os.path.isdir(folder) or not storage.list_files(folder, "*.parquet"):
        return "<p>No mining rejects in this run.</p>"
    rejects = list(storage.iter_rows(folder))
    counts = Counter(r["reason"] for r in rejects)
    examples: dict[str, list[dict]] = defaultdict(list)
    for r in rejects:
        if len(examples[r["reason"]]) < per_reason:
            examples[r["reason"]].append(r)
    records = _rows_by_key(run, {r["key"] for ex in examples.values() for r in ex})
    parts = ["<table><tr><th>reason</th><th>count</th><th>examples</th></tr>"]
    for reason, n in counts.most_common():
        cells = []
        for r in examples[reason]:
            rec = records.get(r["key"], {})
            cells.append(f'<figure>{_thumb(rec.get("image"))}<figcaption>{_esc((r.get("detail") or "")[:80])}</figcaption></figure>')
        parts.append(f"<tr><td>{_esc(reason)}</td><td>{n}</td><td>{''.join(cells)}</td></tr>")
    return "".join(parts) + "</table>"


def _section_tasks(run: str) -> str:
    shards = sorted(glob.glob(os.path.join(run, "tasks", "**", "*.tar"), recursive=True))
    if not shards:
        return "<p>No task shards in this run.</p>"
    import webdataset as wds

    seen: dict[str, dict] = {}
    for sample in wds.WebDataset(shards, shardshuffle=False):
        meta = json.loads(sample["json"])
        if meta["task"] not in seen:
            seen[meta["task"]] = sample
    parts = []
    for task, sample in sorted(seen.items()):
        meta = json.loads(sample["json"])
        ctx = []
        for k, item in enumerate(meta.get("context", []), start=1):
            data = next((v for f, v in sample.items() if f.startswith(f"ctx{k}.")), None)
            ctx.append(f'<figure>{_thumb(data)}<figcaption>{_esc(item.get("text"))}</figcaption></figure>')
        target = next((v for f, v in sample.items() if f.startswith("target.")), None)
        parts.append(
            f'<div class="task"><h3>{_esc(task)}</h3><p class="instr">{_esc(meta.get("instruction"))}</p>'
            f'<div class="row">{"".join(ctx)}<span class="arrow">→</span><figure>{_thumb(target)}'
            f"<figcaption>target</figcaption></figure></div></div>"
        )
    return "".join(parts)


def _section_card(run: str) -> str:
    path = _first(os.path.join(run, "tasks", "**", "*card*.json"))
    if not path:
        return "<p>No dataset card in this run.</p>"
    card = json.load(open(path))
    return f"<pre>{_esc(json.dumps(card, indent=2))[:6000]}</pre>"


def _svg_curve(xs: list[float], ys: list[float], w: int = 560, h: int = 200) -> str:
    if len(xs) < 2:
        return "<p>Too few points to plot.</p>"
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = lambda x: 40 + (w - 50) * (x - x0) / ((x1 - x0) or 1)  # noqa: E731
    sy = lambda y: 10 + (h - 30) * (1 - (y - y0) / ((y1 - y0) or 1))  # noqa: E731
    pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys))
    return (
        f'<svg width="{w}" height="{h}" class="curve"><polyline fill="none" stroke="#2463eb" stroke-width="1.5" points="{pts}"/>'
        f'<text x="2" y="14">{y1:.3g}</text><text x="2" y="{h - 20}">{y0:.3g}</text>'
        f'<text x="40" y="{h - 4}">step {x0:g}</text><text x="{w - 90}" y="{h - 4}">step {x1:g}</text></svg>'
    )


def _section_training(run: str) -> str:
    parts = []
    log = _first(os.path.join(run, "train", "**", "*.csv"))
    if log:
        with open(log) as fh:
            rows = list(csv.DictReader(fh))
        if rows and "step" in rows[0] and "loss" in rows[0]:
            xs = [float(r["step"]) for r in rows if r.get("loss")]
            ys = [float(r["loss"]) for r in rows if r.get("loss")]
            parts.append("<h3>training loss</h3>" + _svg_curve(xs, ys))
    for png in sorted(glob.glob(os.path.join(run, "train", "**", "*.png"), recursive=True))[:6]:
        data = base64.b64encode(open(png, "rb").read()).decode()
        name = os.path.relpath(png, os.path.join(run, "train"))  # stage folder/step: one grid per training stage
        parts.append(f'<figure class="grid"><img src="data:image/png;base64,{data}" alt=""><figcaption>{_esc(name)}</figcaption></figure>')
    return "".join(parts) or "<p>No training outputs in this run.</p>"


CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#1d2330;max-width:1200px}
h1{margin-bottom:0} h2{border-bottom:1px solid #ccd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse} td,th{border:1px solid #ccd;padding:4px 8px;vertical-align:top;font-size:13px}
figure{display:inline-block;margin:4px;width:120px;vertical-align:top}
figure img{max-width:112px;max-height:112px;display:block} figcaption{font-size:11px;color:#444;word-wrap:break-word}
.cluster,.task{border:1px solid #dde;border-radius:6px;padding:6px 10px;margin:8px 0}
.cluster h3,.task h3{margin:2px 0;font-size:14px} .instr{font-family:monospace;font-size:13px}
.arrow{font-size:28px;vertical-align:top;margin:40px 8px;display:inline-block}
.ph{width:112px;height:80px;background:#eee;color:#888;font-size:11px;display:flex;align-items:center;justify-content:center}
.grid{width:auto} .grid img{max-width:560px;max-height:none}
"""


# Records what the browser really rendered (the report test reads these attributes back).
CHECK_JS = (
    "window.addEventListener('load',()=>{const im=[...document.images];"
    "document.body.dataset.images=im.length;"
    "document.body.dataset.decoded=im.filter(i=>i.complete&&i.naturalWidth>0).length;"
    "document.body.dataset.clusters=document.querySelectorAll('.cluster').length;"
    "document.body.dataset.tasks=document.querySelectorAll('.task').length;});"
)


def build_report(run: str, output: str, clusters: int = 12) -> dict[str, Any]:
    """Write ``output/index.html`` for the run folder ``run``; returns a summary with its path."""
    sections = [
        ("Stages", _section_stages(run)),
        ("Retrieval clusters", _section_clusters(run, clusters)),
        ("Rejects by reason", _section_rejects(run)),
        ("Task samples", _section_tasks(run)),
        ("Dataset card", _section_card(run)),
        ("Training", _section_training(run)),
    ]
    body = "".join(f'<h2 id="{t.split()[0].lower()}">{t}</h2>{s}' for t, s in sections)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Run report: {_esc(run)}</title>"
        f"<style>{CSS}</style></head><body><h1>Run report</h1><p><code>{_esc(os.path.abspath(run))}</code></p>{body}<script>{CHECK_JS}</script></body></html>"
    )
    path = storage.join(output, "index.html")
    storage.atomic_write_bytes(path, page.encode("utf-8"))
    return {"stage": "report", "outputs": {"html": path}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run", default="out/demo", help="run folder (the demo's --output)")
    p.add_argument("--output", default=None, help="report folder (default: RUN/report)")
    p.add_argument("--clusters", type=int, default=12, help="clusters to show")
    args = p.parse_args(argv)
    out = build_report(args.run, args.output or os.path.join(args.run, "report"), clusters=args.clusters)
    print(f"report: {out['outputs']['html']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A static HTML report of a run: one self-contained file, no server needed.

    python -m pipelines.report --run out/demo --output out/demo/report

Works on any run folder (the demo's, ``make dataset``'s, or stage folders side by side). Sections:
stage accounting from every stage's ``summary.json``; quality and domain histograms of the kept
records; cluster coherence (similarity to the seed) and the clusters discarded, by reason; a 2-D
PCA map of the image embeddings coloured by domain (a PNG); 5-pair clusters; near-duplicate pairs
side by side; rejects by reason with examples; one sample per task; the dataset card as tables;
training curves and sample grids. Each section reads what the run wrote and says so when a stage's
output is absent.
"""

from __future__ import annotations

import base64
import csv
import glob
import html
import io
import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from core import cli, storage, tables
from core import config as cfgsys
from core.cli import require
from core.config import knob
from pipelines.report_views import colours, legend, pca2, scatter_png, svg_bars, svg_histogram, table

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


def _table(run: str, name: str) -> str | None:
    """The run's ``name.parquet`` table (clusters, duplicates): the merged file, or where it would be
    when only its parts exist (``tables.merge`` off); read it with ``core.tables``."""
    path = _first(os.path.join(run, "**", f"{name}.parquet"))
    part = _first(os.path.join(run, "**", "tables", f"{name}-00000-of-*.parquet"))
    if path is None and part is not None:
        path = os.path.join(os.path.dirname(os.path.dirname(part)), f"{name}.parquet")
    return path


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


STAGE_ORDER = ["demo_corpus", "read", "mine", "cluster", "tasks", "export", "train"]


def _stage_summaries(run: str) -> list[tuple[str, dict[str, Any]]]:
    """(folder, summary) of every stage summary one or two levels under ``run``, in pipeline order."""
    found = []
    for pattern in ("*summary.json", "*/*summary.json", "*/*/summary.json"):
        for path in sorted(glob.glob(os.path.join(run, pattern))):
            if os.path.basename(path) == "demo_summary.json":
                continue
            try:
                doc = json.load(open(path))
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and "stage" in doc:
                found.append((os.path.relpath(os.path.dirname(path), run) or ".", doc))
    rank = {s: i for i, s in enumerate(STAGE_ORDER)}
    return sorted(found, key=lambda fs: (rank.get(fs[1]["stage"], len(rank)), fs[0]))


def _reasons(rej: Any) -> str:
    if isinstance(rej, dict):
        return ", ".join(
            f"{k}: {v}"
            for k, v in sorted(rej.items(), key=lambda kv: -kv[1] if isinstance(kv[1], int) else 0)
        )
    return "" if rej is None else str(rej)


def _section_stages(run: str) -> str:
    rows = []
    for folder, s in _stage_summaries(run):
        read = s.get("read", s.get("rows", ""))
        kept = s.get("kept", s.get("samples", ""))
        if isinstance(kept, dict):
            kept = sum(v for v in kept.values() if isinstance(v, int))
        ok = s.get("accounted")
        rows.append(
            f"<tr><td>{_esc(s['stage'])}</td><td><code>{_esc(folder)}</code></td><td>{_esc(read)}</td>"
            f"<td>{_esc(kept)}</td><td>{_esc(_reasons(s.get('rejected')))}</td>"
            f"<td>{'' if ok is None else ('yes' if ok else '<b>NO</b>')}</td>"
            f"<td>{_esc(s.get('seconds', ''))}</td></tr>"
        )
    notes = []
    demo = os.path.join(run, "demo_summary.json")
    if os.path.exists(demo):
        for r in json.load(open(demo)):
            if r.get("status") != "ok":
                notes.append(f"<li>{_esc(r['stage'])}: {_esc(r.get('status'))} {_esc(r.get('why', ''))}</li>")
    if not rows:
        return "<p>No stage <code>summary.json</code> under this folder.</p>"
    return ("<table><tr><th>stage</th><th>folder</th><th>read</th><th>kept</th><th>rejected by reason</th>"
            "<th>kept + rejected = read</th><th>seconds</th></tr>" + "".join(rows) + "</table>"
            + (f"<ul>{''.join(notes)}</ul>" if notes else ""))


def _kept_folder(run: str) -> str | None:
    for cand in [
        os.path.join(run, "mined", "kept"),
        os.path.join(run, "kept"),
        _first(os.path.join(run, "**", "kept")),
    ]:
        if cand and os.path.isdir(cand) and glob.glob(os.path.join(cand, "*.parquet")):
            return cand
    return None


def _section_distributions(run: str) -> str:
    """Quality histogram (with the mining threshold) and kept records per domain."""
    folder = _kept_folder(run)
    if not folder:
        return "<p>No mined <code>kept/</code> records in this run.</p>"
    import pyarrow.parquet as pq

    names = set(pq.read_schema(storage.list_files(folder, "*.parquet")[0]).names)
    cols = [c for c in ("quality", "domain") if c in names]
    if not cols:
        return "<p>The kept records have no quality or domain columns (not mined).</p>"
    t = storage.read_parquet(folder, columns=cols).to_pydict()
    summ = next((s for _, s in _stage_summaries(run) if s["stage"] == "mine"), {})
    thr = (summ.get("config") or {}).get("min_quality")
    parts = []
    if "quality" in t:
        parts.append(
            '<div class="panel"><h3>quality of kept records</h3>'
            + svg_histogram(t["quality"], 0.0, 1.0, marks={"min_quality": thr} if thr is not None else None)
            + f"<p>{_esc(summ.get('rejected', {}).get('low_quality', 0))} rejected as low_quality "
            "before this (not shown).</p></div>"
        )
    if "domain" in t:
        counts = Counter(d or "none" for d in t["domain"]).most_common()
        parts.append('<div class="panel"><h3>kept records per domain</h3>'
                     + svg_bars([d for d, _ in counts], [n for _, n in counts],
                                colors=[colours([d for d, _ in counts])[d] for d, _ in counts]) + "</div>")
    return "".join(parts)


def _cluster_summary(clusters_path: str) -> dict[str, Any]:
    path = os.path.join(os.path.dirname(clusters_path), "summary.json")
    return json.load(open(path)) if os.path.exists(path) else {}


def _section_coherence(run: str) -> str:
    """Similarity to the seed of every non-seed member, the weakest member per cluster, and the
    clusters the builder discarded, by reason."""
    path = _table(run, "clusters")
    if not path:
        return "<p>No clusters.parquet in this run.</p>"
    clusters = tables.read_table(path).to_pylist()
    members = [s for c in clusters for s in (c.get("similarities") or [])[1:]]
    weakest = [min(c["similarities"][1:]) for c in clusters if len(c.get("similarities") or []) > 1]
    summ = _cluster_summary(path)
    cfg = summ.get("config") or {}
    cfg = cfg.get("cluster") or cfg  # ClusteringConfig's section (older summaries: flat)
    parts = [
        '<div class="panel"><h3>similarity to the seed, every non-seed member</h3>'
        + svg_histogram(members, 0.0, 1.0, marks={"mean": float(np.mean(members))} if members else None)
        + "</div>",
        '<div class="panel"><h3>weakest member per cluster</h3>'
        + svg_histogram(weakest, 0.0, 1.0, color="#e8590c")
        + "</div>",
    ]
    why = {
        "clusters_kept": "kept: 5 members that pass every test",
        "clusters_too_small": "discarded: fewer than 5 relevant, non-duplicate neighbours",
        "clusters_weak": "discarded: distance-ratio test (farthest member over "
        f"{cfg.get('max_distance_ratio', '?')}x the nearest one's distance from the seed)",
        "cross_domain_duplicates": "records removed as duplicates of a record in another domain",
    }
    rows = "".join(f"<tr><td>{_esc(k.replace('_', ' '))}</td><td>{_esc(summ[k])}</td><td>{_esc(v)}</td></tr>"
                   for k, v in why.items() if k in summ)
    dups = summ.get("duplicates_removed") or {}
    if dups:
        rows += (
            f"<tr><td>duplicates removed</td><td>{sum(dups.values())}</td>"
            f"<td>{_esc(_reasons(dups))}</td></tr>"
        )
    parts.append("<table><tr><th>clusters</th><th>count</th><th>why</th></tr>" + rows + "</table>" if rows
                 else "<p>No cluster summary.json beside clusters.parquet.</p>")
    return "".join(parts)


def _section_map(run: str, limit: int = 20000) -> str:
    """PCA of the image embeddings (clip-retrieval layout), coloured by domain, as a PNG."""
    meta_dir = _first(os.path.join(run, "**", "embeddings", "metadata"))
    emb_dir = meta_dir and os.path.join(os.path.dirname(meta_dir), "img_emb")
    if not meta_dir or not os.path.isdir(emb_dir):
        return "<p>No embeddings in this run.</p>"
    files = sorted(
        glob.glob(os.path.join(emb_dir, "img_emb_*.npy")), key=lambda p: int(p.rsplit("_", 1)[1][:-4])
    )
    metas = sorted(
        glob.glob(os.path.join(meta_dir, "metadata_*.parquet")), key=lambda p: int(p.rsplit("_", 1)[1][:-8])
    )
    x = np.concatenate([np.load(f, allow_pickle=False) for f in files])[:limit]
    domains = []
    for m in metas:
        import pyarrow.parquet as pq

        names = pq.read_schema(m).names
        domains += (
            storage.read_parquet(m, columns=["domain"]).column("domain").to_pylist()
            if "domain" in names
            else ["unknown"] * pq.read_metadata(m).num_rows
        )
    domains = [d or "none" for d in domains[: len(x)]]
    if len(x) < 3 or len(domains) != len(x):
        return "<p>Too few embeddings to map.</p>"
    png, colors = scatter_png(pca2(x), domains)
    src = base64.b64encode(png).decode()
    return (
        f'<figure class="map"><img src="data:image/png;base64,{src}" alt="embedding map"><figcaption>'
        f"{len(x)} image embeddings, first two principal components (dim {x.shape[1]})</figcaption></figure>"
        f'<p class="legend">{legend(colors, Counter(domains))}</p>'
    )


def _section_duplicates(run: str, limit: int = 12) -> str:
    """Near-duplicate pairs: the removed record beside the one it duplicates, with the reason."""
    path = _table(run, "duplicates")
    if not path:
        return "<p>No duplicates.parquet in this run.</p>"
    dups = tables.read_table(path).to_pylist()
    if not dups:
        return "<p>No duplicates were found.</p>"
    by_reason: dict[str, list[dict]] = defaultdict(list)
    for d in dups:
        by_reason[d["reason"]].append(d)
    shown, per = [], max(1, limit // max(1, len(by_reason)))
    for reason in sorted(by_reason):
        shown += by_reason[reason][:per]
    rows = _rows_by_key(run, {k for d in shown for k in (d["key"], d["duplicate_of"])})
    parts = [
        f"<p>{len(dups)} removed: {_esc(_reasons(Counter(d['reason'] for d in dups)))} "
        f"(showing {len(shown)}).</p>"
    ]
    for d in shown:
        cells = []
        for key, role in ((d["duplicate_of"], "kept"), (d["key"], "removed")):
            row = rows.get(key, {})
            data = row.get("image") or (storage.read_bytes(row["path"]) if row.get("path") else None)
            cells.append(
                f"<figure>{_thumb(data)}<figcaption>{role}: "
                f"{_esc(row.get('caption', key))}</figcaption></figure>"
            )
        parts.append(f'<div class="pair"><h3>{_esc(d["reason"])}</h3>{"".join(cells)}</div>')
    return "".join(parts)


def _section_clusters(run: str, limit: int) -> str:
    path = _table(run, "clusters")
    if not path:
        return "<p>No clusters.parquet in this run.</p>"
    clusters = tables.read_table(path).to_pylist()
    shown = clusters[:limit]
    rows = _rows_by_key(run, {k for c in shown for k in c["keys"]})
    parts = [f"<p>{len(clusters)} clusters of 5 pairs (showing {len(shown)}); seed first.</p>"]
    summ_path = os.path.join(os.path.dirname(path), "summary.json")
    if os.path.exists(summ_path):
        summ = json.load(open(summ_path))
        facts = [
            f"{k.replace('_', ' ')}: {summ[k]}"
            for k in ("clusters_kept", "clusters_too_small", "clusters_weak", "cross_domain_duplicates")
            if k in summ
        ]
        dups = summ.get("duplicates_removed") or {}
        if dups:
            facts.append(
                "duplicates removed by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(dups.items()))
            )
        parts.append(f"<p class=\"facts\">{_esc('; '.join(facts))}</p>")
    for c in shown:
        cells = []
        sims = c.get("similarities") or [None] * len(c["keys"])
        for key, sim in zip(c["keys"], sims):
            row = rows.get(key, {})
            data = row.get("image") or (storage.read_bytes(row["path"]) if row.get("path") else None)
            sim_txt = f"{sim:.3f}" if isinstance(sim, float) else ""
            cells.append(
                f"<figure>{_thumb(data)}<figcaption>{_esc(row.get('caption', key))}<br>"
                f"<b>{sim_txt}</b></figcaption></figure>"
            )
        parts.append(
            f'<div class="cluster"><h3>{_esc(c["cluster_id"])} · {_esc(c.get("domain"))}</h3>'
            f'{"".join(cells)}</div>'
        )
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
            cells.append(
                f"<figure>{_thumb(rec.get('image'))}"
                f"<figcaption>{_esc((r.get('detail') or '')[:80])}</figcaption></figure>"
            )
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
    tasks = card.pop("tasks", None)
    return (
        f"<p><b>{_esc(card.pop('title', 'dataset card'))}</b> · "
        f"<code>{_esc(os.path.relpath(path, run))}</code></p>"
        + (table(tasks) if tasks else "")
        + table(card)
    )


def _svg_curve(xs: list[float], ys: list[float], w: int = 560, h: int = 200) -> str:
    if len(xs) < 2:
        return "<p>Too few points to plot.</p>"
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = lambda x: 40 + (w - 50) * (x - x0) / ((x1 - x0) or 1)  # noqa: E731
    sy = lambda y: 10 + (h - 30) * (1 - (y - y0) / ((y1 - y0) or 1))  # noqa: E731
    pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys))
    return (
        f'<svg width="{w}" height="{h}" class="curve">'
        f'<polyline fill="none" stroke="#2463eb" stroke-width="1.5" points="{pts}"/>'
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
        name = os.path.relpath(
            png, os.path.join(run, "train")
        )  # stage folder/step: one grid per training stage
        parts.append(
            f'<figure class="grid"><img src="data:image/png;base64,{data}" alt="">'
            f"<figcaption>{_esc(name)}</figcaption></figure>"
        )
    return "".join(parts) or "<p>No training outputs in this run.</p>"


CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#1d2330;max-width:1200px}
h1{margin-bottom:0} h2{border-bottom:1px solid #ccd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse} td,th{border:1px solid #ccd;padding:4px 8px;vertical-align:top;font-size:13px}
figure{display:inline-block;margin:4px;width:120px;vertical-align:top}
figure img{max-width:112px;max-height:112px;display:block} \
figcaption{font-size:11px;color:#444;word-wrap:break-word}
.cluster,.task{border:1px solid #dde;border-radius:6px;padding:6px 10px;margin:8px 0}
.cluster h3,.task h3{margin:2px 0;font-size:14px} .instr{font-family:monospace;font-size:13px}
.arrow{font-size:28px;vertical-align:top;margin:40px 8px;display:inline-block}
.ph{width:112px;height:80px;background:#eee;color:#888;font-size:11px;display:flex;align-items:center;justify-content:center}
.grid{width:auto} .grid img{max-width:560px;max-height:none}
.panel{display:inline-block;vertical-align:top;margin:0 16px 8px 0} .panel h3{font-size:13px;margin:4px 0}
.chart text{font-size:11px;fill:#333} .map{width:auto} .map img{max-width:520px;max-height:none}
.legend .key{margin-right:12px;font-size:12px} \
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
.pair{display:inline-block;border:1px solid #dde;border-radius:6px;padding:4px 6px;margin:4px} \
.pair h3{font-size:12px;margin:0}
table.card{margin:4px 0} table.card th{text-align:left;background:#f4f5f8}
"""


# Records what the browser really rendered (the report test reads these attributes back).
CHECK_JS = (
    "window.addEventListener('load',()=>{const im=[...document.images];"
    "document.body.dataset.images=im.length;"
    "document.body.dataset.decoded=im.filter(i=>i.complete&&i.naturalWidth>0).length;"
    "document.body.dataset.clusters=document.querySelectorAll('.cluster').length;"
    "document.body.dataset.tasks=document.querySelectorAll('.task').length;"
    "document.body.dataset.charts=document.querySelectorAll('svg.chart').length;"
    "document.body.dataset.pairs=document.querySelectorAll('.pair').length;"
    "document.body.dataset.maps=document.querySelectorAll('.map img').length;});"
)


def build_report(run: str, output: str, clusters: int = 12) -> dict[str, Any]:
    """Write ``output/index.html`` for the run folder ``run``; returns a summary with its path."""
    sections = [
        ("Stages", _section_stages(run)),
        ("Quality and domains", _section_distributions(run)),
        ("Cluster coherence", _section_coherence(run)),
        ("Embedding map", _section_map(run)),
        ("Retrieval clusters", _section_clusters(run, clusters)),
        ("Near-duplicate pairs", _section_duplicates(run)),
        ("Rejects by reason", _section_rejects(run)),
        ("Task samples", _section_tasks(run)),
        ("Dataset card", _section_card(run)),
        ("Training", _section_training(run)),
    ]
    body = "".join(f'<h2 id="{t.split()[0].lower()}">{t}</h2>{s}' for t, s in sections)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Run report: {_esc(run)}</title>"
        f"<style>{CSS}</style></head><body><h1>Run report</h1>"
        f"<p><code>{_esc(os.path.abspath(run))}</code></p>{body}<script>{CHECK_JS}</script></body></html>"
    )
    path = storage.join(output, "index.html")
    storage.atomic_write_bytes(path, page.encode("utf-8"))
    return {"stage": "report", "outputs": {"html": path}}


@dataclass(frozen=True)
class ReportOptions:
    """``python -m pipelines.report`` options besides the folders."""

    clusters: int = field(default=12, metadata=knob("clusters to show", min=0))


def main(argv: list[str] | None = None) -> int:
    p = cfgsys.parser_for("python -m pipelines.report", __doc__)
    p.add_argument("--run", default="out/demo", help="run folder, the demo's --output (default: out/demo)")
    p.add_argument("--output", default=None, help="report folder (default: RUN/report)")
    cfgsys.add_flags(p, ReportOptions, "report options")
    cfgsys.add_config_args(p)
    args, opts, _ = cfgsys.parse(p, ReportOptions, argv)
    require(os.path.isdir(args.run), f"run folder {args.run} does not exist")
    out = build_report(args.run, args.output or os.path.join(args.run, "report"), clusters=opts.clusters)
    print(json.dumps(out, indent=2))  # stdout: the JSON summary only
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))

"""Static views for the run report: SVG bar charts and histograms, a PCA map of embeddings drawn
as a PNG, and HTML tables of nested JSON. No plotting library: the report stays one file that any
browser opens, and the pictures are the same bytes for the same run."""

from __future__ import annotations

import html
import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

PALETTE = ["#2463eb", "#e8590c", "#2f9e44", "#c2255c", "#7048e8", "#0c8599", "#495057", "#5c940d",
           "#862e9c", "#364fc7", "#a61e4d", "#087f5b"]


# The mining domains (mining/config.py) keep one colour in every chart; other names take the rest in order.
KNOWN = ["animals", "art", "food", "other", "people", "products", "scenery", "vehicles"]


def colours(names: list[str]) -> dict[str, str]:
    """One colour per name, the same in every chart of a report."""
    out = {n: PALETTE[KNOWN.index(n)] for n in names if n in KNOWN}
    rest = [c for c in PALETTE if c not in out.values()] or PALETTE
    for i, n in enumerate(sorted(n for n in set(names) if n not in out)):
        out[n] = rest[i % len(rest)]
    return out


def _esc(text: Any) -> str:
    return html.escape("" if text is None else str(text))


def svg_bars(
    labels: list[str], counts: list[int], w: int = 520, bar_h: int = 18, colors: list[str] | None = None
) -> str:
    """Horizontal bars, one per label, with the count at the end."""
    if not labels:
        return "<p>Nothing to plot.</p>"
    top = max(counts) or 1
    left, h = 130, bar_h * len(labels) + 8
    parts = [f'<svg class="chart" width="{w}" height="{h}" role="img">']
    for i, (lab, n) in enumerate(zip(labels, counts)):
        y = 4 + i * bar_h
        bw = (w - left - 60) * n / top
        color = (colors or PALETTE)[i % len(colors or PALETTE)]
        parts.append(f'<text x="{left - 6}" y="{y + bar_h - 5}" text-anchor="end">{_esc(lab)}</text>'
                     f'<rect x="{left}" y="{y + 2}" width="{bw:.1f}" height="{bar_h - 4}" fill="{color}"/>'
                     f'<text x="{left + bw + 4:.1f}" y="{y + bar_h - 5}">{n}</text>')
    return "".join(parts) + "</svg>"


def svg_histogram(values: list[float], lo: float = 0.0, hi: float = 1.0, bins: int = 20, w: int = 520,
                  h: int = 170, marks: dict[str, float] | None = None, color: str = "#2463eb") -> str:
    """A histogram of ``values`` over [lo, hi] with the axis ends labelled; ``marks`` draw labelled
    vertical lines (a threshold, a mean)."""
    vals = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if not len(vals):
        return "<p>No values to plot.</p>"
    counts, edges = np.histogram(np.clip(vals, lo, hi), bins=bins, range=(lo, hi))
    top = counts.max() or 1
    x0, pw, ph = 36, w - 46, h - 36
    sx = lambda v: x0 + pw * (v - lo) / ((hi - lo) or 1)  # noqa: E731
    parts = [f'<svg class="chart" width="{w}" height="{h}" role="img">']
    for c, e0, e1 in zip(counts, edges[:-1], edges[1:]):
        bh = ph * c / top
        parts.append(
            f'<rect x="{sx(e0) + 0.5:.1f}" y="{8 + ph - bh:.1f}" width="{max(sx(e1) - sx(e0) - 1, 1):.1f}" '
            f'height="{bh:.1f}" fill="{color}"><title>{e0:.3g}-{e1:.3g}: {c}</title></rect>'
        )
    for name, v in (marks or {}).items():
        parts.append(
            f'<line x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="6" y2="{8 + ph}" '
            'stroke="#c92a2a" stroke-dasharray="4 3"/>'
            f'<text x="{sx(v) + 3:.1f}" y="16" fill="#c92a2a">{_esc(name)} {v:.3g}</text>'
        )
    parts.append(
        f'<text x="{x0}" y="{h - 12}">{lo:g}</text><text x="{x0 + pw - 20}" y="{h - 12}">{hi:g}</text>'
        f'<text x="2" y="16">{top}</text><text x="{x0 + pw / 2 - 40:.0f}" y="{h - 12}">n = {len(vals)}</text>'
    )
    return "".join(parts) + "</svg>"


def pca2(x: np.ndarray) -> np.ndarray:
    """The first two principal components of the rows of ``x`` (sign fixed: deterministic)."""
    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    comps = vt[:2]
    comps *= np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(1)])[:, None]
    return xc @ comps.T


def scatter_png(
    xy: np.ndarray, groups: list[str], size: int = 520, dot: int = 3
) -> tuple[bytes, dict[str, str]]:
    """A PNG scatter of 2-D points coloured by group; returns (PNG bytes, group -> colour)."""
    colors = dict(sorted(colours(sorted(set(groups))).items()))
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, size - 1, size - 1], outline="#ccd")
    if len(xy):
        lo, hi = xy.min(0), xy.max(0)
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        pts = 12 + (size - 24) * (xy - lo) / span
        for (px, py), g in zip(pts, groups):
            py = size - py
            draw.ellipse([px - dot, py - dot, px + dot, py + dot], fill=colors[g])
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=False)
    return buf.getvalue(), colors


def legend(colors: dict[str, str], counts: dict[str, int] | None = None) -> str:
    return "".join(f'<span class="key"><i style="background:{c}"></i>{_esc(g)}'
                   f'{f" ({counts[g]})" if counts and g in counts else ""}</span>' for g, c in colors.items())


def _cell(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{_esc(k)}: {_cell(x)}" for k, x in sorted(v.items())) or "-"
    if isinstance(v, list):
        return ", ".join(_cell(x) for x in v) or "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else _esc(v)


def table(obj: Any) -> str:
    """A list of dicts as one table (columns = their keys, in first-seen order); a dict as
    key/value rows, where a value that is a list of dicts or a dict of dicts becomes a nested table."""
    if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
        cols: list[str] = []
        for r in obj:
            cols += [k for k in r if k not in cols]
        head = "".join(f"<th>{_esc(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in obj)
        return f'<table class="card"><tr>{head}</tr>{body}</table>'
    if isinstance(obj, dict):
        rows = []
        for k, v in obj.items():
            rows_of_dicts = isinstance(v, dict) and v and all(isinstance(r, dict) for r in v.values())
            nested = bool(v) and ((isinstance(v, list) and all(isinstance(r, dict) for r in v))
                                  or (isinstance(v, dict) and len(v) > 1))
            if rows_of_dicts:
                v = [{"": name, **r} for name, r in v.items()]
            rows.append(f"<tr><th>{_esc(k)}</th><td>{table(v) if nested else _cell(v)}</td></tr>")
        return f'<table class="card">{"".join(rows)}</table>'
    return _cell(obj)

"""Procedural drawing: one subject per group (shape + colours + pattern), views, backgrounds.

Everything is numpy/PIL and driven by ``numpy.random.Generator`` objects seeded from
(seed, purpose, index) tuples, so any image can be re-rendered on its own, in any order.
A subject keeps its silhouette, colours and pattern across views; a view changes pose,
scale, position, rotation, lighting and background. Backgrounds come from one palette per
domain *style* that all groups of that domain share, so a background never names a group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

DOMAINS = ("art", "products", "animals", "scenery", "food", "vehicles")
PATTERNS = ("stripes", "checker", "dots", "waves", "rings", "zigzag", "grid", "blobs", "triangles",
            "plaid", "speckle", "bricks", "leopard")
SPRITE = 192  # sprite canvas side (pixels) before per-view scaling
SIZES = ((256, 256), (288, 224), (224, 288), (320, 240), (240, 320), (256, 192))

# Named hues for subject colours (caption words come from these names).
HUES = {
    "red": (205, 35, 35), "orange": (240, 130, 20), "yellow": (240, 210, 30), "lime": (150, 215, 40),
    "green": (30, 150, 60), "teal": (20, 150, 150), "cyan": (40, 200, 230), "blue": (35, 70, 200),
    "navy": (20, 30, 110), "purple": (120, 40, 170), "magenta": (215, 40, 170), "pink": (245, 150, 190),
    "brown": (120, 70, 30), "black": (25, 25, 25), "white": (240, 240, 235), "grey": (130, 130, 135),
}
HUE_NAMES = tuple(HUES)


def rng_for(*parts: int) -> np.random.Generator:
    """A generator determined only by the integer tuple ``parts``."""
    return np.random.default_rng(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]))


@dataclass(frozen=True)
class Subject:
    group: int
    domain: str
    colours: tuple[str, str, str]  # hue names: primary, secondary, accent
    pattern: str
    freq: float
    angle: float
    shape: tuple[float, ...]  # superformula m, n1, n2, n3, aspect
    noun_index: int


def make_subject(seed: int, group: int, domain: str, noun_index: int) -> Subject:
    """Draw a subject's identity (colours, pattern, silhouette) for ``group``.

    ``noun_index`` is the group's rank within its domain: pattern and primary colour are
    dealt from per-domain shuffled decks, so groups of one domain differ in both.
    """
    r = rng_for(seed, 1, group)
    d = DOMAINS.index(domain)
    pattern = PATTERNS[int(rng_for(seed, 9, d).permutation(len(PATTERNS))[noun_index % len(PATTERNS)])]
    first = int(rng_for(seed, 10, d).permutation(len(HUE_NAMES))[noun_index % len(HUE_NAMES)])
    accent = [i for i in r.permutation(len(HUE_NAMES)) if i != first][0]
    c = [first, first, accent]  # the second colour is a lighter or darker shade of the first
    shape = (
        float(r.integers(3, 9)), float(r.uniform(0.6, 5.0)), float(r.uniform(0.5, 3.5)),
        float(r.uniform(0.5, 3.5)), float(r.uniform(0.75, 1.3)),
    )
    return Subject(
        group=group, domain=domain, colours=tuple(HUE_NAMES[i] for i in c),
        pattern=pattern, freq=float(r.uniform(9, 26)),
        angle=float(r.uniform(0, np.pi)), shape=shape, noun_index=noun_index,
    )


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    ax = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    return np.meshgrid(ax, ax, indexing="xy")


def _pattern_mask(
    kind: str, freq: float, angle: float, x: np.ndarray, y: np.ndarray, seed: int
) -> np.ndarray:
    """A [0,1] two-colour pattern mask on the coordinate grid."""
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    f = freq
    if kind == "stripes":
        m = np.sin(f * u)
    elif kind == "checker":
        m = np.sin(f * 0.6 * u) * np.sin(f * 0.6 * v)
    elif kind == "dots":
        p = 6.0 / f * 2.2
        du, dv = (u % p) - p / 2, (v % p) - p / 2
        m = (p * 0.33) ** 2 - (du**2 + dv**2)
        m = m * 2000
    elif kind == "waves":
        m = np.sin(f * u + 2.5 * np.sin(f * 0.35 * v))
    elif kind == "rings":
        m = np.sin(f * 1.2 * np.hypot(x + 0.15, y - 0.1))
    elif kind == "zigzag":
        m = np.sin(f * u + 3.0 * np.abs(((v * f * 0.25) % 2.0) - 1.0))
    elif kind == "grid":
        m = 0.35 - np.minimum(np.abs(np.sin(f * 0.5 * u)), np.abs(np.sin(f * 0.5 * v)))
    elif kind == "spiral":
        m = np.sin(f * 0.8 * np.hypot(x, y) + 3 * np.arctan2(y, x))
    elif kind == "triangles":
        m = ((u * f / 6) % 1.0) - ((v * f / 6) % 1.0)
    elif kind == "plaid":
        return 0.5 * (np.sin(f * u) > 0.3) + 0.5 * (np.sin(0.5 * f * v) > 0.3)
    elif kind == "bricks":
        row = np.floor(v * f / 5)
        m = 0.6 - np.maximum(
            np.abs(np.sin(np.pi * v * f / 5)) < 0.15, np.abs(np.sin(np.pi * (u * f / 10 + 0.5 * row))) < 0.12
        )
    elif kind == "solid":
        return np.clip(0.5 + 0.5 * y, 0.0, 1.0) ** 3
    else:  # blobs, speckle, leopard: random fields fixed per subject
        res = {"blobs": 7, "speckle": 48, "leopard": 11}[kind]
        low = rng_for(seed, 7).standard_normal((res, res)).astype(np.float32)
        m = np.asarray(Image.fromarray(low).resize(x.shape[::-1], Image.BICUBIC))
        if kind == "leopard":
            m = 0.15 - np.abs(m - 0.6)
    return np.clip(m * 4.0 + 0.5, 0.0, 1.0)


def _superformula(phi: np.ndarray, m: float, n1: float, n2: float, n3: float) -> np.ndarray:
    t = m * phi / 4.0
    r = (np.abs(np.cos(t)) ** n2 + np.abs(np.sin(t)) ** n3) ** (-1.0 / n1)
    return r / np.max(r)


def render_sprite(seed: int, s: Subject) -> Image.Image:
    """The subject alone, RGBA on a transparent square canvas (identity, no view)."""
    x, y = _grid(SPRITE)
    m, n1, n2, n3, aspect = s.shape
    cols = [np.array(HUES[c], np.float32) / 255.0 for c in s.colours]
    base = cols[0]
    cols[1] = base * 0.35 if base.mean() > 0.45 else base + (1 - base) * 0.6  # shade of the primary
    d = s.domain
    # Body placement differs a little per domain to leave room for parts.
    by, bs = (-0.12, 0.62) if d in ("animals", "vehicles") else (0.0, 0.72)
    if d == "vehicles":
        aspect = max(aspect, 1.25)
    if d == "scenery":
        aspect = min(aspect, 0.8)
        by = -0.2
    bx_, by_ = x / aspect, (y - by) * aspect
    phi = np.arctan2(by_, bx_)
    body = np.hypot(bx_, by_) <= bs * _superformula(phi, m, n1, n2, n3) ** 0.75
    tex = _pattern_mask(s.pattern, s.freq, s.angle, x, y, seed * 1000 + s.group)
    rgb = tex[..., None] * cols[0] + (1 - tex[..., None]) * cols[1]
    alpha = body.astype(np.float32)
    accent = np.zeros_like(alpha, dtype=bool)
    solid = np.zeros_like(alpha, dtype=bool)
    shade = np.zeros((SPRITE, SPRITE, 3), np.float32)
    if d == "animals":  # head with eyes, legs
        hx, hy = 0.55, -0.55
        head = np.hypot(x - hx, y - hy) < 0.26
        legs = np.zeros_like(head)
        for lx in (-0.4, -0.15, 0.15, 0.4):
            legs |= (np.abs(x - lx) < 0.06) & (y > 0.2) & (y < 0.9)
        alpha = np.maximum(alpha, (head | legs).astype(np.float32))
        eye = np.hypot(x - hx - 0.09, y - hy + 0.05) < 0.07
        pupil = np.hypot(x - hx - 0.1, y - hy + 0.05) < 0.035
        solid |= eye
        shade[eye] = (1, 1, 1)
        shade[pupil] = (0, 0, 0)
    elif d == "vehicles":  # wheels and a window
        for wx in (-0.5, 0.5):
            rr = np.hypot(x - wx, y - 0.45)
            wheel = rr < 0.24
            alpha = np.maximum(alpha, wheel.astype(np.float32))
            solid |= wheel
            shade[wheel] = np.where((rr[wheel] < 0.1)[:, None], 0.75, 0.08)
        win = (np.abs(x - 0.1) < 0.3) & (y > -0.55) & (y < -0.3) & body
        solid |= win
        shade[win] = (0.7, 0.85, 0.95)
    elif d == "food":  # plate underneath
        plate = (x / 0.98) ** 2 + ((y - 0.05) / 0.55) ** 2 < 1.0
        rim = plate & ~body
        alpha = np.maximum(alpha, plate.astype(np.float32))
        solid |= rim
        shade[rim] = (0.95, 0.95, 0.93)
    elif d == "products":  # label band with a logo disc
        band = body & (np.abs(y) < 0.14)
        accent |= band & ~(np.hypot(x, y) < 0.1)
    elif d == "scenery":  # pillar / trunk under the landmark
        pillar = (np.abs(x) < 0.13) & (y > 0.2) & (y < 0.98)
        alpha = np.maximum(alpha, pillar.astype(np.float32))
        accent |= pillar
    elif d == "art":  # three accent brush strokes
        for k in range(3):
            yy = -0.4 + 0.4 * k
            accent |= body & (np.abs(y - yy - 0.15 * np.sin(4 * x + k)) < 0.04)
    rgb = np.where(accent[..., None], cols[2], rgb)
    rgb = np.where(solid[..., None], shade, rgb)
    # Soft spherical shading and a dark outline.
    rgb = rgb * (0.8 + 0.3 * np.clip(1 - np.hypot(x + 0.3, y + 0.3) / 1.6, 0, 1))[..., None]
    a_img = Image.fromarray((alpha * 255).astype(np.uint8))
    inner = np.asarray(a_img.filter(ImageFilter.MinFilter(5)), np.float32) / 255.0
    edge = (alpha - inner) > 0.5
    rgb[edge] = rgb[edge] * 0.25
    out = np.dstack([np.clip(rgb, 0, 1) * 255, alpha * 255]).astype(np.uint8)
    return Image.fromarray(out, "RGBA")

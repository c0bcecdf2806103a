"""Backgrounds (one shared palette per domain style) and rendering of one view of a subject.

A view = background + the subject sprite rotated/scaled/placed + lighting, plus the domain
look (painterly texture for art, soft shadow on a studio sweep for products, ...). The
view parameters depend only on (seed, group, view), the background only on (seed, group,
view) through a separate stream, so ``background_only`` re-renders exactly the background
of a view, which the separability benchmark uses.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from mining.demo_corpus.draw import SIZES, Subject, rng_for

# Shared background palettes per domain style: (name used in captions, colours...).
STUDIO = [("white", (246, 246, 244)), ("light grey", (222, 223, 226)), ("cream", (244, 236, 218)),
          ("pale blue", (218, 230, 242)), ("pale pink", (244, 224, 228))]
SKIES = [("clear", (70, 130, 215), (180, 215, 245)), ("sunset", (240, 120, 60), (250, 210, 140)),
         ("dusk", (70, 50, 120), (220, 130, 140)), ("overcast", (150, 155, 165), (210, 212, 216)),
         ("dawn", (150, 180, 230), (250, 225, 200))]
GROUNDS = [("grass", (60, 140, 50)), ("meadow", (120, 160, 60)), ("sand", (215, 190, 130)),
           ("snow", (235, 238, 245)), ("forest", (40, 80, 40)), ("dirt", (120, 90, 60))]
TABLES = [("wooden", (150, 100, 60)), ("marble", (225, 225, 228)), ("gingham", (200, 50, 50)),
          ("slate", (60, 65, 70)), ("linen", (220, 210, 190))]
ROADS = [("asphalt", (70, 72, 75)), ("cobblestone", (120, 110, 100)), ("gravel", (150, 140, 125))]
PAPERS = [("paper", (245, 240, 225)), ("canvas", (230, 220, 200)), ("grey paper", (205, 205, 200)),
          ("yellow paper", (245, 235, 180))]
WASHES = [(70, 120, 200), (200, 90, 90), (90, 170, 110), (220, 180, 60), (150, 100, 180)]


def _c(rgb) -> np.ndarray:
    return np.array(rgb, np.float32) / 255.0


def _vgrad(h: int, w: int, top, bottom) -> np.ndarray:
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    return np.broadcast_to(_c(top) * (1 - t) + _c(bottom) * t, (h, w, 3)).copy()


def _grain(r: np.random.Generator, h: int, w: int, amp: float) -> np.ndarray:
    return (r.standard_normal((h, w, 1)).astype(np.float32) * amp)


def background(r: np.random.Generator, domain: str, w: int, h: int) -> tuple[np.ndarray, str]:
    """(HxWx3 float image, caption phrase) from the domain's shared palette."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if domain == "products":
        name, col = STUDIO[r.integers(len(STUDIO))]
        img = _vgrad(h, w, np.array(col) * 0.9, col)
        edge = int(h * r.uniform(0.6, 0.8))
        img[edge:] *= 0.95
        return img + _grain(r, h, w, 0.01), f"on a {name} table"
    if domain in ("scenery", "vehicles", "animals"):
        sky, top, bot = SKIES[r.integers(len(SKIES))]
        img = _vgrad(h, w, top, bot)
        horizon = h * r.uniform(0.35, 0.6) + h * r.uniform(0.03, 0.1) * np.sin(
            xx[0] / w * r.uniform(2, 7) + r.uniform(0, 6))
        if domain == "vehicles":
            gname, gcol = ROADS[r.integers(len(ROADS))]
        else:
            gname, gcol = GROUNDS[r.integers(len(GROUNDS))]
        ground = yy >= horizon[None, :]
        depth = np.clip((yy - horizon[None, :]) / h, 0, 1)[..., None]
        gimg = _c(gcol) * (0.8 + 0.4 * depth)
        img = np.where(ground[..., None], gimg, img)
        if domain == "animals":  # grass blades / texture strokes
            img += ground[..., None] * _grain(r, h, w, 0.06)
        if domain == "vehicles":  # lane marks
            lane = ground & (np.abs(yy - (horizon[None, :] + h) / 2) < 2) & ((xx // 20) % 2 == 0)
            img[lane] = 0.9
        if r.random() < 0.5:  # sun or moon
            sx, sy = r.uniform(0.1, 0.9) * w, r.uniform(0.05, 0.25) * h
            img[(np.hypot(xx - sx, yy - sy) < h * 0.06) & ~ground] = _c((255, 245, 200))
        phrase = {"scenery": f"under a {sky} sky over the {gname}", "vehicles": f"on the {gname} road",
                  "animals": f"in the {gname}"}[domain]
        return img, phrase
    if domain == "food":
        name, col = TABLES[r.integers(len(TABLES))]
        img = np.broadcast_to(_c(col), (h, w, 3)).copy()
        if name == "wooden":
            img *= (0.85 + 0.15 * np.sin(yy / r.uniform(4, 9) + 2 * np.sin(xx / 40)))[..., None]
        elif name == "gingham":
            cell = int(r.integers(14, 24))
            light = (((xx // cell) + (yy // cell)) % 2 == 0)[..., None]
            img = np.where(light, _c((245, 240, 235)), img * 0.5 + _c((245, 240, 235)) * 0.5)
        elif name == "marble":
            img *= (0.92 + 0.08 * np.sin(xx / 13 + 3 * np.sin(yy / 21)))[..., None]
        return img + _grain(r, h, w, 0.02), f"on a {name} table"
    # art: paper + watercolour washes
    name, col = PAPERS[r.integers(len(PAPERS))]
    img = np.broadcast_to(_c(col), (h, w, 3)).copy()
    for _ in range(int(r.integers(2, 5))):
        wc = _c(WASHES[r.integers(len(WASHES))])
        cx, cy, rad = r.uniform(0, w), r.uniform(0, h), r.uniform(0.2, 0.5) * w
        a = np.clip(1 - np.hypot(xx - cx, yy - cy) / rad, 0, 1)[..., None] * 0.35
        img = img * (1 - a) + wc * a
    return img + _grain(r, h, w, 0.025), f"on {name}"


def view_params(seed: int, group: int, view: int) -> dict:
    """Pose, scale, placement, lighting and canvas size of one view."""
    r = rng_for(seed, 2, group, view)
    w, h = SIZES[r.integers(len(SIZES))]
    return {
        "size": (int(w), int(h)), "angle": float(r.uniform(-30, 30)), "scale": float(r.uniform(0.7, 0.95)),
        "cx": float(r.uniform(0.38, 0.62)), "cy": float(r.uniform(0.4, 0.62)),
        "bright": float(r.uniform(0.8, 1.15)), "tint": r.uniform(-0.05, 0.05, 3).astype(np.float32),
        "light": float(r.uniform(0, 2 * np.pi)), "squash": float(r.uniform(0.85, 1.15)),
    }


def render_view(
    seed: int, subject: Subject, sprite: Image.Image, view: int, with_subject: bool = True
) -> tuple[Image.Image, str]:
    """One view of ``subject`` (RGB image) and its background caption phrase."""
    p = view_params(seed, subject.group, view)
    w, h = p["size"]
    bg, phrase = background(rng_for(seed, 3, subject.group, view), subject.domain, w, h)
    img = bg
    if with_subject:
        side = p["scale"] * min(w, h)
        sp = sprite.resize((max(8, int(side * p["squash"])), max(8, int(side / p["squash"]))), Image.BICUBIC)
        sp = sp.rotate(p["angle"], resample=Image.BICUBIC, expand=True)
        arr = np.asarray(sp, np.float32) / 255.0
        rgb, a = arr[..., :3] * p["bright"] + p["tint"], arr[..., 3:]
        sh, sw = a.shape[:2]
        x0, y0 = int(p["cx"] * w - sw / 2), int(p["cy"] * h - sh / 2)
        canvas_rgb = np.zeros((h, w, 3), np.float32)
        canvas_a = np.zeros((h, w, 1), np.float32)
        ys, xs = max(0, y0), max(0, x0)
        ye, xe = min(h, y0 + sh), min(w, x0 + sw)
        canvas_rgb[ys:ye, xs:xe] = rgb[ys - y0:ye - y0, xs - x0:xe - x0]
        canvas_a[ys:ye, xs:xe] = a[ys - y0:ye - y0, xs - x0:xe - x0]
        if subject.domain in ("products", "food", "vehicles"):  # soft contact shadow
            sha = Image.fromarray((canvas_a[..., 0] * 255).astype(np.uint8)).filter(
                ImageFilter.GaussianBlur(8)
            )
            shadow = np.roll(np.asarray(sha, np.float32)[..., None] / 255.0, (6, 6), axis=(0, 1))
            img = img * (1 - 0.35 * shadow)
        img = img * (1 - canvas_a) + canvas_rgb * canvas_a
    # Directional lighting across the whole frame.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = (np.cos(p["light"]) * (xx / w - 0.5) + np.sin(p["light"]) * (yy / h - 0.5))
    img = img * (1.0 + 0.18 * d)[..., None]
    out = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")
    if subject.domain == "art":  # painterly: flatten colours into strokes, keep canvas grain
        half = out.resize((w // 2, h // 2), Image.BOX).filter(ImageFilter.ModeFilter(3))
        out = half.resize((w, h), Image.BICUBIC).filter(ImageFilter.SMOOTH_MORE)
    return out, phrase

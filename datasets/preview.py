"""One picture per task from built shards: instruction text, context thumbnails, target.

    python -m datasets.preview --shards OUT/shards --out docs/tasks [--thumb 160]

Writes ``{task}.png`` (the first sample of each task in shard order), palette PNG < 300 KB.
"""

from __future__ import annotations

import argparse
import io
import textwrap

from PIL import Image, ImageDraw, ImageFont

from datasets.instruction import Sample
from datasets.shards import iter_samples, list_shards

PAD = 8


def _thumb(data: bytes, side: int) -> Image.Image:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    img.thumbnail((side, side), Image.BICUBIC)
    return img


def _font(size: int = 13):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # older Pillow
        return ImageFont.load_default()


def render(sample: Sample, thumb: int = 160) -> Image.Image:
    """A grid: task + wrapped instruction on top; context thumbnails (with texts) then the target."""
    font = _font(13)
    tiles = [(c.text, _thumb(c.image, thumb)) for c in sample.context]
    tiles.append(("target", _thumb(sample.target, thumb)))
    cols = len(tiles)
    width = max(cols * (thumb + PAD) + PAD, 520)
    head = textwrap.wrap(f"[{sample.task}] {sample.instruction}", width=max(40, width // 7))
    label_lines = [textwrap.wrap(t, width=max(12, thumb // 7))[:3] for t, _ in tiles]
    top = PAD + 17 * len(head) + PAD
    label_h = 16 * max(len(lines) for lines in label_lines)
    canvas = Image.new("RGB", (width, top + label_h + thumb + 2 * PAD), "white")
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(head):
        draw.text((PAD, PAD + 17 * i), line, fill="black", font=font)
    for i, ((_, img), lines) in enumerate(zip(tiles, label_lines)):
        x = PAD + i * (thumb + PAD)
        for j, line in enumerate(lines):
            draw.text(
                (x, top + 16 * j), line, fill=(150, 20, 20) if i == cols - 1 else (20, 20, 150), font=font
            )
        canvas.paste(img, (x, top + label_h + PAD))
    return canvas


def write_previews(shards: str, out: str, thumb: int = 160) -> dict[str, str]:
    import os

    os.makedirs(out, exist_ok=True)
    done: dict[str, str] = {}
    for s in iter_samples(list_shards(shards)):
        if s.task in done:
            continue
        path = os.path.join(out, f"{s.task}.png")
        render(s, thumb).quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        done[s.task] = path
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--shards", required=True, help="folder of tasks-*.tar shards")
    ap.add_argument("--out", default="docs/tasks", help="folder for {task}.png")
    ap.add_argument("--thumb", type=int, default=160, help="thumbnail side, pixels")
    args = ap.parse_args(argv)
    for task, path in sorted(write_previews(args.shards, args.out, args.thumb).items()):
        print(task, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

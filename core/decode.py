"""One validated decode for every record: an RGB PIL image, or a reject row with a reason code.

Reason codes (stage ``mining``): ``read_error`` (the reader had no bytes / the path is unreadable),
``empty_bytes``, ``empty_caption``, ``caption_not_utf8``, ``caption_too_long``, ``too_many_pixels``
(header pixel count above ``max_pixels``, refused before decoding), ``undecodable``,
``truncated_image``, ``too_small``, ``extreme_aspect``.

Decoding applies EXIF orientation, takes the first frame of animations, scales 16-bit and float
images to 8 bits, converts CMYK/YCbCr/palette/1-bit/greyscale to RGB and composites any alpha
(including palette transparency) on white.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from core.contracts import reject
from core.safe_files import DEFAULT_MAX_IMAGE_BYTES, read_file_bytes

STAGE = "mine"  # the `stage` of decode reject rows: the mining stage, named as `pipelines.mine` and its summary


@dataclass(frozen=True)
class DecodeLimits:
    """What a usable record is. Any object with these attributes works (``MiningConfig`` is one,
    and takes its defaults from here, so each limit is written once)."""

    max_pixels: int = 64_000_000  # refuse images whose header says more pixels (decompression bombs)
    min_side: int = 64  # decoded short side below this -> too_small
    max_aspect: float = 4.0  # long/short side above this -> extreme_aspect
    max_caption_chars: int = 2000  # longer captions -> caption_too_long (or truncated, see below)
    truncate_long_captions: bool = False  # True: cut at a word boundary instead of rejecting
    reject_non_utf8_captions: bool = True  # False: keep them (U+FFFD replaced) and only count


@dataclass
class Decoded:
    """A kept record with its decoded image (RGB, orientation applied) and decoded size."""

    record: dict[str, Any]
    image: Image.Image
    width: int
    height: int


def _to_8bit_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode to RGB; alpha composited on white, high bit depths scaled (not clipped)."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode == "F":
            top = 1.0 if a.max(initial=0) <= 1.0 else 255.0
        else:
            top = 65535.0 if a.max(initial=0) > 255 else 255.0
        im = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode in ("RGB", "L") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB") if im.mode != "RGB" else im


def cfg_max_bytes(cfg: DecodeLimits) -> int:
    """The image file size cap (``max_image_bytes`` when the config has one)."""
    return int(getattr(cfg, "max_image_bytes", DEFAULT_MAX_IMAGE_BYTES))


def _check_caption(record: dict, cfg: DecodeLimits) -> tuple[str | None, str]:
    """(reason, detail) for a bad caption, or (None, "")."""
    cap = record.get("caption")
    if cap is None or not str(cap).strip():
        return "empty_caption", "caption is empty"
    if record.get("caption_utf8_ok") is False and cfg.reject_non_utf8_captions:
        return "caption_not_utf8", "caption bytes were not valid UTF-8"
    if len(cap) > cfg.max_caption_chars and not cfg.truncate_long_captions:
        return "caption_too_long", f"{len(cap)} chars > {cfg.max_caption_chars}"
    return None, ""


def resize_center_crop(im: Image.Image, size: int) -> Image.Image:
    """Resize so the short side is ``size`` (bicubic), then crop the centred ``size`` x ``size`` square."""
    w, h = im.size
    s = size / min(w, h)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))
    im = im.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


def truncate_caption(text: str, limit: int) -> str:
    """Cut at the last space before ``limit`` chars (hard cut when there is none)."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip()


def decode_image(data: bytes, cfg: DecodeLimits) -> tuple[Image.Image | None, str, str]:
    """(RGB image, "", "") or (None, reason, detail). Never raises on bad bytes."""
    if not data:
        return None, "empty_bytes", "no image bytes"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning and friends: we check ourselves
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            return None, "too_many_pixels", str(e)[:200]
        except Exception as e:  # noqa: BLE001 - unidentifiable bytes of any kind
            return None, "undecodable", f"{type(e).__name__}: {e}"[:200]
        try:
            w, h = im.size
            if w * h > cfg.max_pixels:
                return None, "too_many_pixels", f"{w}x{h} = {w * h} px > {cfg.max_pixels}"
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
            im.load()
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # noqa: BLE001 - a broken EXIF block keeps the stored orientation
                pass
            return _to_8bit_rgb(im), "", ""
        except Image.DecompressionBombError as e:
            return None, "too_many_pixels", str(e)[:200]
        except Exception as e:  # noqa: BLE001
            msg = f"{type(e).__name__}: {e}"[:200]
            low = msg.lower()
            if "truncated" in low or "premature end" in low or "broken data stream" in low:
                return None, "truncated_image", msg
            return None, "undecodable", msg


def decode_record(record: dict[str, Any], cfg: DecodeLimits | None = None) -> Decoded | dict[str, Any]:
    """A :class:`Decoded` for a usable record, else a reject row (``core.contracts.reject``)."""
    cfg = cfg or DecodeLimits()
    try:
        if record.get("read_error"):
            return reject(record, STAGE, "read_error", str(record["read_error"]))
        reason, detail = _check_caption(record, cfg)
        if reason:
            return reject(record, STAGE, reason, detail)
        data = record.get("image")
        if data is None and record.get("path"):  # --no-bytes records: the same bounded, regular-file-only read
            data, error = read_file_bytes(record["path"], max_bytes=cfg_max_bytes(cfg))
            if error:
                return reject(record, STAGE, "read_error", error)
        if not data:
            return reject(record, STAGE, "empty_bytes", "no image bytes")
        im, reason, detail = decode_image(data, cfg)
        if im is None:
            return reject(record, STAGE, reason, detail)
        w, h = im.size
        if min(w, h) < cfg.min_side:
            return reject(record, STAGE, "too_small", f"{w}x{h} short side < {cfg.min_side}")
        if max(w, h) / min(w, h) > cfg.max_aspect:
            return reject(record, STAGE, "extreme_aspect", f"{w}x{h} aspect > {cfg.max_aspect}")
        out = dict(record)
        if cfg.truncate_long_captions:
            out["caption"] = truncate_caption(out["caption"], cfg.max_caption_chars)
        out["width"], out["height"] = w, h
        return Decoded(out, im, w, h)
    except Exception as e:  # noqa: BLE001 - the last line of defence: one record never kills a batch
        return reject(record, STAGE, "undecodable", f"unexpected {type(e).__name__}: {e}")

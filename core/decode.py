"""One validated decode for every record: an RGB PIL image, or a reject row with a reason code.

Reason codes (stage ``mining``): ``read_error`` (the reader had no bytes / the path is unreadable),
``empty_bytes``, ``empty_caption``, ``caption_not_utf8``, ``caption_too_long``, ``too_many_pixels``
(header pixel count above ``max_pixels``, refused before decoding), ``undecodable``,
``truncated_image``, ``too_small``, ``extreme_aspect``.

Decoding applies EXIF orientation, takes the first frame of animations, scales 16-bit and float
images to 8 bits, converts CMYK/YCbCr/palette/1-bit/greyscale to RGB and composites any alpha
(including palette transparency) on white.

Working size: no consumer of a decoded image looks at more than a 512-px short side (the quality
features' native view crops 512 x 512 after scaling the short side to 512, the technical measures
work at a 384-px short side, BRISQUE at a 768-px long side, the domain classifier and the image-text
matcher at 224 px, clustering at a 1024-px long side). So an image whose short side exceeds
``work_side`` (1024, twice the largest view) is decoded straight to that short side: JPEGs by DCT
scaling (``Image.draft``: the decoder never builds the full raster), then an area resize. A 12-MP
photo then holds 4 MB instead of 36 MB, and a mining batch's memory is bounded by the batch size, not
by the photo size. Images at or under the limit take exactly the old path (the same pixels), and
the record's ``width``/``height`` and the ``too_small`` / ``extreme_aspect`` checks always use the
true decoded size (from the header, EXIF orientation applied).
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

STAGE = (
    "mine"  # the `stage` of decode reject rows: the mining stage, named as `pipelines.mine` and its summary
)


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
    work_side: int = 1024  # short side above this -> decoded shrunk to it (width/height stay true); 0: never


@dataclass
class Decoded:
    """A kept record with its decoded image (RGB, orientation applied, short side at most
    ``work_side``) and its true decoded size (``width``/``height``, as stored in the record)."""

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
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode in ("RGB", "L") and "transparency" in im.info
    ):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB") if im.mode != "RGB" else im


def cfg_max_bytes(cfg: DecodeLimits) -> int:
    """The image file size cap (``max_image_bytes`` when the config has one)."""
    return int(getattr(cfg, "max_image_bytes", DEFAULT_MAX_IMAGE_BYTES))


def cfg_work_side(cfg: DecodeLimits) -> int:
    """The working short side (``work_side`` when the config has one, else the default; 0 = never shrink)."""
    return int(getattr(cfg, "work_side", DecodeLimits.work_side) or 0)


def work_size(w: int, h: int, side: int) -> tuple[int, int]:
    """(w, h) scaled so the short side is ``side``; unchanged when it is already at most ``side``."""
    if side <= 0 or min(w, h) <= side:
        return w, h
    s = side / min(w, h)
    return max(side, round(w * s)), max(side, round(h * s))


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
    """(RGB image, "", "") or (None, reason, detail). Never raises on bad bytes. The image is at most
    ``work_side`` on its short side (see the module docstring); :func:`decode_sized` also gives the
    true size."""
    im, _, reason, detail = decode_sized(data, cfg)
    return im, reason, detail


def _load_shrunk(im: Image.Image, side: int) -> bool:
    """Load ``im`` (header read, not decoded), a JPEG DCT-scaled by 1/2, 1/4 or 1/8 so its short side
    stays >= ``side``; other formats decode at full size (one image at a time). True if DCT-scaled."""
    w, h = im.size
    drafted = False
    if side and min(w, h) > side and im.format in ("JPEG", "MPO"):
        try:
            drafted = im.draft(None, work_size(w, h, side)) is not None and im.size != (w, h)
        except Exception:  # noqa: BLE001 - no DCT scaling for this file: decode at full size
            drafted = False
    im.load()
    return drafted


def decode_sized(data: bytes, cfg: DecodeLimits) -> tuple[Image.Image | None, tuple[int, int], str, str]:
    """(RGB working image, true (width, height), "", "") or (None, (0, 0), reason, detail); never raises."""
    if not data:
        return None, (0, 0), "empty_bytes", "no image bytes"
    side = cfg_work_side(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning and friends: we check ourselves
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            return None, (0, 0), "too_many_pixels", str(e)[:200]
        except Exception as e:  # noqa: BLE001 - unidentifiable bytes of any kind
            return None, (0, 0), "undecodable", f"{type(e).__name__}: {e}"[:200]
        try:
            w, h = im.size
            if w * h > cfg.max_pixels:
                return None, (0, 0), "too_many_pixels", f"{w}x{h} = {w * h} px > {cfg.max_pixels}"
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
            drafted = _load_shrunk(im, side)
            loaded = im.size
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # noqa: BLE001 - a broken EXIF block keeps the stored orientation
                pass
            if not drafted:  # decoded at full size: the true size is the decoded one
                w, h = im.size
            elif im.size != loaded:  # DCT-scaled, and EXIF orientation 5-8 swapped the sides
                w, h = h, w
            im = _to_8bit_rgb(im)
            if im.size != work_size(*im.size, side):
                im = im.resize(work_size(*im.size, side), Image.Resampling.BOX)
            return im, (w, h), "", ""
        except Image.DecompressionBombError as e:
            return None, (0, 0), "too_many_pixels", str(e)[:200]
        except Exception as e:  # noqa: BLE001
            msg = f"{type(e).__name__}: {e}"[:200]
            low = msg.lower()
            if "truncated" in low or "premature end" in low or "broken data stream" in low:
                return None, (0, 0), "truncated_image", msg
            return None, (0, 0), "undecodable", msg


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
        if data is None and record.get(
            "path"
        ):  # --no-bytes records: the same bounded, regular-file-only read
            data, error = read_file_bytes(record["path"], max_bytes=cfg_max_bytes(cfg))
            if error:
                return reject(record, STAGE, "read_error", error)
        if not data:
            return reject(record, STAGE, "empty_bytes", "no image bytes")
        im, (w, h), reason, detail = decode_sized(data, cfg)
        if im is None:
            return reject(record, STAGE, reason, detail)
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

"""Validated decode: the real image zoo and generated bad cases, zero crashes, every record accounted for."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
from PIL import Image, ImageOps

from core.contracts import make_record
from core.decode import Decoded, decode_record, truncate_caption
from mining.config import MiningConfig
from tests.conftest import shared_subset


def _enc(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _photo(w=200, h=150, mode="RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(a, "RGB").convert(mode)


def _rec(name, image=None, caption="a photo", **kw):
    return make_record(key=name, url=f"gen://{name}", caption=caption, image=image, source="test", **kw)


def _exif_rotated() -> bytes:
    im = _photo(200, 100)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    return _enc(im, "JPEG", exif=exif)


def _bomb() -> bytes:
    # A PNG whose header claims 20000x20000 (400 Mpx) but compresses to a few hundred KB.
    return _enc(Image.new("1", (20000, 20000)), "PNG")


GOOD = {
    "cmyk": lambda: _enc(_photo(mode="CMYK"), "JPEG"),
    "16bit": lambda: _enc(
        Image.fromarray((np.arange(200 * 150).reshape(150, 200) * 2).astype(np.uint16)), "PNG"
    ),
    "palette_transparency": lambda: _enc(_photo().convert("P"), "PNG", transparency=0),
    "rgba": lambda: _enc(_photo(mode="RGBA"), "PNG"),
    "la": lambda: _enc(_photo(mode="LA"), "PNG"),
    "one_bit": lambda: _enc(_photo(mode="1"), "TIFF"),
    "grey": lambda: _enc(_photo(mode="L"), "JPEG"),
    "webp": lambda: _enc(_photo(), "WEBP"),
    "gif_anim": lambda: _enc(_photo().convert("P"), "GIF", save_all=True, append_images=[_photo(mode="P")]),
    "exif_rotated": _exif_rotated,
}
BAD = {
    "zero_bytes": (lambda: b"", {}, "empty_bytes"),
    "null_bytes": (lambda: None, {}, "empty_bytes"),
    "truncated_jpeg": (lambda: _enc(_photo(400, 300), "JPEG")[:3000], {}, "truncated_image"),
    "truncated_png": (lambda: _enc(_photo(400, 300), "PNG")[:5000], {}, "truncated_image"),
    "garbage": (lambda: b"\x00\x01not an image" * 50, {}, "undecodable"),
    "bomb": (_bomb, {}, "too_many_pixels"),
    "tiny": (lambda: _enc(_photo(20, 20), "PNG"), {}, "too_small"),
    "wide": (lambda: _enc(_photo(1000, 100), "PNG"), {}, "extreme_aspect"),
    "tall": (lambda: _enc(_photo(80, 900), "PNG"), {}, "extreme_aspect"),
    "empty_caption": (lambda: _enc(_photo(), "PNG"), {"caption": "   "}, "empty_caption"),
    "no_caption": (lambda: _enc(_photo(), "PNG"), {"caption": None}, "empty_caption"),
    "non_utf8": (lambda: _enc(_photo(), "PNG"), {"caption": b"caf\xe9 \xff"}, "caption_not_utf8"),
    "long_caption": (lambda: _enc(_photo(), "PNG"), {"caption": "word " * 1000}, "caption_too_long"),
    "read_error": (lambda: None, {"read_error": "download_failed: 404"}, "read_error"),
    "missing_path": (lambda: None, {"path": "/nonexistent/x.jpg"}, "read_error"),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_generated_good_cases_decode_to_rgb(name):
    out = decode_record(_rec(name, GOOD[name]()))
    assert isinstance(out, Decoded), out
    assert out.image.mode == "RGB" and out.image.size == (out.width, out.height)


def test_exif_rotation_applied_and_alpha_on_white():
    out = decode_record(_rec("r", _exif_rotated()))
    assert (out.width, out.height) == (100, 200)
    clear = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    out = decode_record(_rec("a", _enc(clear, "PNG")))
    assert np.asarray(out.image).min() == 255  # fully transparent black -> white


def test_16bit_scaled_not_clipped():
    a = np.full((100, 100), 32768, np.uint16)
    out = decode_record(_rec("s", _enc(Image.fromarray(a), "PNG")))
    assert 120 <= np.asarray(out.image).mean() <= 135


@pytest.mark.parametrize("name", sorted(BAD))
def test_generated_bad_cases_are_rejects_with_reason(name):
    make, extra, reason = BAD[name]
    kw = {k: v for k, v in extra.items() if k in ("path", "read_error")}
    rec = _rec(name, make(), caption=extra.get("caption", "a photo"), **kw)
    out = decode_record(rec)
    assert isinstance(out, dict), f"{name} was kept"
    assert out["reason"] == reason and out["key"] == name and out["stage"] == "mine"


def test_bomb_refused_before_decoding_with_configurable_limit():
    data = _enc(_photo(400, 300), "PNG")
    assert decode_record(_rec("b", data), MiningConfig(max_pixels=100_000))["reason"] == "too_many_pixels"
    assert isinstance(decode_record(_rec("b", data), MiningConfig(max_pixels=200_000)), Decoded)


def test_long_caption_truncated_when_configured():
    cfg = MiningConfig(truncate_long_captions=True, max_caption_chars=50)
    out = decode_record(_rec("t", _enc(_photo(), "PNG"), caption="word " * 100), cfg)
    assert isinstance(out, Decoded) and len(out.record["caption"]) <= 50
    assert truncate_caption("abc def ghi", 9) == "abc def"


def test_image_zoo_all_accounted_zero_crashes():
    zoo = shared_subset("image_zoo")
    files = sorted(p for p in zoo.rglob("*") if p.is_file() and not p.name.startswith("LICENSE"))
    assert len(files) >= 25
    kept, reasons = 0, Counter()
    for p in files:
        out = decode_record(_rec(str(p), p.read_bytes()))
        if isinstance(out, Decoded):
            kept += 1
            assert out.image.mode == "RGB"
        else:
            reasons[out["reason"]] += 1
    assert kept + sum(reasons.values()) == len(files)
    assert reasons == Counter({"undecodable": 1})  # only the corrupt JPEG
    by_name = {p.name: decode_record(_rec(str(p), p.read_bytes())) for p in files}
    assert isinstance(by_name["ukbench09380.svg"], Decoded)  # JPEG bytes behind an .svg name


def _big_jpeg(w: int, h: int, orientation: int | None = None) -> bytes:
    """A ``w`` x ``h`` JPEG with real structure (smooth gradients plus texture), optionally EXIF-rotated."""
    yy, xx = np.mgrid[0 : h // 4, 0 : w // 4].astype(np.float32)  # drawn at 1/4 scale, then upscaled (fast)
    a = np.stack(
        [xx / (w // 4) * 255, yy / (h // 4) * 255, 128 + 60 * np.sin(xx / 6.0) * np.cos(yy / 4.0)], -1
    )
    im = Image.fromarray(a.clip(0, 255).astype(np.uint8), "RGB").resize((w, h), Image.Resampling.BILINEAR)
    kw = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif
    return _enc(im, "JPEG", quality=90, **kw)


def test_big_photo_decoded_shrunk_with_true_size_kept():
    out = decode_record(_rec("big", _big_jpeg(6000, 4000)))
    assert isinstance(out, Decoded)
    assert (out.width, out.height) == (6000, 4000)
    assert (out.record["width"], out.record["height"]) == (6000, 4000)
    assert out.image.mode == "RGB" and out.image.size == (1536, 1024)  # short side = work_side, aspect kept
    # the same decode at full size (work_side=0) is the old behaviour; its downscale matches the working image
    full = decode_record(_rec("big", _big_jpeg(6000, 4000)), MiningConfig(work_side=0))
    assert full.image.size == (6000, 4000) and (full.width, full.height) == (6000, 4000)
    ref = np.asarray(full.image.resize(out.image.size, Image.Resampling.BOX), dtype=np.float32)
    assert np.abs(np.asarray(out.image, dtype=np.float32) - ref).mean() < 2.0


def test_big_photo_true_size_drives_orientation_and_checks():
    rot = decode_record(_rec("rot", _big_jpeg(3000, 2000, orientation=6)))
    assert (rot.width, rot.height) == (2000, 3000) and rot.image.size == (1024, 1536)
    # min_side / max_aspect use the true size, not the working one
    assert isinstance(decode_record(_rec("m", _big_jpeg(3000, 2400)), MiningConfig(min_side=2000)), Decoded)
    assert (
        decode_record(_rec("m", _big_jpeg(3000, 1900)), MiningConfig(min_side=2000))["reason"] == "too_small"
    )
    assert decode_record(_rec("w", _big_jpeg(8400, 2000)))["reason"] == "extreme_aspect"  # 4.2 > 4
    png = decode_record(
        _rec("p", _enc(_photo(2600, 2100), "PNG"))
    )  # no DCT scaling: full decode, then resize
    assert (png.width, png.height) == (2600, 2100) and png.image.size == (1268, 1024)


@pytest.mark.parametrize("size", [(600, 450), (1024, 1365), (1024, 1024)])
def test_web_size_images_decode_to_exactly_the_old_pixels(size):
    data = _big_jpeg(*size)
    old = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    for cfg in (None, MiningConfig(), MiningConfig(work_side=0)):
        out = decode_record(_rec("w", data), cfg)
        assert (out.width, out.height) == size and np.array_equal(np.asarray(out.image), old)


def test_coco_photos_decode_unchanged():
    coco = shared_subset("coco_mini")
    for f in sorted((coco / "val2017").glob("*.jpg"))[:5]:
        old = np.asarray(ImageOps.exif_transpose(Image.open(f)).convert("RGB"))
        out = decode_record(_rec(f.name, f.read_bytes()))
        assert out.image.size == (out.width, out.height) and np.array_equal(np.asarray(out.image), old)

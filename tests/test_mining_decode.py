"""Validated decode: the real image zoo and generated bad cases, zero crashes, every record accounted for."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
from PIL import Image

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
    "16bit": lambda: _enc(Image.fromarray((np.arange(200 * 150).reshape(150, 200) * 2).astype(np.uint16)), "PNG"),
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

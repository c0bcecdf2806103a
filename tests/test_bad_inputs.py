"""Bad-input battery: every kind of hostile or broken input has one exact outcome.

Each case is kept, or a reject with a named reason, or a clear one-line error with a non-zero
exit; kept + rejected = read for every stage run here. To stay fast the image cases share one
table read and one mining run (``image_batch``), the URL cases one read in which every URL is
refused before img2dataset starts, and only the redirect check pays for one real img2dataset
download. Real images come from ../shared/data (coco_mini, image_zoo) when present.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from core import cli, storage
from core.decode import Decoded, decode_record
from mining.readers import ReadStats, read_any, url_guard, write_records
from mining.readers import __main__ as readers_cli
from mining.readers.common import InputError
from tests.conftest import REPO, SHARED_DATA

PY = sys.executable
MAX_BYTES = 1_500_000  # the image batch's --max-image-bytes


# ----------------------------------------------------------------------------- image makers
def _enc(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _photo(w: int = 200, h: int = 150, mode: str = "RGB") -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) * 127 // (w + h))], -1)
    return Image.fromarray(a.astype(np.uint8), "RGB").convert(mode)


def _noise(w: int, h: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB")


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _zoo(rel: str, fallback: bytes) -> bytes:
    """A file of ../shared/data/image_zoo when present, else a generated stand-in with the same outcome."""
    p = SHARED_DATA / "image_zoo" / rel
    return p.read_bytes() if p.is_file() else fallback


def _real_jpeg() -> bytes:
    """A real COCO photo when the shared data is present, else a generated one."""
    coco = SHARED_DATA / "coco_mini"
    files = sorted(coco.rglob("*.jpg")) if coco.is_dir() else []
    small = [f for f in files if f.stat().st_size < MAX_BYTES]
    return small[0].read_bytes() if small else _enc(_photo(320, 240), "JPEG", quality=90)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees: 200x100 stored, 100x200 decoded
    return _enc(_photo(200, 100), "JPEG", exif=exif)


def _cmyk() -> bytes:
    return _enc(_photo(mode="CMYK"), "JPEG")


def _sixteen_bit() -> bytes:
    return _enc(Image.fromarray((np.arange(200 * 150).reshape(150, 200) * 2).astype(np.uint16)), "PNG")


def _animated_gif() -> bytes:
    return _enc(_photo().convert("P"), "GIF", save_all=True, append_images=[_photo(mode="P")], duration=50)


SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200"><rect width="200" height="200"/></svg>'
)
HTML = b"<!doctype html><html><body>404 not found</body></html>" * 20

# case -> (file bytes (None: the path is set up specially), caption, read outcome, mining outcome)
# read outcome: "kept" or the reader's read_error code; mining outcome: "kept" or the reject reason.
IMAGE_CASES: dict[str, tuple] = {
    "real_jpeg": (_real_jpeg, "a real photo", "kept", "kept"),
    "png": (lambda: _enc(_photo(), "PNG"), "a png", "kept", "kept"),
    "cmyk_jpeg": (_cmyk, "cmyk", "kept", "kept"),
    "sixteen_bit_png": (_sixteen_bit, "16-bit grey", "kept", "kept"),
    "palette_png": (lambda: _enc(_photo().convert("P"), "PNG"), "palette", "kept", "kept"),
    "palette_transparency": (
        lambda: _enc(_photo().convert("P"), "PNG", transparency=0),
        "palette alpha",
        "kept",
        "kept",
    ),
    "rgba_png": (lambda: _enc(_photo(mode="RGBA"), "PNG"), "rgba", "kept", "kept"),
    "one_bit_tiff": (lambda: _enc(_photo(mode="1"), "TIFF"), "1-bit", "kept", "kept"),
    "animated_gif": (_animated_gif, "animated", "kept", "kept"),
    "exif_rotated": (_exif_rotated, "rotated", "kept", "kept"),
    "webp": (lambda: _enc(_photo(), "WEBP"), "webp", "kept", "kept"),
    "jpeg_named_png": (lambda: _enc(_photo(), "JPEG"), "wrong extension", "kept", "kept"),
    "truncated_jpeg": (lambda: _enc(_photo(400, 300), "JPEG")[:3000], "cut", "kept", "truncated_image"),
    "truncated_png": (lambda: _half(_enc(_noise(400, 300), "PNG")), "cut", "kept", "truncated_image"),
    "zoo_corrupt_jpeg": (
        lambda: _zoo("mixed_images/ukbench09268_corrupt.jpg", b"\xff\xd8\xff" + b"\x00" * 500),
        "image_zoo's corrupt JPEG",
        "kept",
        "undecodable",
    ),
    "zoo_jpeg_behind_svg": (
        lambda: _zoo("formats_images/ukbench09380.svg", _enc(_photo(), "JPEG")),
        "JPEG bytes behind an .svg name",
        "kept",
        "kept",
    ),
    "zero_byte": (lambda: b"", "empty file", "kept", "empty_bytes"),
    "html_as_jpg": (lambda: HTML, "html", "kept", "undecodable"),
    "svg": (lambda: SVG, "vector", "kept", "undecodable"),
    "garbage": (lambda: b"\x00\x01not an image" * 50, "noise", "kept", "undecodable"),
    "pixel_bomb": (lambda: _enc(Image.new("1", (20000, 20000)), "PNG"), "bomb", "kept", "too_many_pixels"),
    "tiny": (lambda: _enc(_photo(20, 20), "PNG"), "tiny", "kept", "too_small"),
    "extreme_aspect": (lambda: _enc(_photo(1000, 100), "PNG"), "wide", "kept", "extreme_aspect"),
    "huge_caption": (lambda: _enc(_photo(), "PNG"), "word " * 200_000, "kept", "caption_too_long"),
    "empty_caption": (lambda: _enc(_photo(), "PNG"), "", "kept", "empty_caption"),
    "whitespace_caption": (lambda: _enc(_photo(), "PNG"), "   ", "kept", "empty_caption"),
    "nul_caption": (lambda: _enc(_photo(), "PNG"), "a\x00b caption with NUL", "kept", "kept"),
    "invalid_utf8_caption": (lambda: _enc(_photo(), "PNG"), b"caf\xe9 \xff\xfe", "kept", "caption_not_utf8"),
    "too_large_file": (lambda: os.urandom(MAX_BYTES + 10), "big", "file_too_large", "read_error"),
    "missing_file": (None, "nothing there", "missing_file", "read_error"),
    "fifo": (None, "a named pipe", "not_a_regular_file", "read_error"),
    "dev_zero": (None, "an endless device", "not_a_regular_file", "read_error"),
    "directory": (None, "a folder", "not_a_regular_file", "read_error"),
    "symlink_outside": (None, "link to /etc/passwd", "symlink_outside_root", "read_error"),
    "symlink_inside": (None, "link to a good image", "kept", "kept"),
    "dangling_symlink": (None, "link to nothing", "missing_file", "read_error"),
    "hardlink": (None, "a second name of a good image", "kept", "kept"),
}


def _ext(case: str) -> str:
    return {
        "png": ".png",
        "jpeg_named_png": ".png",
        "sixteen_bit_png": ".png",
        "palette_png": ".png",
        "palette_transparency": ".png",
        "rgba_png": ".png",
        "one_bit_tiff": ".tif",
        "animated_gif": ".gif",
        "webp": ".webp",
        "svg": ".svg",
        "truncated_png": ".png",
        "pixel_bomb": ".png",
        "tiny": ".png",
        "extreme_aspect": ".png",
        "zoo_jpeg_behind_svg": ".svg",
    }.get(case, ".jpg")


def _image_paths(root: Path) -> dict[str, str]:
    """Write every case's file under ``root``; the path each table row names."""
    (root / "img").mkdir(parents=True)
    paths = {}
    for case, (make, *_rest) in IMAGE_CASES.items():
        p = root / "img" / f"{case}{_ext(case)}"
        if make is not None:
            p.write_bytes(make())
        paths[case] = str(p)
    os.mkfifo(paths["fifo"])
    paths["dev_zero"] = "/dev/zero"
    os.mkdir(paths["directory"])
    os.symlink("/etc/passwd", paths["symlink_outside"])
    os.symlink(paths["png"], paths["symlink_inside"])
    os.symlink(str(root / "img" / "gone.jpg"), paths["dangling_symlink"])
    os.link(paths["png"], paths["hardlink"])
    return paths


def _write_csv(path: Path, rows: list[dict], bom: bool = True) -> None:
    """A CSV with raw bytes allowed in fields (the invalid UTF-8 case), optionally with a BOM."""
    out = io.BytesIO()
    out.write(b"\xef\xbb\xbf" if bom else b"")
    cols = list(rows[0])
    out.write((",".join(cols) + "\r\n").encode())
    for r in rows:
        cells = []
        for c in cols:
            v = r[c]
            raw = v if isinstance(v, bytes) else str(v).encode("utf-8")
            cells.append(b'"' + raw.replace(b'"', b'""') + b'"')
        out.write(b",".join(cells) + b"\r\n")
    path.write_bytes(out.getvalue())


def _records_file(path: Path, n: int) -> None:
    recs = [
        {"key": f"k{i}", "url": f"gen://{i}", "caption": "ok", "image": _enc(_photo(), "PNG")}
        for i in range(n)
    ]
    pq.write_table(pa.Table.from_pylist(recs), path)


@pytest.fixture(scope="module")
def image_batch(tmp_path_factory):
    """One table read and one mining run over every image case, plus two broken record files."""
    root = tmp_path_factory.mktemp("images")
    paths = _image_paths(root)
    rows = [{"path": paths[c], "caption": IMAGE_CASES[c][1], "case": c} for c in IMAGE_CASES]
    table = root / "pairs.csv"
    _write_csv(table, rows, bom=True)
    records = root / "records"
    summary = write_records(str(table), str(records), shard_size=8, max_image_bytes=MAX_BYTES)
    read = {json.loads(r["source_meta"])["case"]: r for r in storage.iter_rows(str(records))}
    # Mining: the records above + a truncated shard + a table without `key` (foreign schema).
    mine_in = root / "mine_in"
    mine_in.mkdir()
    for f in sorted(records.glob("records-*.parquet")):
        (mine_in / f.name).write_bytes(f.read_bytes())
    _records_file(mine_in / "zz-good.parquet", 2)
    good_bytes = (mine_in / "zz-good.parquet").read_bytes()
    (mine_in / "zz-truncated.parquet").write_bytes(good_bytes[: len(good_bytes) // 2])
    pq.write_table(
        pa.table({"url": ["a", "b", "c"], "caption": ["x", "y", "z"]}), mine_in / "zz-nokey.parquet"
    )
    from pipelines import mine

    mined = root / "mined"
    msum = mine.run(str(mine_in), str(mined), min_quality=0.0, min_domain_score=0.0, use_brisque=False)
    kept = {r["key"] for r in storage.iter_rows(str(mined / "kept"), columns=["key"])}
    rejects = list(storage.iter_rows(str(mined / "rejects")))
    return {"summary": summary, "read": read, "mine_summary": msum, "kept": kept, "rejects": rejects,
            "paths": paths}


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_image_case_outcome(image_batch, case):
    _, _, want_read, want_mine = IMAGE_CASES[case]
    rec = image_batch["read"][case]
    got_read = (rec["read_error"] or "kept").split(":", 1)[0]
    assert got_read == want_read, rec["read_error"]
    if want_read != "kept":
        assert rec["image"] is None  # nothing was read from a refused path
    by_key = {r["key"]: r for r in image_batch["rejects"]}
    got_mine = "kept" if rec["key"] in image_batch["kept"] else by_key[rec["key"]]["reason"]
    assert got_mine == want_mine, by_key.get(rec["key"])


def test_image_batch_is_accounted_and_leaks_nothing(image_batch):
    s, m = image_batch["summary"], image_batch["mine_summary"]
    assert s["read"] == len(IMAGE_CASES) and s["kept"] + sum(s["rejected"].values()) == s["read"]
    assert m["kept"] + sum(m["rejected"].values()) == m["read"] and m["accounted"]
    passwd = Path("/etc/passwd").read_bytes()
    assert all(r["image"] != passwd for r in image_batch["read"].values())
    rot = image_batch["read"]["exif_rotated"]
    out = decode_record(rot)
    assert isinstance(out, Decoded) and (out.width, out.height) == (100, 200)  # EXIF orientation applied
    assert image_batch["read"]["invalid_utf8_caption"]["caption_utf8_ok"] is False


def test_mining_names_the_truncated_shard_and_the_foreign_table(image_batch):
    """One bad record file never stops the stage: each becomes rejects naming it; the good ones are mined."""
    rejects = image_batch["rejects"]
    trunc = [r for r in rejects if r["reason"] == "unreadable_input"]
    nokey = [r for r in rejects if r["reason"] == "foreign_schema"]
    assert len(trunc) == 1 and "zz-truncated.parquet" in trunc[0]["detail"]
    assert len(nokey) == 3 and all("zz-nokey.parquet" in r["detail"] and "key" in r["detail"] for r in nokey)
    assert {"k0", "k1"} <= image_batch["kept"]  # the good shard after the bad ones


# ----------------------------------------------------------------------------- table inputs
def _gz(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data))
    return path


def _table_kinds(tmp: Path) -> dict[str, tuple[Path, dict, object]]:
    """name -> (input, read options, expected: {read_error code: n} incl. "kept", or an error substring)."""
    img = tmp / "a.png"
    img.write_bytes(_enc(_photo(), "PNG"))
    csv_text = "path,caption\na.png,one\na.png,two\n"
    jsonl = '{"path": "a.png", "caption": "one"}\n{"path": "a.png", "caption": \n[1, 2]\n{"path": "a.png"}\n'
    (tmp / "header_only.csv").write_text("path,caption\n")
    (tmp / "zero.csv").write_bytes(b"")
    (tmp / "bad.jsonl").write_text(jsonl)
    (tmp / "plain.csv").write_text(csv_text)
    (tmp / "extra.csv").write_text("path,caption\na.png,one,surplus,more\n")
    (tmp / "bom.csv").write_bytes(b"\xef\xbb\xbf" + csv_text.encode())
    (tmp / "not_gzip.csv.gz").write_bytes(b"path,caption\nplain text behind a .gz name\n")
    pq.write_table(
        pa.table({"path": ["a.png", "a.png"], "caption": [float("nan"), None]}), tmp / "nan.parquet"
    )
    pq.write_table(pa.table({"foo": [1]}), tmp / "foreign.parquet")
    big = gzip.compress(b"path,caption\n" + b"a" * (300 * 1024 * 1024), compresslevel=9)
    (tmp / "bomb.csv.gz").write_bytes(big)
    _gz(tmp / "pairs.csv.gz", csv_text.encode())
    _gz(tmp / "pairs.jsonl.gz", b'{"path": "a.png", "caption": "x"}\n{"path": "a.png", "caption": "y"}\n')
    rows = "".join(f"a.png,{hashlib.sha1(str(i).encode()).hexdigest()}\n" for i in range(500))
    (tmp / "truncated.csv.gz").write_bytes(gzip.compress(("path,caption\n" + rows).encode())[:2000])
    return {
        "csv_gz": (tmp / "pairs.csv.gz", {}, {"kept": 2}),
        "jsonl_gz": (tmp / "pairs.jsonl.gz", {}, {"kept": 2}),
        "bom_csv": (tmp / "bom.csv", {}, {"kept": 2}),
        "extra_fields_csv": (tmp / "extra.csv", {}, {"kept": 1}),
        "nan_cells_parquet": (tmp / "nan.parquet", {}, {"kept": 2}),
        "malformed_jsonl_lines": (tmp / "bad.jsonl", {}, {"kept": 2, "bad_row": 2}),
        "header_only_csv": (tmp / "header_only.csv", {}, "empty input"),
        "zero_byte_csv": (tmp / "zero.csv", {}, "empty input"),
        "gzip_bomb": (tmp / "bomb.csv.gz", {}, "gzip bomb guard"),
        "not_gzip": (tmp / "not_gzip.csv.gz", {}, "corrupt gzip"),
        "truncated_gzip": (tmp / "truncated.csv.gz", {}, "corrupt gzip"),
        "foreign_schema_table": (tmp / "foreign.parquet", {}, "needs a path column"),
        "missing_caption_column": (tmp / "plain.csv", {"caption_col": "nope"}, "no column 'nope'"),
        "missing_path_column": (tmp / "plain.csv", {"path_col": "nope"}, "no column 'nope'"),
        "nonexistent_input": (tmp / "nope.csv", {}, "does not exist"),
        "fifo_input": (tmp / "input.fifo", {}, "not a regular file"),
        "dev_zero_input": (Path("/dev/zero"), {}, "not a regular file"),
    }


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tables")
    kinds = _table_kinds(tmp)
    os.mkfifo(tmp / "input.fifo")
    return kinds


TABLE_CASES = [
    "csv_gz",
    "jsonl_gz",
    "bom_csv",
    "extra_fields_csv",
    "nan_cells_parquet",
    "malformed_jsonl_lines",
    "header_only_csv",
    "zero_byte_csv",
    "gzip_bomb",
    "not_gzip",
    "truncated_gzip",
    "foreign_schema_table",
    "missing_caption_column",
    "missing_path_column",
    "nonexistent_input",
    "fifo_input",
    "dev_zero_input",
]


@pytest.mark.parametrize("case", TABLE_CASES)
def test_table_input_outcome(table_dir, case):
    path, opts, want = table_dir[case]
    if isinstance(want, str):
        with pytest.raises(InputError, match=want):
            list(read_any(str(path), **opts))
        return
    recs = list(read_any(str(path), **opts))
    got: dict[str, int] = {}
    for r in recs:
        code = (r["read_error"] or "kept").split(":", 1)[0]
        got[code] = got.get(code, 0) + 1
    assert got == want and len(recs) == sum(want.values())


def test_malformed_jsonl_names_the_right_lines(table_dir):
    path = table_dir["malformed_jsonl_lines"][0]
    errors = [r["read_error"] for r in read_any(str(path)) if r["read_error"]]
    assert f"{path} line 2" in errors[0] and "invalid JSON" in errors[0]
    assert f"{path} line 3" in errors[1] and "not an object" in errors[1]


def test_nan_caption_cells_become_empty_caption_rejects(table_dir):
    recs = list(read_any(str(table_dir["nan_cells_parquet"][0])))
    assert [r["caption"] for r in recs] == [None, None]
    assert [decode_record(r)["reason"] for r in recs] == ["empty_caption", "empty_caption"]


# ----------------------------------------------------------------------------- image folders
def test_folder_unreadable_subfolder_fifo_and_loops_are_accounted():
    """Run as an unprivileged user (root ignores permissions): the unreadable folder is one named reject."""
    from mining.readers.folder import read_folder

    top = Path(tempfile.mkdtemp(prefix="bad-folder-"))
    try:
        os.chmod(top, 0o755)
        (top / "ok").mkdir()
        (top / "ok" / "a.png").write_bytes(_enc(_photo(), "PNG"))
        (top / "ok" / "a.txt").write_bytes(b"caf\xe9 caption")
        (top / "ok" / "notes.md").write_text("not an image")
        os.mkfifo(top / "ok" / "pipe.jpg")
        os.symlink(str(top), top / "ok" / "loop")  # a symlinked folder is not descended
        (top / "locked").mkdir()
        for i in range(3):
            (top / "locked" / f"{i}.png").write_bytes(_enc(_photo(), "PNG"))
        os.chmod(top / "locked", 0o000)
        for d in (top, top / "ok"):
            os.chmod(d, 0o755)
        for f in (top / "ok").iterdir():
            if f.is_file() and not f.is_symlink() and not f.name.endswith(".jpg"):
                os.chmod(f, 0o644)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: drop to nobody, read, report, exit
            signal.alarm(120)  # a lock inherited mid-use by fork must fail the test, not hang it
            try:
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                stats = ReadStats()
                out = [
                    (rec["url"], rec["read_error"], rec["caption_utf8_ok"])
                    for rec in read_folder(str(top), stats)
                ]
                os.write(w, json.dumps({"recs": out, "stats": stats.as_dict()["counts"]}).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as fh:
            data = json.loads(fh.read() or b"{}")
        os.waitpid(pid, 0)
    finally:
        with contextlib.suppress(OSError):
            os.chmod(top / "locked", 0o755)
        subprocess.run(["rm", "-rf", str(top)], check=False)
    recs = {Path(u).name: (e, ok) for u, e, ok in data["recs"]}
    assert set(recs) == {"a.png", "pipe.jpg", "locked"}
    assert recs["a.png"] == (None, False)  # kept; non-UTF-8 sidecar flagged
    assert recs["pipe.jpg"][0].startswith("not_a_regular_file")
    assert recs["locked"][0].startswith("unreadable_dir: PermissionError")
    assert data["stats"]["ignored_file"] == 2 and data["stats"]["unreadable_dir"] == 1  # notes.md, loop


# ----------------------------------------------------------------------------- img2dataset shards
def _i2d_folder(tmp: Path) -> Path:
    """Shards 00000 (good, with hostile member names), 00001 (corrupt Parquet), 00002 (foreign schema)."""
    d = tmp / "i2d"
    d.mkdir()
    img = _enc(_photo(), "JPEG")
    names = {
        "000000000": "000000000.jpg",
        "000000001": "../../000000001.jpg",
        "000000002": "/tmp/abs/000000002.jpg",
        "000000003": "000000003.jpg",
        "000000004": "000000004.jpg",
    }
    with tarfile.open(d / "00000.tar", "w") as tar:
        for key, name in names.items():
            info = tarfile.TarInfo(name)
            if key == "000000003":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            elif key == "000000004":
                info.type, info.linkname = tarfile.LNKTYPE, "000000000.jpg"
                tar.addfile(info)
            else:
                info.size = len(img)
                tar.addfile(info, io.BytesIO(img))
    rows = [{"key": k, "url": f"http://example.com/{k}.jpg", "caption": f"c{k}", "status": "success",
             "error_message": None} for k in names]
    pq.write_table(pa.Table.from_pylist(rows), d / "00000.parquet")
    (d / "00001.parquet").write_bytes(b"PAR1 this is not a parquet file")
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), d / "00002.parquet")
    return d


def test_img2dataset_folder_bad_shards_and_hostile_members(tmp_path):
    d = _i2d_folder(tmp_path)
    stats = ReadStats()
    recs = list(read_any(str(d), stats=stats))
    codes = [(r["read_error"] or "kept").split(":", 1)[0] for r in recs]
    # 00000: plain, ../, absolute member names are read (never extracted); symlink + hardlink members are not
    assert codes[:5] == ["kept", "kept", "kept", "missing_in_shard", "missing_in_shard"]
    assert codes[5:] == ["bad_shard", "bad_shard"]
    assert "00001.parquet" in recs[5]["read_error"] and "00002.parquet" in recs[6]["read_error"]
    assert "no column key, status" in recs[6]["read_error"]
    assert not Path("/tmp/abs/000000002.jpg").exists() and not (tmp_path.parent / "000000001.jpg").exists()
    assert stats.counts["bad_shard"] == 2


# ----------------------------------------------------------------------------- URL lists
URL_CASES = {
    "file:///etc/passwd": "unsupported_url_scheme",
    "file:///tmp/some.jpg": "unsupported_url_scheme",
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk": "unsupported_url_scheme",
    "ftp://example.com/a.jpg": "unsupported_url_scheme",
    "gopher://example.com/1": "unsupported_url_scheme",
    "not a url at all": "unsupported_url_scheme",
    "http:///no-host.jpg": "unsupported_url_scheme",
    "http://127.0.0.1:9/a.jpg": "private_address",
    "http://localhost/a.jpg": "private_address",
    "http://169.254.169.254/latest/meta-data": "private_address",
    "http://10.1.2.3/a.jpg": "private_address",
    "http://192.168.0.1/a.jpg": "private_address",
    "http://[::1]/a.jpg": "private_address",
    "http://[::ffff:127.0.0.1]/a.jpg": "private_address",
    "http://0.0.0.0/a.jpg": "private_address",
}


@pytest.fixture(scope="module")
def refused_urls(tmp_path_factory):
    """Every URL refused before download: img2dataset is not even started, and nothing local is read."""
    tmp = tmp_path_factory.mktemp("urls")
    txt = tmp / "urls.txt.gz"
    txt.write_bytes(gzip.compress(("\n".join(URL_CASES) + "\n").encode()))
    summary = write_records(str(txt), str(tmp / "records"))
    rows = {r["url"]: r for r in storage.iter_rows(str(tmp / "records"))}
    return summary, rows, tmp


@pytest.mark.parametrize("url", sorted(URL_CASES))
def test_url_refused_with_reason(refused_urls, url):
    _, rows, _ = refused_urls
    assert rows[url]["read_error"].split(":", 1)[0] == URL_CASES[url]
    assert rows[url]["image"] is None


def test_refused_urls_accounted_and_never_fetched(refused_urls):
    summary, rows, tmp = refused_urls
    assert summary["read"] == len(URL_CASES) == len(rows) and summary["kept"] == 0
    assert sum(summary["rejected"].values()) == len(URL_CASES)
    assert not (tmp / "records" / "_download" / "img2dataset").exists()  # no download started


@pytest.fixture()
def two_servers():
    """A loopback image server (exempted) whose /redir sends elsewhere, and a second one (not exempted)."""
    body = _enc(_photo(), "JPEG")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server API
            if self.path.startswith("/redir"):
                self.send_response(302)
                self.send_header("Location", self.path.split("to=", 1)[1])
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    yield [f"http://127.0.0.1:{s.server_address[1]}" for s in servers], body
    for s in servers:
        s.shutdown()
        s.server_close()


def test_guard_proxy_checks_every_hop(two_servers):
    """The proxy img2dataset's workers go through: resolved addresses and redirect targets are checked."""
    (a, b), body = two_servers
    exempt = [a.split("//", 1)[1]]
    with url_guard.guarded_environment(exempt, timeout_s=5):
        opener = urllib.request.build_opener()  # reads the proxy variables now
        assert opener.open(f"{a}/x.jpg", timeout=5).read() == body
        cases = {f"{a}/redir?to={b}/x.jpg": "403: private_address", f"{b}/x.jpg": "403: private_address",
                 "http://2130706433:1/x.jpg": "403: private_address",  # 127.0.0.1 in decimal
                 f"{a}/redir?to=file:///etc/passwd": "is not allowed"}
        for url, want in cases.items():
            with pytest.raises(Exception) as err:
                urllib.request.build_opener().open(url, timeout=5).read()
            assert want.split(": ")[-1] in str(err.value), url
            assert url_guard.guard_code(str(err.value)) in url_guard.GUARD_CODES


def test_img2dataset_redirects_to_private_or_file_are_rejects(two_servers, tmp_path):
    """One real img2dataset download: a redirect hop to a private address or to file:// is a named reject."""
    (a, b), body = two_servers
    urls = [f"{a}/ok.jpg", f"{a}/redir?to={b}/x.jpg", f"{a}/redir?to=file:///etc/passwd", "file:///etc/passwd"]
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    summary = write_records(str(tmp_path / "urls.txt"), str(tmp_path / "records"), timeout=5, threads=2,
                            allow_private_addresses=[a.split("//", 1)[1]])
    rows = {r["url"]: r for r in storage.iter_rows(str(tmp_path / "records"))}
    codes = [(rows[u]["read_error"] or "kept").split(":", 1)[0] for u in urls]
    assert codes == ["kept", "private_address", "unsupported_url_scheme", "unsupported_url_scheme"]
    assert rows[urls[0]]["sha256"] == hashlib.sha256(body).hexdigest()
    assert summary["kept"] + sum(summary["rejected"].values()) == summary["read"] == 4
    passwd = Path("/etc/passwd").read_bytes()
    assert all(r["image"] != passwd for r in rows.values())


# ----------------------------------------------------------------------------- command lines
def _cli(main, argv, capsys):
    rc = cli.run(main, argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def small_table(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "a.png").write_bytes(_enc(_photo(), "PNG"))
    (tmp / "pairs.csv").write_text("path,caption\na.png,one\na.png,two\n")
    (tmp / "header.csv").write_text("path,caption\n")
    return tmp


def _pipeline_main(name):
    import importlib

    return importlib.import_module(f"pipelines.{name}").main


CLI_ERRORS = {  # name -> (main, argv builder, message substring)
    "readers_missing_input": (
        "readers",
        lambda t: ["--input", str(t / "nope.csv"), "--output", str(t / "o")],
        "does not exist",
    ),
    "readers_header_only": (
        "readers",
        lambda t: ["--input", str(t / "header.csv"), "--output", str(t / "o")],
        "empty input",
    ),
    "readers_bad_column": (
        "readers",
        lambda t: ["--input", str(t / "pairs.csv"), "--output", str(t / "o"), "--caption-col", "nope"],
        "--caption-col nope: ",
    ),
    "readers_bad_flag_value": (
        "readers",
        lambda t: ["--input", str(t / "pairs.csv"), "--output", str(t / "o"), "--shard-size", "0"],
        "--shard-size must be >= 1",
    ),
    "mine_missing_input": (
        "mine",
        lambda t: ["--input", str(t / "nope"), "--output", str(t / "o")],
        "does not exist",
    ),
    "mine_bad_flag_value": (
        "mine",
        lambda t: ["--input", str(t), "--output", str(t / "o"), "--batch-size", "0"],
        "--batch-size must be >= 1",
    ),
    "clusters_missing_input": (
        "build_clusters",
        lambda t: ["--input", str(t / "nope"), "--output", str(t / "o")],
        "does not exist",
    ),
    "tasks_missing_input": (
        "build_tasks",
        lambda t: ["--input", str(t / "nope"), "--output", str(t / "o")],
        "does not exist",
    ),
    "tasks_no_mined_records": (
        "build_tasks",
        lambda t: ["--input", str(t), "--output", str(t / "o")],
        "no mined records",
    ),
    "report_missing_run": (
        "report",
        lambda t: ["--run", str(t / "nope"), "--output", str(t / "o")],
        "does not exist",
    ),
}


@pytest.mark.parametrize("name", sorted(CLI_ERRORS))
def test_cli_user_mistake_is_one_line_and_nonzero(small_table, capsys, name):
    module, argv, want = CLI_ERRORS[name]
    main = readers_cli.main if module == "readers" else _pipeline_main(module)
    rc, out, err = _cli(main, argv(small_table), capsys)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and want in err and "Traceback" not in err


def test_cli_debug_shows_the_traceback(small_table):
    with pytest.raises(InputError, match="empty input"):
        cli.run(readers_cli.main, ["--input", str(small_table / "header.csv"), "--output",
                                   str(small_table / "o"), "--debug"])


def test_cli_as_a_process_exit_status_and_stderr(small_table):
    """The real ``python -m``: exit 2, one line on stderr, nothing on stdout; argparse mistakes exit 2 too."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    bad = subprocess.run(
        [
            PY,
            "-m",
            "mining.readers",
            "--input",
            str(small_table / "header.csv"),
            "--output",
            str(small_table / "o"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stdout == "" and bad.stderr.strip().splitlines() == [
        f"error: {small_table / 'header.csv'}: empty input (no rows)"]
    flag = subprocess.run([PY, "-m", "mining.readers", "--input", "x", "--output", "y", "--threads", "many"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert (
        flag.returncode == 2
        and "--threads: 'many' is not a valid int" in flag.stderr
        and "Traceback" not in flag.stderr
    )
    good = subprocess.run(
        [
            PY,
            "-m",
            "mining.readers",
            "--input",
            str(small_table / "pairs.csv"),
            "--output",
            str(small_table / "ok"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert good.returncode == 0 and json.loads(good.stdout)["kept"] == 2  # stdout is the JSON summary alone


def test_stdout_to_stderr_covers_child_processes(capfd):
    """img2dataset's workers print to file descriptor 1: the redirect must reach them."""
    with cli.stdout_to_stderr():
        print("python-level chatter")
        subprocess.run([PY, "-c", "print('child chatter')"], check=True)
    print('{"summary": true}')
    out, err = capfd.readouterr()
    assert out == '{"summary": true}\n' and "python-level chatter" in err and "child chatter" in err


# ----------------------------------------------------------------------------- faults while writing
def test_disk_full_is_a_clear_error_and_leaves_only_whole_shards(tmp_path, capsys):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        src = tmp_path / "src"
        src.mkdir()
        for i in range(12):
            (src / f"{i}.bin.png").write_bytes(os.urandom(100_000))
        (src / "pairs.csv").write_text("path,caption\n" + "".join(f"{i}.bin.png,c{i}\n" for i in range(12)))
        rc, out, err = _cli(
            readers_cli.main,
            ["--input", str(src / "pairs.csv"), "--output", str(mnt / "rec"), "--shard-size", "1"],
            capsys,
        )
        assert rc == 2 and out == "" and "No space left on device" in err and err.count("\n") == 1
        shards = sorted((mnt / "rec").glob("records-*.parquet"))
        assert shards  # some shards made it, each whole (atomic rename)
        for s in shards:
            assert pq.ParquetFile(s).metadata.num_rows == 1
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _reader_proc(inp: Path, out: Path, **env_extra) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), **env_extra}
    return subprocess.Popen(
        [PY, "-m", "mining.readers", "--input", str(inp), "--output", str(out), "--shard-size", "1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("records-*.parquet"))}


def test_sigkill_mid_read_then_rerun_equals_a_clean_run(small_table, tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert _reader_proc(small_table / "pairs.csv", clean).wait(120) == 0
    p = _reader_proc(small_table / "pairs.csv", killed, IIDATA_KILL_AT="after_rename:1:records-")
    assert p.wait(120) == -signal.SIGKILL
    assert len(_shard_bytes(killed)) == 1
    again = _reader_proc(small_table / "pairs.csv", killed)
    summary = json.loads(again.communicate(timeout=120)[0])
    assert (
        again.returncode == 0 and summary["kept"] + sum(summary["rejected"].values()) == summary["read"] == 2
    )
    assert _shard_bytes(killed) == _shard_bytes(clean)


def test_concurrent_runs_on_one_output(small_table, tmp_path):
    """Two readers on one folder: each finishes or refuses with one clear line; the result equals a
    solo run."""
    solo, shared = tmp_path / "solo", tmp_path / "shared"
    assert _reader_proc(small_table / "pairs.csv", solo).wait(120) == 0
    procs = [_reader_proc(small_table / "pairs.csv", shared) for _ in range(2)]
    results = [(p.wait(120), p.communicate()[1].decode()) for p in procs]
    assert any(rc == 0 for rc, _ in results)
    for rc, err in results:
        assert rc == 0 or (rc != 0 and "Traceback" not in err and err.strip().count("\n") == 0), err
    assert _shard_bytes(shared) == _shard_bytes(solo)


# ----------------------------------------------------------------------------- tasks stage
def test_bad_style_images_are_counted_rejects_of_the_tasks_stage(tmp_path):
    from datasets.build import load_styles

    d = tmp_path / "styles"
    d.mkdir()
    (d / "good.png").write_bytes(_enc(_photo(), "PNG"))
    (d / "truncated.jpg").write_bytes(_enc(_photo(400, 300), "JPEG")[:500])
    (d / "html.png").write_bytes(HTML)
    os.mkfifo(d / "pipe.jpg")
    rejects: list[dict] = []
    styles, data = load_styles(str(d), rejects=rejects)
    assert [Path(s["path"]).name for s in styles] == ["good.png"] and len(data) == 1
    assert sorted(Path(r["url"]).name for r in rejects) == ["html.png", "pipe.jpg", "truncated.jpg"]
    assert {r["reason"] for r in rejects} == {"style_unreadable"} and {r["stage"] for r in rejects} == {
        "tasks"
    }
    assert "not_a_regular_file" in next(r["detail"] for r in rejects if r["url"].endswith("pipe.jpg"))


def test_make_quotes_paths_with_spaces():
    made = subprocess.run(["make", "-n", "read", "INPUT=dir with space/pairs.csv", "OUTPUT=out dir/rec"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    line = next(x for x in made.stdout.splitlines() if "mining.readers" in x)
    assert '--input "dir with space/pairs.csv" --output "out dir/rec"' in line
    ds = subprocess.run(["make", "-n", "dataset", "INPUT=my dir/pairs.csv", "OUTPUT=o u t"],
                        capture_output=True, text=True, cwd=REPO, timeout=60)
    assert 'INPUT="my dir/pairs.csv" OUTPUT="o u t/records"' in ds.stdout


def test_kinds_count():
    """The battery holds at least 60 kinds of bad or odd input."""
    kinds = len(IMAGE_CASES) + len(TABLE_CASES) + len(URL_CASES) + len(CLI_ERRORS) + 12
    assert kinds >= 60, kinds




def test_capped_read_stops_at_the_limit_and_allocates_by_chunk(tmp_path):
    """A file one byte over the limit is refused, one at the limit is read whole, and a small file
    read under a large limit does not allocate the limit (chunked reads)."""
    import tracemalloc

    from core.safe_files import read_file_bytes

    (tmp_path / "big.bin").write_bytes(b"x" * 3_000_001)
    (tmp_path / "ok.bin").write_bytes(b"y" * 3_000_000)
    data, err = read_file_bytes(str(tmp_path / "big.bin"), max_bytes=3_000_000)
    assert data is None and err.startswith("file_too_large")
    assert read_file_bytes(str(tmp_path / "ok.bin"), max_bytes=3_000_000) == (b"y" * 3_000_000, None)
    (tmp_path / "small.jpg").write_bytes(b"z" * 1000)
    tracemalloc.start()
    data, err = read_file_bytes(str(tmp_path / "small.jpg"), max_bytes=256 << 20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (len(data), err) == (1000, None) and peak < 4 << 20

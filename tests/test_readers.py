"""Readers: real COCO/Flickr8k pairs, image folders, CSV edge cases, img2dataset shards, resumable writer."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import storage
from core.contracts import RECORD_SCHEMA, url_key
from mining.readers import ReadStats, detect_kind, read_any, write_records
from mining.readers.__main__ import main as cli_main
from tests.conftest import shared_subset

N_REAL = 1000  # all of coco_mini (239) and flickr8k_1k (1000): about a second each


@pytest.mark.parametrize("name", ["coco_mini", "flickr8k_1k"])
def test_real_pairs_round_trip_through_parquet(name, tmp_path):
    data = shared_subset(name)
    meta = json.loads((data / "metadata.json").read_text())[:N_REAL]
    n = len(meta)
    out = tmp_path / "records"
    summary = write_records(str(data / "metadata.json"), str(out), shard_size=100, limit=N_REAL)
    assert summary["read"] == summary["kept"] == n and summary["rejected"] == {}
    assert summary["shards"] == -(-n // 100) and summary["kind"] == "table"
    table = storage.read_parquet(str(out))
    assert table.schema.equals(RECORD_SCHEMA)
    rows = table.to_pylist()
    assert len(rows) == n
    for row, m in zip(rows, meta):
        path = str(data / m["file"])
        body = open(path, "rb").read()
        assert row["key"] == url_key(path) and row["url"] == path == row["path"]
        assert row["image"] == body
        assert row["sha256"] == hashlib.sha256(body).hexdigest()
        assert row["caption"] == m["captions"][0] and row["caption_utf8_ok"] is True
        assert json.loads(row["source_meta"])["captions"] == m["captions"]
        assert (row["width"], row["height"], row["format"]) == (m["width"], m["height"], "JPEG")
        assert row["source"] == "table" and row["read_error"] is None
    # The CSV of the same set gives the same keys, bytes and first captions.
    csv_rows = list(read_any(str(data / "metadata.csv"), limit=N_REAL))
    assert [(r["key"], r["sha256"], r["caption"]) for r in csv_rows] == [
        (r["key"], r["sha256"], r["caption"]) for r in rows]


def _jpeg_and_png():
    zoo = shared_subset("image_zoo")
    return (zoo / "base_images" / "ukbench00120.jpg").read_bytes(), (
        zoo / "alpha_channel_image.png"
    ).read_bytes()


def test_folder_reader_sidecars_and_ignored_files(tmp_path):
    jpg, png = _jpeg_and_png()
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    (root / "a.jpg").write_bytes(jpg)
    (root / "a.txt").write_bytes(b"  caf\xe9 au lait\n")  # latin-1, not UTF-8
    (root / "sub" / "b.png").write_bytes(png)  # no sidecar
    (root / "sub" / "C.JPG").write_bytes(jpg)
    (root / "sub" / "C.txt").write_text("an upper-case extension\n")
    (root / "notes.md").write_text("not an image")
    (root / "orphan.txt").write_text("a caption without an image")
    assert detect_kind(str(root)) == "folder"
    stats = ReadStats()
    recs = list(read_any(str(root), stats=stats))
    assert [os.path.relpath(r["url"], root) for r in recs] == ["a.jpg", "sub/C.JPG", "sub/b.png"]
    a, c, b = recs
    assert a["caption"] == "caf\ufffd au lait" and a["caption_utf8_ok"] is False
    assert a["image"] == jpg and a["key"] == url_key(str(root / "a.jpg"))
    assert c["caption"] == "an upper-case extension"
    assert b["caption"] is None and b["format"] == "PNG" and b["image"] == png
    assert stats.counts["ignored_file"] == 2
    assert sorted(os.path.basename(p) for p in stats.examples["ignored_file"]) == ["notes.md", "orphan.txt"]


def _write_csv(path, lines: list[bytes]):
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_csv_missing_file_bad_utf8_empty_caption_and_same_url_copies(tmp_path):
    jpg, png = _jpeg_and_png()
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "one.jpg").write_bytes(jpg)
    (tmp_path / "img" / "two.png").write_bytes(png)
    absolute = str(tmp_path / "img" / "two.png")
    table = tmp_path / "pairs.csv"
    _write_csv(table, [
        b"path,caption,url,license",
        b"img/one.jpg,a photo,http://x/1.jpg,cc0",
        b"img/gone.jpg,lost file,http://x/gone.jpg,cc0",
        b"img/one.jpg,na\xefve latin-1 caption,http://x/1.jpg,cc-by",  # same URL copy, bad UTF-8
        absolute.encode() + b",,,cc0",  # absolute path, empty caption, no url
    ])
    stats = ReadStats()
    recs = list(read_any(str(table), stats=stats))
    assert len(recs) == 4
    ok, gone, copy, empty = recs
    assert ok["image"] == jpg and ok["url"] == "http://x/1.jpg" and ok["key"] == url_key("http://x/1.jpg")
    assert ok["path"] == str(tmp_path / "img" / "one.jpg")
    assert json.loads(ok["source_meta"]) == {"license": "cc0"}
    assert gone["read_error"] == "missing_file" and gone["image"] is None and gone["sha256"] is None
    assert copy["url"] == ok["url"] and copy["key"] == url_key("http://x/1.jpg", 1) != ok["key"]
    assert copy["caption_utf8_ok"] is False and copy["caption"] == "na\ufffdve latin-1 caption"
    assert copy["sha256"] == ok["sha256"]
    assert empty["caption"] == "" and empty["read_error"] is None and empty["format"] == "PNG"
    assert empty["url"] == absolute and empty["key"] == url_key(absolute)
    assert stats.counts["missing_file"] == 1

    summary = write_records(str(table), str(tmp_path / "out"), shard_size=3)
    assert (summary["read"], summary["kept"], summary["rejected"]) == (4, 3, {"missing_file": 1})

    # TSV and Parquet tables read the same way.
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("path\tcaption\nimg/one.jpg\ttab separated\n")
    assert [r["caption"] for r in read_any(str(tsv))] == ["tab separated"]
    pq.write_table(pa.table({"file": ["img/two.png"], "text": ["from parquet"]}), tmp_path / "p.parquet")
    (rec,) = read_any(str(tmp_path / "p.parquet"))
    assert rec["caption"] == "from parquet" and rec["image"] == png


def test_write_records_rerun_skips_finished_shards_identically(tmp_path):
    jpg, png = _jpeg_and_png()
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(7):
        (root / f"{i:02d}.jpg").write_bytes(jpg if i % 2 else png)
        (root / f"{i:02d}.txt").write_text(f"caption {i}")
    out = tmp_path / "out"
    first = write_records(str(root), str(out), shard_size=3)
    assert (first["read"], first["shards"], first["shards_written"]) == (7, 3, 3)
    files = storage.list_files(str(out), "records-*.parquet")
    assert [os.path.basename(f) for f in files] == [f"records-{i:05d}.parquet" for i in range(3)]
    before = {f: storage.read_bytes(f) for f in files}
    mtimes = {f: os.stat(f).st_mtime_ns for f in files}

    again = write_records(str(root), str(out), shard_size=3)
    assert (again["read"], again["shards_written"], again["shards_skipped"]) == (7, 0, 3)
    assert {f: os.stat(f).st_mtime_ns for f in files} == mtimes  # not rewritten

    os.remove(files[1])  # a lost shard is rebuilt byte for byte
    third = write_records(str(root), str(out), shard_size=3)
    assert (third["shards_written"], third["shards_skipped"]) == (1, 2)
    assert {f: storage.read_bytes(f) for f in files} == before
    rows = list(storage.iter_rows(str(out)))
    assert [r["caption"] for r in rows] == [f"caption {i}" for i in range(7)]
    assert json.loads(storage.read_bytes(str(out / "read_summary.json")))["read"] == 7


def _fake_img2dataset_shard(folder, jpg: bytes) -> None:
    """An img2dataset-shaped shard: 3 rows in the parquet, the 2 successes in the tar."""
    folder.mkdir()
    rows = [
        {"url": "http://h/a.jpg", "caption": "first", "key": "000000000", "status": "success",
         "error_message": None, "original_width": 640, "exif": "{}"},
        {"url": "http://h/b.jpg", "caption": "second", "key": "000000001", "status": "failed_to_download",
         "error_message": "HTTP Error 403: Forbidden", "original_width": None, "exif": None},
        {"url": "http://h/c.jpg", "caption": "third", "key": "000000002", "status": "success",
         "error_message": None, "original_width": 640, "exif": None},
    ]
    pq.write_table(pa.Table.from_pylist(rows[::-1]), folder / "00000.parquet")  # completion order
    with tarfile.open(folder / "00000.tar", "w") as tar:
        for key in ("000000002", "000000000"):
            for ext, body in (("jpg", jpg), ("txt", b"x"), ("json", b"{}")):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))


def test_img2dataset_shard_reader_and_truncated_tar(tmp_path):
    jpg, _ = _jpeg_and_png()
    folder = tmp_path / "i2d"
    _fake_img2dataset_shard(folder, jpg)
    assert detect_kind(str(folder)) == "img2dataset"
    recs = list(read_any(str(folder)))
    assert [r["url"] for r in recs] == ["http://h/a.jpg", "http://h/b.jpg", "http://h/c.jpg"]
    a, b, c = recs
    assert a["image"] == c["image"] == jpg and a["caption"] == "first"
    assert json.loads(a["source_meta"])["img2dataset"]["original_width"] == 640
    assert b["image"] is None and b["read_error"] == "download_failed: HTTP Error 403: Forbidden"
    # Truncate the tar inside the second sample's image: its row stays, flagged, nothing else is lost.
    with tarfile.open(folder / "00000.tar") as tar:
        cut = tar.getmembers()[3].offset_data + 100  # 000000000.jpg, written after 000000002.*
    data = (folder / "00000.tar").read_bytes()
    (folder / "00000.tar").write_bytes(data[:cut])
    stats = ReadStats()
    recs = list(read_any(str(folder / "00000.parquet"), stats=stats))
    assert len(recs) == 3
    assert [r["read_error"] for r in recs][1:] == ["download_failed: HTTP Error 403: Forbidden", None]
    assert recs[0]["read_error"] == "missing_in_shard" and stats.counts["missing_in_shard"] == 1


def test_cli_writes_shards_and_prints_summary(tmp_path, capsys):
    jpg, _ = _jpeg_and_png()
    root = tmp_path / "imgs"
    root.mkdir()
    shutil.copy(shared_subset("image_zoo") / "base_images" / "ukbench00120.jpg", root / "x.jpg")
    summary = cli_main(["--input", str(root), "--output", str(tmp_path / "out"), "--shard-size", "5"])
    assert summary["read"] == 1 and json.loads(capsys.readouterr().out)["kept"] == 1
    assert storage.exists(str(tmp_path / "out" / "records-00000.parquet"))


def test_malformed_table_rows_become_counted_error_records(tmp_path):
    import csv

    jpg, _ = _jpeg_and_png()
    (tmp_path / "one.jpg").write_bytes(jpg)
    table = tmp_path / "odd.csv"
    _write_csv(table, [
        b"path,caption",
        b"one.jpg,fine",
        b"one.jpg," + b"x" * 300,  # over the (lowered) field size limit: the parser raises on this line
        b"one.jpg,extra,fields,here",
        b"one.jpg",  # too few fields: caption None
    ])
    old = csv.field_size_limit(200)
    try:
        stats = ReadStats()
        recs = list(read_any(str(table), stats=stats))
    finally:
        csv.field_size_limit(old)
    assert len(recs) == 4 and len({r["key"] for r in recs}) == 4
    assert [r["read_error"] for r in recs][0] is None
    assert recs[1]["read_error"].startswith("bad_row:") and "field larger" in recs[1]["read_error"]
    assert json.loads(recs[2]["source_meta"]) == {"_extra_fields": ["fields", "here"]}
    assert recs[3]["caption"] is None and recs[3]["image"] == jpg
    assert stats.counts["bad_row"] == 1
    pq.write_table(pa.table({"path": ["one.jpg"], "caption": [42]}), tmp_path / "num.parquet")
    (rec,) = read_any(str(tmp_path / "num.parquet"))
    assert rec["caption"] == "42"

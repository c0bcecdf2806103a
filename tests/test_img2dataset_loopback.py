"""img2dataset downloads from a loopback HTTP server serving real images; the reader accounts for
every URL."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import threading
import time

import pytest

from core import storage
from core.contracts import url_key
from mining.readers import ReadStats, detect_kind, read_any, write_records
from mining.readers.urls import iter_url_lines, write_url_table
from tests.conftest import shared_subset

SLOW_SECONDS = 4.0  # the slow URL sleeps past the 2 s download timeout
MAX_REQUESTS = 100  # the server answers 503 after this many requests (bounded)


class _Server:
    """A threaded HTTP server on 127.0.0.1 (ephemeral port) serving a fixed set of files."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 10

            def do_GET(self):  # noqa: N802 - http.server API
                owner.requests.append(self.path)
                if len(owner.requests) > MAX_REQUESTS:
                    self.send_error(503)
                elif self.path == "/slow.jpg":
                    time.sleep(SLOW_SECONDS)
                    self._send(next(iter(owner.files.values())))
                elif self.path in owner.files:
                    self._send(owner.files[self.path])
                else:
                    self.send_error(404)

            def _send(self, body: bytes):
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def served():
    """Real images (5 COCO JPEGs + 1 PNG) with their captions, served on loopback."""
    coco = shared_subset("coco_mini")
    zoo = shared_subset("image_zoo")
    meta = json.loads((coco / "metadata.json").read_text())[:5]
    files = {f"/img/{i}.jpg": (coco / m["file"]).read_bytes() for i, m in enumerate(meta)}
    files["/img/alpha.png"] = (zoo / "alpha_channel_image.png").read_bytes()
    captions = {f"/img/{i}.jpg": m["caption"] for i, m in enumerate(meta)}
    with _Server(files) as server:
        yield server, files, captions


def _url_rows(server, files, captions):
    """(url, caption bytes) rows: the served images, a 404, a slow URL, a repeat, a latin-1 caption."""
    rows = [(server.base + p, captions.get(p, "").encode()) for p in files]
    rows.insert(2, (server.base + "/missing.jpg", b"a 404"))
    rows.insert(4, (server.base + "/slow.jpg", b"too slow"))
    rows.append((server.base + "/img/0.jpg", b"the same URL again"))
    rows.append((server.base + "/img/1.jpg", "caf\xe9 latin-1".encode("latin-1")))
    return rows


DL = {"processes": 1, "threads": 4, "timeout": 2, "retries": 0, "shard_samples": 5,
      "allow_private_addresses": True}  # 2 img2dataset shards; the test server is on loopback


def test_loopback_download_accounts_for_every_url(served, tmp_path):
    server, files, captions = served
    rows = _url_rows(server, files, captions)
    table = tmp_path / "urls.csv"
    with open(table, "wb") as fh:
        fh.write(b"url,caption,license\n")
        for url, cap in rows:
            fh.write(url.encode() + b',"' + cap + b'",cc-by\n')
    out = tmp_path / "records"
    summary = write_records(str(table), str(out), shard_size=4, **DL)
    assert summary["read"] == len(rows) and summary["rejected"] == {"download_failed": 2}
    assert summary["kept"] == len(rows) - 2 and summary["shards"] == 3
    recs = list(storage.iter_rows(str(out)))

    assert len(recs) == len(rows)  # rows = input URLs
    assert [r["url"] for r in recs] == [u for u, _ in rows]  # input order
    assert len({r["key"] for r in recs}) == len(recs)  # repeated URLs get their own keys
    by_url = {}
    for r in recs:
        by_url.setdefault(r["url"], []).append(r)
    for path, body in files.items():
        for r in by_url[server.base + path]:
            assert r["read_error"] is None and r["source"] == "img2dataset"
            assert r["image"] == body  # original bytes, not re-encoded
            assert r["sha256"] == hashlib.sha256(body).hexdigest()
            meta = json.loads(r["source_meta"])
            assert meta["img2dataset"]["status"] == "success"
            assert meta["img2dataset"]["sha256"] == r["sha256"]
            assert meta["license"] == "cc-by"
    assert recs[0]["caption"] == captions["/img/0.jpg"] and recs[0]["caption_utf8_ok"] is True
    assert recs[-1]["caption_utf8_ok"] is False and recs[-1]["caption"] == "caf\ufffd latin-1"
    assert by_url[server.base + "/img/alpha.png"][0]["format"] == "PNG"
    missing = by_url[server.base + "/missing.jpg"][0]
    slow = by_url[server.base + "/slow.jpg"][0]
    assert missing["image"] is None and missing["read_error"].startswith("download_failed:")
    assert "404" in missing["read_error"]
    assert slow["image"] is None and slow["read_error"].startswith("download_failed:")
    assert "timed out" in slow["read_error"]
    assert json.loads(slow["source_meta"])["img2dataset"]["status"] == "failed_to_download"
    assert len(server.requests) == len(rows) <= MAX_REQUESTS

    # Rerun: img2dataset's shard is finished, nothing is downloaded or rewritten.
    before = {p: storage.read_bytes(p) for p in storage.list_files(str(out), "records-*.parquet")}
    again = write_records(str(table), str(out), shard_size=4, **DL)
    assert again["shards_skipped"] == 3 and again["shards_written"] == 0
    assert len(server.requests) == len(rows)
    assert {p: storage.read_bytes(p) for p in before} == before

    # An interrupted download (img2dataset shard 1 never finished) resumes: only its URLs are fetched.
    i2d = str(out / "_download" / "img2dataset")
    for name in ("00001_stats.json", "00001.tar", "00001.parquet"):
        (out / "_download" / "img2dataset" / name).unlink()
    out2 = tmp_path / "records2"
    resumed = write_records(str(table), str(out2), work_dir=str(out / "_download"), shard_size=4, **DL)
    assert resumed["read"] == len(rows) and resumed["rejected"] == {"download_failed": 2}
    assert sorted(server.requests[len(rows):]) == sorted(u[len(server.base):] for u, _ in rows[5:])
    assert {
        os.path.basename(p): storage.read_bytes(p) for p in storage.list_files(str(out2), "records-*")
    } == {os.path.basename(p): b for p, b in before.items()}

    # The img2dataset output folder itself reads back the same rows (reader 1 on its own).
    stats = ReadStats()
    direct = list(read_any(i2d, stats=stats))
    assert [(r["key"], r["sha256"], r["read_error"]) for r in direct] == [
        (r["key"], r["sha256"], r["read_error"]) for r in recs]
    assert stats.counts["download_failed"] == 2
    shard_only = list(read_any(i2d + "/00000.tar"))
    assert [r["key"] for r in shard_only] == [r["key"] for r in recs[:5]]  # shard 00000 = rows 0-4


def test_img2dataset_resize_and_distributor_options_reach_it(served, tmp_path):
    """``resize_mode``/``image_size`` and the distributor's process count go to img2dataset itself:
    every served image comes back resized (re-encoded), with its original size kept."""
    from PIL import Image

    server, files, captions = served
    table = tmp_path / "urls.csv"
    table.write_text("url,caption\n" + "".join(f"{server.base}{p},{captions.get(p, 'x')}\n" for p in files))
    opts = dict(DL, processes=2, resize_mode="center_crop", image_size=32, distributor="multiprocessing")
    summary = write_records(str(table), str(tmp_path / "records"), shard_size=4, **opts)
    assert summary["read"] == summary["kept"] == len(files) and not summary["rejected"]
    for r in storage.iter_rows(str(tmp_path / "records")):
        with Image.open(io.BytesIO(r["image"])) as im:
            assert im.size == (32, 32)
        meta = json.loads(r["source_meta"])["img2dataset"]
        assert meta["original_width"] > 32 and meta["width"] == 32


def test_pyspark_distributor_without_pyspark_is_a_one_line_error(tmp_path, monkeypatch):
    import importlib.util

    from mining.readers import urls

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "pyspark" else real(n, *a))
    with pytest.raises(ValueError, match="needs pyspark"):
        urls.run_img2dataset(str(tmp_path / "t.parquet"), str(tmp_path / "o"), distributor="pyspark")


def test_txt_url_list_normalised_without_downloading(tmp_path):
    """A .txt list becomes the img2dataset input table: one row per non-blank line, keys by occurrence."""
    txt = tmp_path / "urls.txt"
    txt.write_text("http://a/x.jpg\n\n  http://b/y.png  \nhttp://a/x.jpg\n")
    table = tmp_path / "w" / "urls.parquet"
    n = write_url_table(iter_url_lines(str(txt)), str(table), str(tmp_path / "w" / "img2dataset"))
    rows = storage.read_parquet(str(table)).to_pylist()
    assert n == 3 and [r["url"] for r in rows] == ["http://a/x.jpg", "http://b/y.png", "http://a/x.jpg"]
    assert [r["input_row"] for r in rows] == [0, 1, 2]
    assert rows[0]["record_key"] == url_key("http://a/x.jpg") and rows[2]["record_key"] == url_key(
        "http://a/x.jpg", 1
    )
    assert detect_kind(str(txt)) == "urls"
    # Same input again: the table is byte-identical, so finished img2dataset shards are kept.
    first = table.read_bytes()
    write_url_table(iter_url_lines(str(txt)), str(table), str(tmp_path / "w" / "img2dataset"))
    assert table.read_bytes() == first


def test_pyspark_distributor_gives_the_multiprocessing_records(served, tmp_path):
    """img2dataset's pyspark distributor (a local Spark session with 2 cores, Spark's own Python
    workers) downloads the same images into the same records as its multiprocessing distributor."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("pyspark") is None or shutil.which("java") is None:
        pytest.skip("needs pyspark (make spark-deps) and Java")
    server, files, captions = served
    table = tmp_path / "urls.csv"
    table.write_text("url,caption\n" + "".join(f"{server.base}{p},{captions.get(p, 'x')}\n" for p in files))
    got = {}
    for dist in ("multiprocessing", "pyspark"):
        out = tmp_path / dist
        summary = write_records(str(table), str(out), work_dir=str(tmp_path / f"dl-{dist}"), shard_size=4,
                                **dict(DL, processes=2, distributor=dist))
        assert summary["read"] == summary["kept"] == len(files) and not summary["rejected"]
        got[dist] = [(r["key"], r["sha256"], r["caption"]) for r in storage.iter_rows(str(out))]
    assert got["pyspark"] == got["multiprocessing"] and len(got["pyspark"]) == len(files)

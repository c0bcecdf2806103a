"""img2dataset ingest against a hostile loopback server: errors, timeouts, truncated bodies, resets, garbage.

Every URL must come out as exactly one record: the good ones with the served bytes, the others with a
``read_error`` (or, for a body that arrived but is not a whole image, bytes that fail to decode later).
"""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import time

from PIL import Image

from core import storage
from mining.readers import write_records
from tests.conftest import shared_subset

MAX_REQUESTS = 200


def _serve(files: dict[str, bytes]):
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 10

        def do_GET(self):  # noqa: N802 - http.server API
            requests.append(self.path)
            name = self.path.rsplit("/", 1)[-1]
            body = files.get("/img/0.jpg", b"")
            try:
                if len(requests) > MAX_REQUESTS:
                    self.send_error(503)
                elif name.startswith("e500"):
                    self.send_error(500)
                elif name.startswith("e403"):
                    self.send_error(403)
                elif name.startswith("slow"):
                    time.sleep(4)
                    self._send(body)
                elif name.startswith("trunc"):  # promises the whole file, sends half, hangs up
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                elif name.startswith("reset"):  # closes without any response
                    self.close_connection = True
                    self.connection.close()
                elif name.startswith("garbage"):
                    self._send(b"<html>not an image</html>" * 10, "text/html")
                elif self.path in files:
                    self._send(files[self.path])
                else:
                    self.send_error(404)
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass

        def _send(self, data: bytes, ctype: str = "image/jpeg"):
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}", requests


def _decodes(data: bytes | None) -> bool:
    if not data:
        return False
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001
        return False


def test_every_url_is_accounted_for_under_faults(tmp_path):
    coco = shared_subset("coco_mini")
    files = {
        f"/img/{i}.jpg": p.read_bytes() for i, p in enumerate(sorted((coco / "val2017").glob("*.jpg"))[:4])
    }
    httpd, base, requests = _serve(files)
    try:
        good = [f"{base}{p}" for p in files]
        bad = [f"{base}/{n}.jpg" for n in ("e500", "e403", "missing", "slow", "trunc", "reset", "garbage")]
        urls = good[:2] + bad + good[2:]
        (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
        summary = write_records(
            str(tmp_path / "urls.txt"),
            str(tmp_path / "records"),
            timeout=2,
            retries=0,
            threads=4,
            allow_private_addresses=True,
        )  # the hostile server is on loopback
    finally:
        httpd.shutdown()
        httpd.server_close()
    rows = list(
        storage.iter_rows(str(tmp_path / "records"), columns=["url", "image", "sha256", "read_error"])
    )
    assert [r["url"] for r in rows] == urls  # one row per URL, in input order
    assert summary["read"] == len(urls) and summary["kept"] + sum(summary["rejected"].values()) == len(urls)
    by_url = {r["url"]: r for r in rows}
    for url in good:
        path = url[len(base):]
        assert by_url[url]["sha256"] == hashlib.sha256(files[path]).hexdigest()
    for url in bad:
        row = by_url[url]
        # a failure is either recorded by the reader, or the bytes that arrived do not decode
        # (mining rejects them)
        assert row["read_error"] or not _decodes(row["image"]), url
    for name in ("e500", "e403", "missing", "slow", "reset"):
        assert by_url[f"{base}/{name}.jpg"]["read_error"], name
    assert len(requests) < MAX_REQUESTS

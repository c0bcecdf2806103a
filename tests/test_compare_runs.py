"""bench/compare_runs.py, the redesign's proof tool: it must tell real differences from listed ones."""

from __future__ import annotations

import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq

from bench import compare_runs


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _parquet(rows: list[dict]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def _write(root, files: dict[str, bytes]):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def test_format_key_and_listed_columns_pass_real_changes_fail(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    img = b"\xff\xd8jpeg"
    _write(a, {"s.tar": _tar({"k.json": json.dumps({"t": 1}).encode(), "k.jpg": img}),
               "r.parquet": _parquet([{"key": "x", "stage": "mining"}]),
               "summary.json": json.dumps({"read": 3, "seconds": 1.0}).encode(), "same.txt": b"x"})
    _write(
        b,
        {
            "s.tar": _tar(
                {"k.json": json.dumps({"t": 1, "format": "iidata.cluster/1"}).encode(), "k.jpg": img}
            ),
            "r.parquet": _parquet([{"key": "x", "stage": "mine"}]),
            "summary.json": json.dumps({"read": 3, "seconds": 9.0}).encode(),
            "same.txt": b"x",
        },
    )
    status = {r["file"]: r["status"] for r in compare_runs.compare(a, b, {"format"}, {"stage"})}
    assert status == {"s.tar": "same content", "r.parquet": "listed change", "summary.json": "volatile",
                      "same.txt": "identical"}
    assert compare_runs.main([str(a), str(b), "--allow-column", "stage"]) == 0
    assert compare_runs.main([str(a), str(b)]) == 1  # the stage column is a difference unless listed
    _write(b, {"s.tar": _tar({"k.json": json.dumps({"t": 2}).encode(), "k.jpg": img})})
    assert compare_runs.compare(a, b, {"format"}, {"stage"})[1]["status"] == "differ"

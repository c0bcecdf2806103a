"""Record schema, atomic storage and packaging: the pieces every stage stands on."""

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image

from core import contracts as schema
from core import storage
from tests.conftest import REPO


def _jpeg(color=(200, 30, 30), size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def test_keys_are_stable_and_unique_per_occurrence():
    keys = schema.OccurrenceKeys()
    a0, b0, a1 = keys("http://x/a.jpg"), keys("http://x/b.jpg"), keys("http://x/a.jpg")
    assert a0 == schema.url_key("http://x/a.jpg") and len(a0) == 20
    assert len({a0, b0, a1}) == 3
    assert a1 == schema.url_key("http://x/a.jpg", 1)
    assert schema.OccurrenceKeys()("http://x/a.jpg") == a0  # same input, same keys


def test_make_record_fills_header_fields_and_flags_bad_captions():
    data = _jpeg()
    rec = schema.make_record(key="k", url="u", caption=b"caf\xe9 au lait", image=data, source="test")
    assert (rec["width"], rec["height"], rec["format"]) == (32, 24, "JPEG")
    assert rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert rec["caption_utf8_ok"] is False and "\ufffd" in rec["caption"]
    broken = schema.make_record(key="k2", url="u", caption="ok", image=b"not an image", source="test")
    assert broken["width"] is None and broken["format"] is None and broken["sha256"]


def test_parquet_roundtrip_keeps_bytes_and_extra_columns(tmp_path):
    rows = [
        schema.make_record(key=f"k{i}", url=f"u{i}", caption=f"c{i}", image=_jpeg((i, 0, 0)), source="t")
        for i in range(5)
    ]
    rows[2]["quality"] = 0.5  # a later stage's column
    path = str(tmp_path / "out" / "records-00000.parquet")
    storage.write_parquet(rows, path)
    table = storage.read_parquet(str(tmp_path / "out"))
    assert table.schema.field("key").type == pa.string()
    back = table.to_pylist()
    assert [r["key"] for r in back] == [r["key"] for r in rows]
    assert [r["image"] for r in back] == [r["image"] for r in rows]
    assert back[2]["quality"] == 0.5 and back[0]["quality"] is None
    assert list(storage.iter_rows(path, columns=["key"])) == [{"key": r["key"]} for r in rows]


def test_atomic_write_leaves_no_partial_file_and_ignores_debris(tmp_path):
    target = tmp_path / "shard-00000.parquet"
    (tmp_path / ("shard-00001.parquet" + storage.TMP_MARK + "dead")).write_bytes(
        b"partial"
    )  # a killed writer
    storage.write_parquet([schema.make_record(key="a", url="u", caption="c", source="t")], str(target))
    listed = storage.list_files(str(tmp_path), "*.parquet*")
    assert listed == [str(target)]
    storage.atomic_write_bytes(str(target), b"new")  # overwrite in place
    assert target.read_bytes() == b"new"


def test_reject_row_matches_schema():
    row = schema.reject({"key": "k", "url": "u"}, "mine", "undecodable", "x" * 2000)
    table = schema.to_table([row], schema.REJECT_SCHEMA)
    assert table.num_rows == 1 and len(row["detail"]) == 500


def test_packages_import_in_a_fresh_interpreter():
    code = "import mining, clustering, datasets, model, train, pipelines; print(datasets.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).parent == REPO / "datasets"  # ours, not Hugging Face's `datasets`


@pytest.mark.skipif(not (REPO / ".ci" / "run").exists(), reason="no CI script")
def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert os.access(REPO / ".ci" / "run", os.X_OK)

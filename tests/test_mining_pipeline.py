"""pipelines/mine.py on FnApiRunner and multi-processing DirectRunner: accounting, outputs, rerun skip."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from core import storage
from core.contracts import RECORD_SCHEMA, make_record
from pipelines import mine
from tests.conftest import shared_subset


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


N_REAL = 2  # real COCO photos; the rest are bad or odd records
N_READ = N_REAL + 6


def _records(coco, n_real=N_REAL):
    files = sorted((coco / "val2017").glob("*.jpg"))[:n_real]
    good = [
        make_record(
            key=f"real{i}",
            url=str(f),
            caption="a photo of a dog on the grass",
            image=f.read_bytes(),
            source="test",
        )
        for i, f in enumerate(files)
    ]
    flat = Image.new("RGB", (300, 200), (128, 128, 128))
    bad = [
        make_record(key="empty", url="x", caption="c", image=b"", source="test"),
        make_record(key="trunc", url="x", caption="c", image=files[0].read_bytes()[:2000], source="test"),
        make_record(key="tiny", url="x", caption="c", image=_png(flat.resize((10, 10))), source="test"),
        make_record(key="nocap", url="x", caption="", image=_png(flat), source="test"),
        make_record(key="flat", url="x", caption="a grey square", image=_png(flat), source="test"),
        make_record(key="err", url="x", caption="c", read_error="download_failed: 404", source="test"),
    ]
    return good[:1] + bad[:3], good[1:] + bad[3:]


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    coco = shared_subset("coco_mini")
    d = tmp_path_factory.mktemp("records")
    for i, rows in enumerate(_records(coco)):
        storage.write_parquet(rows, str(d / f"records-{i:05d}.parquet"), RECORD_SCHEMA)
    return d


def _check(summary, out):
    assert summary["read"] == N_READ and summary["accounted"]
    assert summary["kept"] + sum(summary["rejected"].values()) == N_READ
    assert {"empty_bytes", "truncated_image", "too_small", "empty_caption", "read_error"} <= set(
        summary["rejected"]
    )
    kept = storage.read_parquet(str(out / "kept"))
    assert kept.num_rows == summary["kept"] >= N_REAL
    for col in (
        "quality",
        "quality_technical",
        "quality_brisque",
        "quality_learned",
        "domain",
        "domain_scores",
    ):
        assert col in kept.column_names
    q = np.array(kept.column("quality").to_pylist())
    assert ((q >= 0) & (q <= 1)).all()
    assert all(
        set(json.loads(s)) == set(mine.MiningConfig().domains)
        for s in kept.column("domain_scores").to_pylist()
    )
    rej = storage.read_parquet(str(out / "rejects"))
    assert rej.schema.names == ["key", "url", "stage", "reason", "detail"]
    return kept


def test_fnapi_run_accounts_and_is_deterministic_and_resumable(records_dir, tmp_path):
    out = tmp_path / "mined"
    s1 = mine.run(str(records_dir), str(out), runner="FnApiRunner", min_quality=0.0, use_brisque=False)
    kept = _check(s1, out)
    assert s1["metrics"]["read"] == N_READ and s1["metrics"].get("kept") == kept.num_rows
    assert s1["metrics"]["reject_read_error"] == 1
    first = {p: (out / "kept" / p).read_bytes() for p in ("records-00000.parquet", "records-00001.parquet")}
    s2 = mine.run(
        str(records_dir), str(out), runner="FnApiRunner", min_quality=0.0, use_brisque=False
    )  # rerun: both skipped
    assert s2["metrics"].get("files_skipped") == 2 and s2["kept"] == s1["kept"]
    assert first == {p: (out / "kept" / p).read_bytes() for p in first}
    # a threshold above 1 moves every decoded image to low_quality
    s3 = mine.run(str(records_dir), str(tmp_path / "strict"), min_quality=1.01, use_brisque=False)
    assert s3["kept"] == 0 and s3["rejected"]["low_quality"] == N_REAL + 1  # + the flat grey image
    meta = pq.read_metadata(str(tmp_path / "strict" / "kept" / "records-00000.parquet"))
    assert meta.num_rows == 0


def test_direct_runner_multiprocessing(records_dir, tmp_path):
    out = tmp_path / "mined_direct"
    s = mine.run(str(records_dir), str(out), runner="DirectRunner", workers=2, min_quality=0.0,
                 allowed_domains=("animals", "people"), use_brisque=False)
    _check(s, out)
    kept = storage.read_parquet(str(out / "kept"))
    assert set(kept.column("domain").to_pylist()) <= {"animals", "people"}


def test_big_photo_mined_with_its_true_size(tmp_path):
    """A 6000 x 4000 JPEG is decoded at its 1536 x 1024 working size, but its row keeps the true size."""
    yy, xx = np.mgrid[0:1000, 0:1500].astype(np.float32)
    a = (
        np.stack([xx / 6, yy / 4, 128 + 60 * np.sin(xx / 6) * np.cos(yy / 4)], -1)
        .clip(0, 255)
        .astype(np.uint8)
    )
    buf = io.BytesIO()
    Image.fromarray(a).resize((6000, 4000), Image.Resampling.BILINEAR).save(buf, "JPEG", quality=90)
    rec = make_record(key="big", url="x", caption="a big photo", image=buf.getvalue(), source="test")
    storage.write_parquet([rec], str(tmp_path / "records" / "records-00000.parquet"), RECORD_SCHEMA)
    s = mine.run(str(tmp_path / "records"), str(tmp_path / "mined"), min_quality=0.0, use_brisque=False)
    assert s["kept"] == 1 and s["config"]["work_side"] == 1024
    row = storage.read_parquet(str(tmp_path / "mined" / "kept")).to_pylist()[0]
    assert (row["width"], row["height"]) == (6000, 4000) and 0.0 <= row["quality"] <= 1.0

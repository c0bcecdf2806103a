"""Reruns never keep stale outputs, never leave debris, and never share an output folder.

* unit manifests: a unit is done only when its outputs exist and its manifest records the same
  inputs (content hash), config and code version; a reader rerun after the CSV changed and a mining
  rerun with ``--min-quality 0.99`` redo their units, and the summaries describe the files on disk;
* identical runs give identical bytes, reject files included (no memory addresses in details);
* ``OutputLock``: a second run on a folder refuses with the holder's pid/host; a dead holder's
  lock is taken over; leftover ``*.tmp-*`` files are removed by the next run.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from core import storage
from core.contracts import clean_detail, reject

ROOT = Path(__file__).resolve().parents[1]


# -- storage primitives -----------------------------------------------------------------------------
def test_unit_is_done_only_for_the_same_inputs_and_config(tmp_path):
    src, out = tmp_path / "in.bin", str(tmp_path / "out" / "a.parquet")
    src.write_bytes(b"one")
    fp = storage.fingerprint([str(src)], {"q": 0.5}, stage="t")
    assert not storage.unit_done([out], fp)
    storage.atomic_write_bytes(out, b"result")
    assert not storage.unit_done([out], fp)  # outputs without a manifest: stale (older code or killed)
    storage.finish_unit([out], fp)
    assert storage.unit_done([out], fp)
    assert storage.unit_done([out], storage.fingerprint([str(src)], {"q": 0.5}, stage="t"))
    assert not storage.unit_done([out], storage.fingerprint([str(src)], {"q": 0.99}, stage="t"))
    src.write_bytes(b"two")
    assert not storage.unit_done([out], storage.fingerprint([str(src)], {"q": 0.5}, stage="t"))
    assert storage.list_files(str(tmp_path / "out"), "*.parquet") == [out]  # manifests are not listed


def test_reject_details_carry_no_memory_addresses():
    try:
        Image.open(io.BytesIO(b"not an image"))
    except Exception as e:  # noqa: BLE001
        detail = f"{type(e).__name__}: {e}"
    assert " at 0x" in detail
    row = reject({"key": "k"}, "mine", "undecodable", detail)
    assert "0x" not in row["detail"] and row["detail"].startswith("UnidentifiedImageError: cannot identify")
    assert clean_detail("<_io.BytesIO object at 0x7f00ab>") == "<_io.BytesIO object>"


def test_disk_full_write_leaves_no_temp_file_and_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out" / "a.parquet"
    storage.atomic_write_bytes(str(target), b"old complete file")
    real_create = storage._create_tmp

    class Full(io.RawIOBase):
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            self.fh.write(data[:3])
            raise OSError(28, "No space left on device")

        def close(self):
            self.fh.close()

    monkeypatch.setattr(storage, "_create_tmp", lambda p: Full(real_create(p)))
    with pytest.raises(OSError, match="No space"):
        storage.atomic_write_bytes(str(target), b"new bytes that do not fit")
    assert target.read_bytes() == b"old complete file"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.parquet"]


def _holder(folder: Path) -> subprocess.Popen:
    code = ("import sys, time; from core import storage\n"
            f"with storage.OutputLock({str(folder)!r}):\n    print('held', flush=True); time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_second_run_on_a_folder_refuses_then_stale_lock_is_taken_over(tmp_path):
    out = tmp_path / "out"
    p = _holder(out)
    try:
        with pytest.raises(storage.OutputLocked, match=f"pid {p.pid} on {socket.gethostname()}"):
            with storage.OutputLock(str(out)):
                pass
    finally:
        p.kill()  # SIGKILL: the lock file stays behind, naming a dead pid
        p.wait()
    assert (out / storage.LOCK_NAME).exists()
    (out / "sub").mkdir()
    debris = [out / f"a.parquet{storage.TMP_MARK}0123", out / "sub" / f"b.tar{storage.TMP_MARK}4567"]
    for d in debris:
        d.write_bytes(b"partial")
    (out / "keep.parquet").write_bytes(b"x")
    with storage.OutputLock(str(out)):
        assert json.loads((out / storage.LOCK_NAME).read_text())["pid"] != p.pid
        assert not any(d.exists() for d in debris) and (out / "keep.parquet").exists()
        with storage.OutputLock(str(out)):  # the same process re-enters (the demo's stages)
            pass
        assert (out / storage.LOCK_NAME).exists()
    assert not (out / storage.LOCK_NAME).exists()


def test_two_cli_runs_on_one_folder_second_refuses(tmp_path):
    """A real second CLI (the mining stage) on a folder held by a live run: one line, non-zero exit."""
    out = tmp_path / "mined"
    (tmp_path / "records").mkdir()  # an input that exists: the lock, not the input check, must refuse
    p = _holder(out)
    try:
        t0 = time.time()
        r = subprocess.run([sys.executable, "-m", "pipelines.mine", "--input", str(tmp_path / "records"),
                            "--output", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        p.kill()
        p.wait()
    assert r.returncode != 0 and "in use by pid" in r.stderr, r.stderr[-2000:]
    assert time.time() - t0 < 120


# -- stages: reader and mining reruns ---------------------------------------------------------------
def _pairs(folder: Path, n: int, name: str = "pairs.csv") -> Path:
    import csv

    import numpy as np

    from tests.test_train_toyshards import smooth_image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        p = folder / f"img{i}.jpg"
        if not p.exists():
            smooth_image(rng, 96).save(p, quality=90)
        rows.append({"path": str(p), "caption": f"a photo number {i}"})
    csv_path = folder / name
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "caption"])
        w.writeheader()
        w.writerows(rows)
    return csv_path


def test_reader_rerun_after_the_csv_changed_rewrites_its_shards(tmp_path):
    from mining.readers import write_records

    csv_path = _pairs(tmp_path / "in", 2)
    out = str(tmp_path / "records")
    first = write_records(str(csv_path), out, shard_size=2)
    assert first["read"] == 2
    _pairs(tmp_path / "in", 3)  # the CSV grows by one row: shard 0 keeps 2 rows, shard 1 is new
    second = write_records(str(csv_path), out, shard_size=2)
    assert second["read"] == 3 and second["shards"] == 2
    assert storage.read_parquet(out).num_rows == 3
    _pairs(tmp_path / "in", 1)  # ... and shrinks: shard 0 rewritten, shard 1 deleted
    third = write_records(str(csv_path), out, shard_size=2)
    t = storage.read_parquet(out)
    assert third["read"] == 1 and t.num_rows == 1 and len(storage.list_files(out, "records-*.parquet")) == 1
    again = write_records(str(csv_path), out, shard_size=2)
    assert again["shards_written"] == 0 and again["shards_skipped"] == 1


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> str:
    """Demo-corpus records (sharp, blurred, corrupt and odd images) plus two broken files."""
    from mining.demo_corpus import generate
    from mining.readers import write_records

    base = tmp_path_factory.mktemp("mine_rerun")
    generate(str(base / "corpus"), n=16, seed=3, progress=False)
    csv_path = base / "corpus" / "pairs.csv"
    (base / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (base / "garbage.png").write_bytes(b"GIF89a" + b"\x00" * 20)
    text = csv_path.read_text()
    header = text.splitlines()[0].split(",")
    extra = []
    for name in ("broken.jpg", "garbage.png"):
        row = {h: "" for h in header}
        row["path"], row["caption"] = str(base / name), f"a broken file {name}"
        extra.append(",".join(row[h] for h in header))
    csv_path.write_text(text.rstrip("\n") + "\n" + "\n".join(extra) + "\n")
    out = str(base / "records")
    write_records(str(csv_path), out, shard_size=9)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "summary.json"}


def test_mining_reruns_are_identical_and_redo_on_a_config_change(records, tmp_path):
    from pipelines.mine import run

    a = run(records, str(tmp_path / "a"), use_brisque=False)
    run(records, str(tmp_path / "b"), use_brisque=False)
    assert a["accounted"] and sum(a["rejected"].values()) >= 2
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert sorted(fa) == sorted(fb) and all(fa[k] == fb[k] for k in fa), "identical runs differ"
    rejects = storage.read_parquet(str(tmp_path / "a" / "rejects")).to_pylist()
    assert rejects and not any("0x" in (r["detail"] or "") for r in rejects)

    assert a["kept"] > 0
    strict = run(records, str(tmp_path / "a"), use_brisque=False, min_quality=0.99)
    kept = storage.read_parquet(str(tmp_path / "a" / "kept"))
    assert strict["metrics"]["files_stale_redone"] == 2
    assert strict["kept"] == kept.num_rows < a["kept"]
    assert all(q >= 0.99 for q in kept.column("quality").to_pylist())
    assert strict["read"] == strict["kept"] + sum(strict["rejected"].values()) == a["read"]
    manifest = json.loads((tmp_path / "a" / "kept" / ".units" / "records-00000.parquet.json").read_text())
    assert manifest["fingerprint"]["config"]["min_quality"] == 0.99

"""core/samples.py: one shard writer, the cluster/instruction encode-decode pairs, and training's
dispatch on ``format`` (old shards without it still decode the same way)."""

import io
import json
import random
import tarfile

import pytest
from PIL import Image

from core import samples as S
from train.data import DataConfig, RejectSample, decode_sample


def _jpg(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 32), (20 * i, 90, 200 - 20 * i)).save(buf, "JPEG")
    return buf.getvalue()


def _cluster(n: int = 5):
    row = {"cluster_id": "c1", "domain": "products", "keys": [f"k{i}" for i in range(n)],
           "urls": [f"u{i}" for i in range(n)], "similarities": [1.0] * n}
    return S.encode_cluster_sample("c1", row, [_jpg(i) for i in range(n)], [f"cap {i}" for i in range(n)])


def test_cluster_sample_round_trip_carries_its_format():
    enc = _cluster()
    assert json.loads(enc["json"])["format"] == S.CLUSTER_FORMAT and enc["txt"] == b"cap 0"
    dec = S.decode_cluster_sample(enc)
    assert dec.size == 5 and dec.images == [_jpg(i) for i in range(5)] and dec.captions[4] == "cap 4"


def test_instruction_sample_round_trip_and_markers():
    doc = {
        "task": "subject",
        "instruction": f"Generate {S.marker(1)} on a beach",
        "context": [
            {"marker": "[ref#1]", "text": "[ref#1] a dog", "kind": "subject", "key": "a", "ext": "png"}
        ],
    }
    enc = S.encode_instruction_sample("s1", doc, _jpg(0), [("png", b"PNG")])
    assert sorted(k for k in enc if k != "__key__") == ["ctx1.png", "json", "target.jpg", "txt"]
    dec = S.decode_instruction_sample(enc)
    assert dec.doc["format"] == S.INSTRUCTION_FORMAT and dec.context == [b"PNG"] and dec.target == _jpg(0)
    assert S.markers_in(doc["instruction"] + " [ref#1] [ref#2]") == ["[ref#1]", "[ref#2]"]


def test_one_writer_is_deterministic_with_fixed_member_metadata(tmp_path):
    data = S.tar_bytes([_cluster()])
    assert data == S.tar_bytes([_cluster()])
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        ms = t.getmembers()
    assert [m.name for m in ms] == sorted(m.name for m in ms)  # members of a sample sorted
    assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in ms} == {(0, 0, 0, S.TAR_USER, S.TAR_MODE)}
    path = str(tmp_path / "s.tar")
    assert S.write_shard(path, [_cluster()]) and not S.write_shard(path, [_cluster()], if_changed=True)
    assert not S.write_shard(path, [], skip_existing=True) and open(path, "rb").read() == data


def test_the_writer_makes_the_bytes_of_webdataset_tarwriter_and_webdataset_reads_them(tmp_path):
    import webdataset as wds

    long_key = "k" * 120  # a member name past ustar's 100 characters: a pax header, as TarWriter
    samples = [_cluster(), {"__key__": long_key, "txt": "é" * 3, "json": b"{}", "bin": b"x" * 512},
               {"__key__": "empty", "txt": b""}]
    ref = io.BytesIO()
    w = wds.TarWriter(ref, user=S.TAR_USER, group=S.TAR_GROUP, mode=S.TAR_MODE, mtime=S.TAR_MTIME,
                      encoder=False)
    for s in samples:
        w.write({k: v.encode() if isinstance(v, str) and k != "__key__" else v for k, v in s.items()})
    w.close()
    assert S.tar_bytes(samples) == ref.getvalue()
    path = tmp_path / "s.tar"
    S.write_shard(str(path), samples)
    assert path.read_bytes() == ref.getvalue() and len(ref.getvalue()) % tarfile.RECORDSIZE == 0
    keys = [x["__key__"] for x in wds.WebDataset(str(path), shardshuffle=False)]
    assert keys == [s["__key__"] for s in samples]


def test_training_decodes_old_shards_without_format_like_new_ones():
    new = _cluster()
    meta = json.loads(new["json"])
    meta.pop("format")
    old = {**new, "json": json.dumps(meta).encode()}  # a shard written before the format key
    cfg = DataConfig(image_size=16, max_context=3)
    a, b = decode_sample(old, cfg, random.Random(3)), decode_sample(new, cfg, random.Random(3))
    assert a["text"] == b["text"] and a["ctx_text"] == b["ctx_text"] and (a["image"] == b["image"]).all()
    assert all(t.startswith("[ref#") for t in a["ctx_text"])


def test_cluster_size_comes_from_the_data_and_unknown_formats_are_rejected():
    cfg = DataConfig(image_size=16, max_context=6)
    ex = decode_sample(_cluster(7), cfg, random.Random(0))
    assert int(ex["ctx_mask"].sum()) == 6  # seven members: target + six context slots, not range(5)
    bad = {**_cluster(), "json": json.dumps({"format": "iidata.other/9"}).encode()}
    with pytest.raises(RejectSample, match="unknown_sample_format"):
        decode_sample(bad, cfg, random.Random(0))

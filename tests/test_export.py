"""The img2dataset-layout export: open_clip's training loader reads it, mining's img2dataset reader
round-trips it, failures are counted rows, and the fixed-size option makes webdataset batching work."""

import hashlib
import io
import json
import tarfile
from types import SimpleNamespace

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from clustering import shards as cluster_shards
from core import contracts as schema
from core import storage
from datasets import shards as task_shards
from datasets.instruction import ContextItem, Sample
from mining.readers import img2dataset_output
from pipelines.export import ExportConfig, export, main, sample_key


def _jpeg(w, h, seed) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _png(w, h) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


def _mined(folder, n=7):
    """A mined kept/ folder: mixed aspect ratios, one PNG, one truncated image, two domains."""
    recs = []
    for i in range(n):
        data = _png(40, 70) if i == 1 else _jpeg(48 + 16 * (i % 3), 40 + 8 * i, i)
        if i == n - 1:
            data = data[: len(data) // 3]
        rec = schema.make_record(key=f"k{i}", url=f"https://example.com/{i}.jpg", caption=f"caption {i} é",
                                 image=data, source="t")
        rec.update(domain="photo" if i % 2 == 0 else "art", quality=0.1 * i)
        recs.append(rec)
    storage.write_parquet(recs, str(folder / "kept" / "kept-00000.parquet"))
    return recs


def test_mined_export_layout_accounting_and_reader_round_trip(tmp_path):
    recs = _mined(tmp_path / "mined")
    out = tmp_path / "export"
    summary = export(str(tmp_path / "mined"), str(out), ExportConfig(shard_size=4))
    assert summary["kind"] == "mined" and summary["accounted"]
    assert summary["read"] == 7 and summary["kept"] == 6 and sum(summary["rejected"].values()) == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "00000.parquet", "00000.tar", "00000_stats.json", "00001.parquet", "00001.tar", "00001_stats.json",
        "sizes.json", "summary.json"]
    assert json.loads((out / "sizes.json").read_text()) == {"00000.tar": 4, "00001.tar": 2}
    stats = json.loads((out / "00001_stats.json").read_text())
    assert stats["count"] == 3 and stats["successes"] == 2 and stats["failed_to_resize"] == 1
    with tarfile.open(out / "00000.tar") as tar:
        names = tar.getnames()
    assert names[:3] == [
        "000000.jpg",
        "000000.json",
        "000000.txt",
    ]  # img2dataset's key (4 per shard: 1 digit) and order
    # The failed row is listed in the parquet, not in the tar (img2dataset's convention).
    rows = storage.read_parquet(str(out / "00001.parquet")).to_pylist()
    assert [r["status"] for r in rows] == ["success", "success", "failed_to_resize"]
    # mining's img2dataset reader gives back the same keys, captions and image content.
    back = list(img2dataset_output.read_output(str(out)))
    assert [r["key"] for r in back] == [r["key"] for r in recs]
    assert [r["caption"] for r in back] == [r["caption"] for r in recs]
    assert back[-1]["image"] is None and back[-1]["read_error"].startswith("download_failed")
    assert back[0]["image"] == recs[0]["image"]  # JPEG bytes kept as they are with resize_mode no
    assert Image.open(io.BytesIO(back[1]["image"])).format == "JPEG"  # the PNG was re-encoded
    meta = json.loads(back[2]["source_meta"])
    assert (
        meta["domain"] == "photo"
        and meta["img2dataset"]["sha256"] == hashlib.sha256(back[2]["image"]).hexdigest()
    )


def test_layout_matches_img2dataset_own_writer(tmp_path):
    """Same member suffixes and every parquet column img2dataset's WebDatasetSampleWriter writes."""
    import pyarrow as pa
    from img2dataset.writer import WebDatasetSampleWriter

    schema_ = pa.schema(
        [
            ("url", pa.string()),
            ("caption", pa.string()),
            ("key", pa.string()),
            ("status", pa.string()),
            ("error_message", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("original_width", pa.int32()),
            ("original_height", pa.int32()),
            ("exif", pa.string()),
            ("sha256", pa.string()),
        ]
    )
    ref = tmp_path / "ref"
    ref.mkdir()
    w = WebDatasetSampleWriter(0, str(ref), True, 5, schema_, "jpg")
    w.write(
        _jpeg(32, 32, 0),
        "000000000",
        "a caption",
        {
            "url": "u",
            "caption": "a caption",
            "key": "000000000",
            "status": "success",
            "error_message": None,
            "width": 32,
            "height": 32,
            "original_width": 32,
            "original_height": 32,
            "exif": None,
            "sha256": None,
        },
    )
    w.close()
    _mined(tmp_path / "mined", n=2)
    export(str(tmp_path / "mined"), str(tmp_path / "ours"))
    with tarfile.open(ref / "00000.tar") as a, tarfile.open(tmp_path / "ours" / "00000.tar") as b:
        assert [n.split(".", 1) for n in a.getnames()] == [n.split(".", 1) for n in b.getnames()][:3]
    ref_cols = storage.read_parquet(str(ref / "00000.parquet")).column_names
    ours = storage.read_parquet(str(tmp_path / "ours" / "00000.parquet")).column_names
    assert set(ref_cols) <= set(ours)


def _open_clip_batches(urls: str, batch_size: int, is_train: bool, monkeypatch):
    """Batches from open_clip's own loader (``open_clip_train.data.get_wds_dataset``), or, when
    open_clip_train is not installed, its webdataset pipeline reproduced with the same keys
    (select jpg|png + txt, rename image=jpg;png;jpeg;webp, text=txt)."""
    import open_clip
    from torchvision import transforms

    preprocess = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(32), transforms.ToTensor()])
    tokenizer = open_clip.get_tokenizer("RN50")
    try:
        import open_clip_train.data as ocd
    except ImportError:
        pipeline = wds.DataPipeline(
            wds.SimpleShardList(urls), wds.tarfile_to_samples(),
            wds.select(lambda s: "txt" in s and any(k in s for k in ("png", "jpg", "jpeg", "webp"))),
            wds.decode("pilrgb"), wds.rename(image="jpg;png;jpeg;webp", text="txt"),
            wds.map_dict(image=preprocess, text=lambda t: tokenizer(t)[0]), wds.to_tuple("image", "text"),
            wds.batched(batch_size, partial=True))
        return list(pipeline)
    if is_train:
        # open_clip_train's train path breaks on webdataset >= 0.2.96 for ANY shards (its
        # group_by_keys_nothrow reads the new end-of-shard {} marker: KeyError 'fname';
        # open_clip#935, webdataset#384). The fix given there: eof_value=None.
        import functools

        monkeypatch.setattr(
            ocd, "tar_file_expander", functools.partial(ocd.tar_file_expander, eof_value=None)
        )
    args = SimpleNamespace(
        train_data=urls if is_train else None,
        val_data=None if is_train else urls,
        train_num_samples=None,
        val_num_samples=None,
        dataset_resampled=False,
        train_data_upsampling_factors=None,
        seed=0,
        batch_size=batch_size,
        workers=0,
        world_size=1,
    )
    return list(
        ocd.get_wds_dataset(args, preprocess, is_train=is_train, epoch=0, tokenizer=tokenizer).dataloader
    )


@pytest.mark.parametrize("is_train", [False, True])
def test_open_clip_loader_reads_the_export(tmp_path, monkeypatch, is_train):
    _mined(tmp_path / "mined")
    out = tmp_path / "export"
    export(str(tmp_path / "mined"), str(out), ExportConfig(shard_size=3))
    batches = _open_clip_batches(f"{out}/{{00000..00002}}.tar", 2, is_train, monkeypatch)
    # 6 kept images (the train path takes its sample count from sizes.json), tokenised captions.
    assert sum(b[0].shape[0] for b in batches) == 6
    assert tuple(batches[0][0].shape[1:]) == (3, 32, 32) and tuple(batches[0][1].shape) == (2, 77)


@pytest.mark.parametrize("mode", ["center_crop", "border"])
def test_fixed_size_option_makes_default_batching_work(tmp_path, mode):
    _mined(tmp_path / "mined")
    out = tmp_path / mode
    export(str(tmp_path / "mined"), str(out), ExportConfig(image_size=24, resize_mode=mode))
    ds = (
        wds.WebDataset(str(out / "00000.tar"), shardshuffle=False)
        .decode("torchrgb")
        .to_tuple("jpg", "txt")
        .batched(6)
    )
    images, texts = next(iter(ds))
    assert tuple(images.shape) == (6, 3, 24, 24) and texts[0] == "caption 0 é"
    rows = storage.read_parquet(str(out / "00000.parquet")).to_pylist()
    assert rows[2]["original_width"] == 48 + 16 * 2 and rows[2]["width"] == 24


def test_export_is_byte_reproducible_and_skips_finished_shards(tmp_path):
    _mined(tmp_path / "mined")
    a, b = tmp_path / "a", tmp_path / "b"
    export(
        str(tmp_path / "mined"), str(a), ExportConfig(shard_size=4, image_size=16, resize_mode="center_crop")
    )
    export(
        str(tmp_path / "mined"), str(b), ExportConfig(shard_size=4, image_size=16, resize_mode="center_crop")
    )
    for name in ("00000.tar", "00001.parquet", "00001_stats.json", "sizes.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    mtime = (a / "00000.tar").stat().st_mtime_ns
    export(
        str(tmp_path / "mined"), str(a), ExportConfig(shard_size=4, image_size=16, resize_mode="center_crop")
    )
    assert (a / "00000.tar").stat().st_mtime_ns == mtime


def test_filters_select_a_subset(tmp_path):
    _mined(tmp_path / "mined")
    s = export(
        str(tmp_path / "mined"), str(tmp_path / "o"), ExportConfig(domains=["photo"], min_quality=0.15)
    )
    assert (s["read"], s["kept"], s["filtered"]) == (7, 2, 4) and s["rejected"] == {"undecodable_image": 1}


def _cluster_shard(run):
    imgs = [_jpeg(30 + i, 30, i) for i in range(6)]
    c0 = {"cluster_id": "c0", "domain": "photo", "keys": ["a", "b", "c", "d", "e"], "urls": list("ABCDE"),
          "similarities": [1.0, 0.9, 0.8, 0.7, 0.6]}
    c1 = dict(c0, cluster_id="c1", keys=["f", "a", "b", "c", "d"], urls=list("FABCD"))
    s0 = cluster_shards.sample_files(c0, imgs[:5], [f"cap {k}" for k in c0["keys"]])
    s1 = cluster_shards.sample_files(c1, [imgs[5], *imgs[:4]], [f"cap {k}" for k in c1["keys"]])
    cluster_shards.write_shard(str(run / "clusters"), 0, [("c0", s0), ("c1", s1)])


def test_cluster_shards_carry_txt_and_export_each_member_once(tmp_path):
    _cluster_shard(tmp_path)
    raw = next(
        iter(wds.WebDataset(str(tmp_path / "clusters" / "shards" / "clusters-00000.tar"), shardshuffle=False))
    )
    assert raw["txt"] == b"cap a"  # the seed's caption
    s = export(str(tmp_path / "clusters"), str(tmp_path / "o"))
    assert s["kind"] == "clusters" and s["kept"] == 6 and s["filtered"] == 4 and s["accounted"]
    rows = storage.read_parquet(str(tmp_path / "o" / "00000.parquet")).to_pylist()
    assert [r["record_key"] for r in rows] == ["a", "b", "c", "d", "e", "f"]
    assert rows[5]["cluster_id"] == "c1" and rows[1]["similarity"] == 0.9


def _task_sample(i):
    ctx = ContextItem(
        marker="[ref#1]", text="[ref#1] edge map", kind="edge", key=f"s{i}", image=_png(20, 20), ext="png"
    )
    return Sample(task="control_edge" if i else "t2i", instruction="Generate a dog following [ref#1].",
                  target=_jpeg(40, 30, i), target_caption="a dog", target_key=f"t{i}", context=[ctx],
                  lineage=[f"t{i}", f"s{i}"], meta={"order": i})


def test_task_shards_carry_txt_and_export_with_context(tmp_path):
    samples = [_task_sample(i) for i in range(3)]
    shard = tmp_path / "tasks" / "shards" / "tasks-00000.tar"
    task_shards.write_shard(str(shard), samples)
    raw = next(iter(task_shards.iter_raw(str(shard))))
    assert raw["txt"] == samples[0].instruction.encode()
    assert next(iter(task_shards.iter_samples(str(shard)))).instruction == samples[0].instruction
    s = export(
        str(tmp_path),
        str(tmp_path / "o"),
        ExportConfig(kind="tasks", tasks=["control_edge"], with_context=True),
    )
    assert s["kept"] == 2 and s["filtered"] == 1
    got = list(wds.WebDataset(str(tmp_path / "o" / "00000.tar"), shardshuffle=False))
    assert {"jpg", "txt", "json", "ctx1.png"} <= set(got[0]) and json.loads(got[0]["json"])["meta"][
        "task"
    ] == "control_edge"


def test_cli_bad_input_is_one_line_and_nonzero(tmp_path, capsys):
    assert main(["--input", str(tmp_path / "nothing"), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert main(["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--resize-mode", "border"]) == 2


def test_sample_key_is_img2dataset_s():
    assert sample_key(0, 0, 10_000) == "000000000" and sample_key(3, 17, 10_000) == "000030017"
    assert sample_key(1, 5, 100) == "0000105"

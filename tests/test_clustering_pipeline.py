"""The Beam clustering stage end to end on a tiny mined folder: outputs, accounting, shards, rerun."""

import io
import json

import numpy as np
import pyarrow as pa
import webdataset as wds
from PIL import Image

from core import storage
from core.contracts import make_record, url_key


def _jpeg(seed, flip=False):
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize(
        (64, 64), Image.Resampling.BICUBIC
    )
    if flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_build_clusters_on_mined_folder(tmp_path):
    from pipelines.build_clusters import run

    rows = []
    for i in range(24):
        url = f"https://x.invalid/{i}.jpg"
        rows.append(
            dict(
                make_record(key=url_key(url), url=url, caption=f"pic {i}", image=_jpeg(i), source="demo"),
                domain="all",
                quality=0.5,
            )
        )
    flip_url = "https://x.invalid/flip.jpg"  # a mirrored copy of 3: phash duplicate
    rows.append(
        dict(
            make_record(
                key=url_key(flip_url), url=flip_url, caption="pic flip", image=_jpeg(3, True), source="demo"
            ),
            domain="all",
            quality=0.1,
        )
    )
    same_url = "https://x.invalid/5.jpg"  # the same bytes again: sha256 duplicate
    rows.append(dict(make_record(key=url_key(same_url, 1), url=same_url, caption="again", image=_jpeg(5),
                                 source="demo"), domain="all", quality=0.1))
    other_url = "https://x.invalid/flip7.jpg"  # a mirrored copy of 7 that mining put in another domain
    rows.append(
        dict(
            make_record(
                key=url_key(other_url),
                url=other_url,
                caption="pic 7 mirrored",
                image=_jpeg(7, True),
                source="demo",
            ),
            domain="products",
            quality=0.1,
        )
    )
    bad = dict(
        make_record(key="bad", url="bad", caption="broken", image=b"\xff\xd8\xffgarbage", source="demo"),
        domain="all",
        quality=0.5,
    )
    rows.append(bad)
    extra = pa.schema([("domain", pa.string()), ("quality", pa.float64())])
    from core.contracts import schema_for

    mined = tmp_path / "mined"
    storage.write_parquet(
        rows[:14], str(mined / "kept" / "part-00000.parquet"), schema=schema_for(rows, extra)
    )
    storage.write_parquet(
        rows[14:], str(mined / "kept" / "part-00001.parquet"), schema=schema_for(rows, extra)
    )
    out = tmp_path / "out"
    # noise images are unrelated to each other: without calibration (historical thresholds, no
    # member floor) they still form clusters, which this test needs for the shard checks
    s = run("", str(out), mined=str(mined), per_shard=8, calibration="none")
    assert s["calibration"].startswith("none") and "clusters_incoherent" in s
    assert s["read"] == 28 and s["accounted"]
    removed = s["duplicates_removed"]
    assert removed.get("sha256") == 1 and removed.get("phash", 0) + removed.get("cosine", 0) == 1
    assert (
        s["cross_domain_duplicates"] == 1
        and sum(v for k, v in removed.items() if k.startswith("cross_domain_")) == 1
    )
    assert sum(v for k, v in s["rejected"].items() if not k.startswith("duplicate_")) == 1
    clusters = storage.read_parquet(str(out / "clusters.parquet")).to_pylist()
    assert s["clusters_kept"] == len(clusters) > 0
    dups = {d["key"]: d for d in storage.read_parquet(str(out / "duplicates.parquet")).to_pylist()}
    assert dups[url_key(flip_url)]["duplicate_of"] == url_key("https://x.invalid/3.jpg")
    assert dups[url_key(other_url)]["duplicate_of"] == url_key("https://x.invalid/7.jpg")
    for c in clusters:
        assert len(c["keys"]) == 5 and not set(c["keys"]) & set(dups)
        assert isinstance(c["coherence"], float) and isinstance(c["coherent"], bool)
    # clip-retrieval layout: same row order in embeddings and metadata
    emb = np.load(out / "embeddings" / "img_emb" / "img_emb_0.npy")
    meta = storage.read_parquet(str(out / "embeddings" / "metadata" / "metadata_0.parquet")).to_pylist()
    assert emb.shape[0] == len(meta) and np.allclose(emb[0], meta[0]["embedding"], atol=1e-6)
    assert (out / "embeddings" / "text_emb" / "text_emb_0.npy").exists()
    samples = list(wds.WebDataset(sorted(str(p) for p in (out / "shards").glob("*.tar")), shardshuffle=False))
    assert len(samples) == len(clusters)
    j = json.loads(samples[0]["json"])
    assert j["keys"][0] in {c["keys"][0] for c in clusters} and len(j["captions"]) == 5
    assert all(samples[0][f"{i}.jpg"][:3] == b"\xff\xd8\xff" for i in range(5))
    before = (out / "clusters.parquet").read_bytes()
    s2 = run(
        "", str(out), mined=str(mined), per_shard=8, calibration="none"
    )  # rerun: embedding shards skipped, same output
    assert s2["clusters_kept"] == s["clusters_kept"] and (out / "clusters.parquet").read_bytes() == before
    # the Beam-free path calls the same functions: the same bytes
    from clustering.local import cluster_local
    from pipelines.build_clusters import make_config

    local = tmp_path / "local"
    s3 = cluster_local(str(mined), str(local), make_config(per_shard=8, calibration="none"))
    assert s3["config"] == s["config"] and s3["clusters_kept"] == s["clusters_kept"]
    names = ["clusters.parquet", "duplicates.parquet", "group_stats.json",
             *(str(p.relative_to(out)) for p in sorted((out / "shards").glob("*.tar"))),
             *(str(p.relative_to(out)) for p in sorted((out / "embeddings").rglob("*_*.*")))]
    assert len(names) > 8
    for name in names:
        assert (local / name).read_bytes() == (out / name).read_bytes(), name
    # tables.merge off (web scale): only the sorted parts, which every consumer reads as the table
    from core import tables
    from datasets.build import TaskInputs, exclude_duplicates, load_clusters

    parts = tmp_path / "parts"
    s4 = run("", str(parts), mined=str(mined), per_shard=8, calibration="none", merge=False, rows_per_shard=3)
    assert not (parts / "clusters.parquet").exists() and len(list((parts / "tables").glob("clusters-*"))) > 1
    assert s4["clusters_kept"] == s["clusters_kept"] and s4["duplicates_removed"] == s["duplicates_removed"]
    for name in ("clusters.parquet", "duplicates.parquet"):
        assert tables.read_table(str(parts / name)).equals(storage.read_parquet(str(out / name))), name
    where = TaskInputs(mined=str(mined), clusters=str(parts), clusters_given=True)
    assert load_clusters(where) == clusters and exclude_duplicates({}, where) == ({}, set())
    assert where.duplicates_table == str(parts / "duplicates.parquet")

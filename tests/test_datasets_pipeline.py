"""Task shards end to end on real COCO images and StyleDrop styles (cheap stand-in models injected),
plus the real models on one image each."""

import hashlib
import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from core import storage
from core.contracts import url_key
from datasets.real_inputs import write_inputs
from datasets.shards import iter_tensors, list_shards
from datasets.tasks.base import Tools
from tests.conftest import shared_subset


class GradEdges:
    """Stand-in HED: gradient magnitude (real edge structure, no network)."""

    def edges(self, rgb):
        g = np.asarray(rgb, np.float32).mean(-1)
        gy, gx = np.gradient(g)
        return np.clip(np.hypot(gx, gy) / 64.0, 0, 1).astype(np.float32)


class CenterMask:
    def mask(self, rgb):
        h, w = np.asarray(rgb).shape[:2]
        m = np.zeros((h, w), np.uint8)
        m[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
        return m


class InvertStyle:
    def transfer(self, content, style):
        return Image.eval(content.convert("RGB"), lambda v: 255 - v)


def thin(e):
    return (e > 0.3).astype(np.float32)


def always_good(img):
    return 0.9


def stand_in_tools():
    return Tools(hed=GradEdges(), sketch=thin, masker=CenterMask(), style=InvertStyle(), quality=always_good,
                 max_side=160)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    coco = shared_subset("coco_mini")
    styledrop = shared_subset("styledrop")
    root = tmp_path_factory.mktemp("tasks_in")
    write_inputs(str(coco), str(root / "in"), n=60)
    styles = root / "styles"
    styles.mkdir()
    for name in sorted(os.listdir(styledrop / "images"))[:3]:
        img = Image.open(styledrop / "images" / name)
        img.thumbnail((200, 200))
        img.convert("RGB").save(styles / name)
    # one broken row: bytes that are no image must become a reject, not a crash
    table = storage.read_parquet(str(root / "in" / "mined" / "kept")).to_pylist()
    table[0]["image"] = b"not an image"
    storage.write_parquet(table, str(root / "in" / "mined" / "kept" / "part-00000.parquet"),
                          storage.read_parquet(str(root / "in" / "mined" / "kept")).schema)
    return root


def _run(inputs, out, **kw):
    from pipelines.build_tasks import run

    opts = dict(
        style_dir=str(inputs / "styles"),
        seed=0,
        shard_size=8,
        max_samples=40,
        tools=stand_in_tools(),
        mixture=None,
        max_side=160,
    )
    opts.update(kw)
    return run(str(inputs / "in"), str(out), **opts)


def test_build_reads_back_with_lineage_and_accounting(inputs, tmp_path):
    summary = _run(inputs, tmp_path / "a", mixture=None)
    assert summary["read"] == summary["kept"] + sum(summary["rejected"].values()) == 60
    assert set(summary["samples"]) >= {"t2i", "control_edge", "control_sketch", "control_mask", "subject",
                                      "styled", "style_transfer"}
    assert "control_depth" not in summary["samples"]
    rows = {r["key"] for r in storage.iter_rows(str(inputs / "in" / "mined" / "kept"), columns=["key"])}
    style_keys = {url_key(n) for n in os.listdir(inputs / "styles")}  # keyed by the path inside the folder
    n = 0
    for s in iter_tensors(list_shards(str(tmp_path / "a" / "shards"))):
        doc = s["json"]
        assert s["target.jpg"].ndim == 3 and s["target.jpg"].shape[0] == 3
        for k, c in enumerate(doc["context"], start=1):
            img = s[f"ctx{k}.{c['ext']}"]
            assert img.shape[0] == 3 and c["marker"] == f"[ref#{k}]" and c["marker"] in doc["instruction"]
        assert set(doc["lineage"]) <= rows | style_keys and doc["target_key"] in rows
        assert {c["key"] for c in doc["context"]} <= set(doc["lineage"])
        n += 1
    assert n == sum(summary["samples"].values())
    card = (tmp_path / "a" / "card.md").read_text()
    assert "control_depth" in card and "never faked" in card


def test_same_seed_same_bytes_and_rerun_skips(inputs, tmp_path):
    s1 = _run(inputs, tmp_path / "a")
    s2 = _run(inputs, tmp_path / "b")
    def digest(d):
        return [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in list_shards(str(d / "shards"))]

    assert digest(tmp_path / "a") == digest(tmp_path / "b") and s1["samples"] == s2["samples"]
    again = _run(inputs, tmp_path / "a")
    assert again["shards"]["skipped_existing"] == again["shards"]["total"] > 0
    assert again["samples"] == s1["samples"]
    _run(inputs, tmp_path / "c", seed=1)
    assert digest(tmp_path / "c") != digest(tmp_path / "a")
    shutil.rmtree(tmp_path / "c")


def test_bad_image_is_a_counted_reject(inputs, tmp_path):
    summary = _run(inputs, tmp_path / "a", max_samples=None, tasks=["t2i"])
    # every captioned row is a t2i candidate, so the broken row is planned and fails
    assert summary["samples"]["t2i"] == 59
    assert summary["sample_rejects"]["t2i"] == {"undecodable_image": 1}
    assert summary["rejected"] == {"synthesis_failed": 1}
    rej = storage.read_parquet(str(tmp_path / "a" / "rejects")).to_pylist()
    assert [r["reason"] for r in rej] == ["undecodable_image"] and rej[0]["stage"] == "tasks"


def test_real_models_on_one_image(inputs):
    """Real HED, sketch, saliency mask, Magenta style transfer and MiniLM token embeddings."""
    pytest.importorskip("datasets.control.hed")
    from datasets.style import ArbitraryStyleTransfer
    from datasets.tasks import REGISTRY
    from datasets.tasks.base import Job
    from datasets.text_embed import TokenEmbedder

    row = next(storage.iter_rows(str(inputs / "in" / "mined" / "kept")))
    row = next(r for r in storage.iter_rows(str(inputs / "in" / "mined" / "kept")) if r["key"] != row["key"])
    style_path = sorted(os.listdir(inputs / "styles"))[0]
    images = {row["key"]: row["image"], "s": (inputs / "styles" / style_path).read_bytes()}
    tools = Tools(style=ArbitraryStyleTransfer(), quality=always_good, max_side=192)
    vals = {"caption": row["caption"], "style": "watercolor"}
    for task in ("control_edge", "control_sketch", "control_mask"):
        s = REGISTRY[task].make(Job(task, row["key"], values=vals), images, tools, 0)
        edge = np.asarray(Image.open(io.BytesIO(s.context[0].image)))
        assert edge.ndim == 2 and 0 < (edge > 127).mean() < 0.9
    st = REGISTRY["style_transfer"].make(
        Job("style_transfer", row["key"], ["s", row["key"]], vals, "s"), images, tools, 0
    )
    out = np.asarray(Image.open(io.BytesIO(st.target)), np.float32)
    src = np.asarray(Image.open(io.BytesIO(st.context[1].image)), np.float32)
    assert out.shape == src.shape and np.abs(out - src).mean() > 5  # it really restyled the content
    TokenEmbedder().embed(st)
    assert st.embeddings["instruction"].shape[1] == 384 and len(st.embeddings) == 3


def test_style_keys_do_not_depend_on_where_the_folder_is(tmp_path):
    from PIL import Image

    from datasets.build import load_styles

    for d in ("a", "b/deeper"):
        (tmp_path / d / "styles" / "sub").mkdir(parents=True)
        Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / d / "styles" / "sub" / "red ink.png")
    (a, da), (b, db) = (load_styles(str(tmp_path / d / "styles")) for d in ("a", "b/deeper"))
    assert [s["key"] for s in a] == [s["key"] for s in b] == [url_key(os.path.join("sub", "red ink.png"))]
    assert da == db and a[0]["style"] == b[0]["style"]

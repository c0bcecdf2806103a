"""Offline image-text matching (mining.itm): training, weights format, domains, alignment, text queries.

Fast, tiny synthetic data; one check of the shipped weights with the real feature models."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from core.vectors import l2_normalize
from mining.itm.align import Aligner
from mining.itm.model import DEFAULT_WEIGHTS, Projection, recall_at
from mining.itm.train import FitConfig, fit, random_recall, retrieval


def _toy(n=48, seed=0):
    """Images whose features are a fixed random linear function of their caption vectors, plus noise."""
    rng = np.random.default_rng(seed)
    topic = l2_normalize(rng.normal(size=(n, 16)))
    txt = l2_normalize(topic[:, None, :] + 0.3 * rng.normal(size=(n, 5, 16)))
    img = l2_normalize(topic @ rng.normal(size=(16, 40)) + 0.3 * rng.normal(size=(n, 40)))
    return img.astype(np.float32), txt.astype(np.float32)


def test_recall_at_counts_hits_in_top_k():
    sim = np.array([[0.9, 0.1, 0.0], [0.2, 0.1, 0.8], [0.5, 0.6, 0.4]])
    r = recall_at(sim, [{0}, {1}, {2}], ks=(1, 2, 3))
    assert r == {1: 1 / 3, 2: 1 / 3, 3: 1.0}
    assert random_recall(100, 5, 5)["t2i"] == 0.05 and 0.0 < random_recall(100)["i2t"] < 0.06


def test_fit_learns_held_out_pairs_far_above_random():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only contend
    try:
        _fit_check()
    finally:
        torch.set_num_threads(threads)


def _fit_check():
    img, txt = _toy(96)
    tr, va, te = (img[:48], txt[:48]), (img[48:72], txt[48:72]), (img[72:], txt[72:])
    proj, info = fit(*tr, FitConfig(steps=20, lr=1e-2), va)
    r = retrieval(proj, *te)
    assert r["i2t_r5"] > 3 * random_recall(24)["i2t"] and r["t2i_r5"] > 3 * random_recall(24)["t2i"]
    assert info["step"] % 10 == 0 and info["val"]["pool"] == 24


def test_weights_round_trip_without_pickle(tmp_path):
    rng = np.random.default_rng(1)
    p = Projection(rng.normal(size=(40, 16)), rng.normal(size=16), 0.01 * rng.normal(size=(16, 16)), 20.0)
    p.save(tmp_path / "w.npz", {"command": "x"})
    q = Projection.load(tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz", allow_pickle=False) as z:
        assert z["image_w"].dtype == np.float16 and z["text_a"].dtype == np.float16
    x = l2_normalize(rng.normal(size=(3, 40)))
    assert np.allclose(p.image(x), q.image(x), atol=2e-2) and q.meta == {"command": "x"}
    assert np.allclose(np.linalg.norm(q.text(rng.normal(size=(2, 16))), axis=1), 1, atol=1e-5)


def test_shipped_weights_are_small_and_documented():
    assert DEFAULT_WEIGHTS.stat().st_size < 2_000_000
    p = Projection.load()
    assert p.image_w.shape == (1280, 384) and p.logit_scale > 1
    assert p.meta["command"] == "python -m mining.itm.train" and p.meta["val"]["pool"] > 100


class FakeSpace:
    """A 3-d "shared space": words map to axes, images are (colour name, vector) tuples."""

    name, logit_scale = "fake", 20.0
    AXES = {"animal": 0, "dog": 0, "food": 1, "pizza": 1, "car": 2}

    def embed_texts(self, texts):
        out = np.full((len(texts), 3), 0.05, np.float32)
        for i, t in enumerate(texts):
            for w, ax in self.AXES.items():
                if w in t:
                    out[i, ax] += 1
        return l2_normalize(out)

    def embed_images(self, images):
        return l2_normalize(
            np.array([im[1] if isinstance(im, tuple) else [0.3, 0.3, 0.3] for im in images], np.float32)
        )

    def embed_image_features(self, feats):
        return l2_normalize(feats)


def test_space_domain_classifier_matches_images_and_captions_to_prompts(monkeypatch):
    import mining.domains as d

    monkeypatch.setitem(d.DOMAIN_DESCRIPTIONS, "animals", ("an animal",))
    monkeypatch.setitem(d.DOMAIN_DESCRIPTIONS, "food", ("food",))
    monkeypatch.setitem(d.DOMAIN_DESCRIPTIONS, "vehicles", ("a car",))
    clf = d.SpaceDomainClassifier(("animals", "food", "vehicles"), FakeSpace(), text_weight=0.5)
    p = clf.probs([("x", [1, 0, 0]), ("y", [0, 0, 1])], ["a dog", "a car"])
    assert p.shape == (2, 3) and np.allclose(p.sum(1), 1) and list(p.argmax(1)) == [0, 2]
    # image and caption disagree: the text weight decides
    img_only = d.SpaceDomainClassifier(clf.domains, FakeSpace(), text_weight=0.0)
    assert img_only.probs([("x", [0, 1, 0])], ["a dog"]).argmax() == 1
    assert clf.probs([], []).shape == (0, 3)


def test_make_classifier_backends(monkeypatch):
    import mining.domains as d
    from mining.config import MiningConfig

    monkeypatch.setattr(d, "ItmDomainClassifier", lambda domains, weights=None: ("itm", weights))
    monkeypatch.setattr(d, "OfflineDomainClassifier", lambda domains: ("imagenet",))
    assert d.make_classifier(MiningConfig()) == ("imagenet",)  # the default stays the more accurate map
    assert d.make_classifier(MiningConfig(extra={"domain_backend": "itm"}))[0] == "itm"
    with pytest.raises(ValueError, match="domain_backend"):
        d.make_classifier(MiningConfig(extra={"domain_backend": "nope"}))


def test_aligner_rules_are_relative_to_the_bank_and_the_content():
    al = Aligner(FakeSpace(), min_caption_rank=0.5, bank=["a photo", "a car", "a thing", "a house"],
                 styled_min_caption_rank=0.5)
    ok, bad = al.caption_scores([("d", [1, 0, 0]), ("d", [1, 0, 0])], ["a dog", "a car"])
    assert ok["itm_ok"] and ok["itm_rank"] == 1.0 and not bad["itm_ok"] and ok["itm_score"] > bad["itm_score"]
    style, content = ("s", [0, 0.2, 1]), ("c", [1, 0, 0])
    good = al.styled(("t", [1, 0, 0.6]), style, content, "a dog")
    assert good.reason is None and good.style_gain > 0
    assert al.styled(("t", [1, 0, 0]), style, content, "a dog").reason == "style_misaligned"
    assert al.styled(("t", [0, 0.2, 1]), style, content, "a dog").reason == "caption_misaligned"


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, "PNG")
    return buf.getvalue()


class PixelSpace(FakeSpace):
    def embed_images(self, images):
        return l2_normalize(np.array([np.asarray(im, np.float32).mean((0, 1)) + 1 for im in images]))

    def embed_texts(self, texts):
        return l2_normalize(
            np.array([[1.0, 0.1, 0.1] if "red" in t else [0.1, 0.1, 1.0] for t in texts], np.float32)
        )


class TintStyle:
    def __init__(self, mix):
        self.mix = mix

    def transfer(self, content, style):
        return Image.blend(content.convert("RGB"), style.convert("RGB").resize(content.size), self.mix)


def test_styled_task_rejects_misaligned_samples_with_a_reason():
    from datasets.tasks import styled
    from datasets.tasks.base import Job, TaskSkip, Tools

    images = {"c": _png((250, 10, 10)), "s": _png((10, 10, 250))}
    job = Job("styled", "c", ["s"], values={"caption": "a red square", "style": "blue"}, style_key="s")
    aligner = Aligner(
        PixelSpace(), bank=["blue sky", "the sea", "a blue car", "a cat"], styled_min_caption_rank=0.5
    )
    tools = Tools(style=TintStyle(0.3), quality=lambda im: 0.9, max_side=32)
    tools.aligner = aligner
    sample = styled.make(job, images, tools, 0)
    assert sample.meta["style_gain"] > 0 and sample.meta["caption_rank"] == 1.0
    tools = Tools(style=TintStyle(0.95), quality=lambda im: 0.9, max_side=32)  # content lost: blue everywhere
    tools.aligner = aligner
    with pytest.raises(TaskSkip) as e:
        styled.make(job, images, tools, 0)
    assert e.value.reason == "caption_misaligned"
    tools.aligner = None  # without an aligner the old behaviour stays
    assert styled.make(job, images, tools, 0).meta.get("style_gain") is None


def _embeddings(root, spec="offline"):
    from clustering.embeddings_io import npy_bytes
    from core import storage

    vecs = [np.array([[1, 0, 0], [0, 1, 0]], np.float32), np.array([[0, 0, 1], [0.7, 0.7, 0]], np.float32)]
    for i, v in enumerate(vecs):
        storage.atomic_write_bytes(str(root / "embeddings" / "img_emb" / f"img_emb_{i}.npy"), npy_bytes(v))
        storage.write_parquet(
            [{"key": f"k{i}{j}", "caption": f"c{i}{j}", "url": f"u{i}{j}"} for j in range(2)],
            str(root / "embeddings" / "metadata" / f"metadata_{i}.parquet"),
        )
    (root / "summary.json").write_text(json.dumps({"config": {"embedding": {"embedder": spec}}}))


def test_text_query_over_clustering_embeddings(tmp_path):
    from clustering import query

    _embeddings(tmp_path)
    vecs, rows, spec = query.load_embeddings(str(tmp_path))
    assert (
        vecs.shape == (4, 3)
        and [r["key"] for r in rows] == ["k00", "k01", "k10", "k11"]
        and spec == "offline"
    )
    hits = query.search(vecs, rows, "pizza", FakeSpace(), spec, k=2)
    assert [h["key"] for h in hits] == ["k01", "k11"] and hits[0]["cosine"] > hits[1]["cosine"]
    assert query.load_embeddings(str(tmp_path / "embeddings"))[2] == "offline"


def test_text_query_cli_fails_in_one_line(tmp_path, capsys):
    from clustering import query

    assert query.main(["--embeddings", str(tmp_path / "missing"), "--text", "a dog"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no embedding shards")
    _embeddings(tmp_path, spec="offline-gem")
    assert query.main(["--embeddings", str(tmp_path), "--text", "a dog"]) == 2
    assert "pass --space" in capsys.readouterr().err

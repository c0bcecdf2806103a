"""The embedded demo corpus: determinism, counts, truth consistent with the files, separability."""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.contracts import OccurrenceKeys
from mining.demo_corpus import generate, main, role_counts

N = 60


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _pairs(folder: Path) -> list[dict[str, bytes | str]]:
    """pairs.csv with captions kept as the raw bytes on disk."""
    text = (folder / "pairs.csv").read_bytes().decode("utf-8", "surrogateescape")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    for r in rows:
        r["caption"] = r["caption"].encode("utf-8", "surrogateescape")
    return rows


def _truth(folder: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((folder / "truth.csv").read_text(), newline="")))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "c"
    return out, generate(str(out), n=N, seed=0, progress=False)


def test_role_counts_default_mix():
    c = role_counts(1000)
    totals = {role: sum(v.values()) for role, v in c.items()}
    assert totals == {"original": 772, "near_duplicate": 100, "low_quality": 80, "broken": 48}
    assert set(c["broken"]) == {"truncated", "zero_bytes", "empty_caption", "non_utf8_caption"}
    assert all(v == 12 for v in c["broken"].values())


def test_same_seed_same_bytes_other_seed_differs(corpus, tmp_path):
    out, _ = corpus
    again = tmp_path / "again"
    generate(str(again), n=N, seed=0, progress=False)
    assert _digest(out) == _digest(again)
    other = tmp_path / "other"
    generate(str(other), n=N, seed=1, progress=False)
    d0, d1 = _digest(out), _digest(other)
    assert d0["pairs.csv"] != d1["pairs.csv"]
    assert sum(d0.get(k) == v for k, v in d1.items() if k.startswith("images/")) < 5


def test_counts_match_summary_and_groups_have_views(corpus):
    out, summary = corpus
    truth, pairs = _truth(out), _pairs(out)
    assert len(truth) == len(pairs) == summary["rows"] == N
    assert dict(Counter(t["role"] for t in truth)) == {k: v for k, v in summary["roles"].items() if v}
    assert dict(Counter(t["degradation"] for t in truth if t["degradation"])) == {
        k: v for k, v in summary["degradations"].items() if v}
    views = Counter(t["group"] for t in truth if t["role"] == "original")
    assert len(views) == summary["groups"] and min(views.values()) >= 8
    assert [t["path"] for t in truth] == [p["path"] for p in pairs]
    assert [t["url"] for t in truth] == [p["url"] for p in pairs]


def test_truth_consistent_with_files(corpus):
    out, _ = corpus
    truth, pairs = _truth(out), _pairs(out)
    keys = OccurrenceKeys()
    expected_keys = [keys(p["url"]) for p in pairs]
    assert [t["key"] for t in truth] == expected_keys and len(set(expected_keys)) == N
    by_row = {int(t["row"]): t for t in truth}
    for t, p in zip(truth, pairs):
        data = (out / t["path"]).read_bytes()
        deg = t["degradation"]
        if deg == "truncated":
            with pytest.raises(OSError):
                with Image.open(io.BytesIO(data)) as im:
                    im.load()
        elif deg == "zero_bytes":
            assert data == b""
        else:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                size = im.size
            if deg == "tiny":
                assert max(size) == 48
        if deg == "empty_caption":
            assert p["caption"] == b""
        elif deg == "non_utf8_caption":
            with pytest.raises(UnicodeDecodeError):
                p["caption"].decode("utf-8")
        else:
            assert p["caption"].decode("utf-8").strip()
        if t["role"] in ("near_duplicate", "low_quality"):
            src = by_row[int(t["duplicate_of"])]
            assert src["role"] == "original" and src["group"] == t["group"]
            assert t["duplicate_of_path"] == src["path"] and t["duplicate_of_key"] == src["key"]
            assert int(t["duplicate_of"]) < int(t["row"]) or deg != "same_url"
            assert (t["url"] == src["url"]) == (deg == "same_url")
            if deg != "same_url":
                assert data != (out / src["path"]).read_bytes()
        else:
            assert t["duplicate_of"] == "" and t["duplicate_of_key"] == ""
    assert any(t["path"].endswith(".png") for t in truth) or N < 100


def test_rerun_is_skipped_and_cli(corpus, tmp_path):
    out, _ = corpus
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = generate(str(out), n=N, seed=0, progress=False)
    assert again["skipped"] and again["rows"] == N
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(["--output", str(tmp_path / "cli"), "--n", "24", "--seed", "3", "--quiet"]) == 0
    assert len(_truth(tmp_path / "cli")) == 24


def test_groups_recoverable_by_imagenet_embedding(tmp_path):
    """Small-scale version of bench/corpus_separability.py (the full run is n=1000)."""
    torch = pytest.importorskip("torch")
    from bench.corpus_separability import embed, load_model, purity_at_k

    torch.set_num_threads(2)
    out = tmp_path / "c"
    generate(str(out), n=80, seed=0, progress=False)
    truth = _truth(out)
    orig = [t for t in truth if t["role"] == "original"]
    model = load_model()
    emb = embed(model, [Image.open(out / t["path"]) for t in orig], batch=32)
    assert purity_at_k(emb, np.array([int(t["group"]) for t in orig]), 4) >= 0.95
    near = [t for t in truth if t["role"] == "near_duplicate"]
    e = embed(model, [Image.open(out / t["path"]) for t in near], batch=32)
    index = {t["row"]: i for i, t in enumerate(orig)}
    nearest = (e @ emb.T).argmax(1)
    assert [int(i) for i in nearest] == [index[t["duplicate_of"]] for t in near]

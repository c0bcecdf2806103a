"""Near-duplicate detection quality: aligned-thumbnail copy verification, and real COCO images + variants."""

import io
import os

import numpy as np
from PIL import Image

from clustering.build import ClusterConfig, cluster_group
from clustering.copy_features import aligned_match, aligned_similarity, layout_neighbours, thumbnail
from clustering.dedup import CopyScores, DedupConfig
from clustering.scoring import read_truth, score
from clustering.variants import KINDS, build_corpus, make_variant
from tests.conftest import shared_subset


def _photo(seed: int, size=(240, 180)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).resize(
        size, Image.Resampling.BICUBIC
    )


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _thumb(data: bytes) -> bytes:
    return thumbnail(Image.open(io.BytesIO(data)).convert("RGB"))


def test_copy_similarity_survives_every_variant_kind_but_separates_images():
    rng = np.random.default_rng(0)
    originals = [_jpeg(_photo(s)) for s in range(6)]
    for data in originals:
        for kind in KINDS:
            assert aligned_similarity(_thumb(data), _thumb(make_variant(data, kind, rng))) >= 0.9, kind
    thumbs = [_thumb(d) for d in originals]
    other = [aligned_similarity(thumbs[i], thumbs[j]) for i in range(6) for j in range(i + 1, 6)]
    assert max(other) < 0.8
    # a strong crop (30% off one side) is outside the searched range: not a copy
    im = Image.open(io.BytesIO(originals[0]))
    assert aligned_similarity(thumbs[0], _thumb(_jpeg(im.crop((72, 0, 240, 180))))) < 0.9


def _striped(stripe, body, background, size=(240, 180)) -> Image.Image:
    """A flat render: background, an ellipse body and a horizontal stripe."""
    from PIL import ImageDraw

    im = Image.new("RGB", size, background)
    d = ImageDraw.Draw(im)
    d.ellipse((60, 20, 180, 160), fill=body)
    d.rectangle((50, 80, 190, 100), fill=stripe)
    return im


def test_recoloured_render_is_not_a_copy_but_a_colour_shift_is():
    original = _jpeg(_striped((240, 140, 30), (70, 90, 110), (235, 235, 235)))
    recoloured = _jpeg(
        _striped((240, 140, 30), (150, 110, 120), (235, 235, 235))
    )  # same design, another body colour
    shifted = make_variant(original, "colorshift", np.random.default_rng(3))
    t = [_thumb(d) for d in (original, recoloured, shifted)]
    score_r, colour_r, _ = aligned_match(t[0], t[1])
    score_s, colour_s, residual_s = aligned_match(t[0], t[2])
    assert (
        score_s >= 0.985 and colour_s <= 0.2 and residual_s <= 5.0
    )  # a gain/offset colour shift stays a copy
    assert colour_r > 0.2  # the body's channels change unevenly
    copies = CopyScores(t, threshold=min(score_r, 0.985), max_colour_change=0.2)
    assert copies.match(0, 2) and not copies.match(0, 1)
    assert CopyScores(t, threshold=min(score_r, 0.985)).match(0, 1)  # without the colour rule it would be one


def test_layout_neighbours_find_mirrored_copies():
    data = [_jpeg(_photo(s)) for s in range(8)]
    flipped = _jpeg(Image.open(io.BytesIO(data[3])).transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    nb = layout_neighbours([_thumb(d) for d in data + [flipped]], 2)
    assert 3 in nb[8] and 8 in nb[3]


def _points_from_corpus(corpus: dict) -> list[dict]:
    from clustering.embedders import make_embedder
    from core.contracts import url_key

    rows = read_truth(corpus["pairs"])
    images = [Image.open(r["path"]).convert("RGB") for r in rows]
    emb = make_embedder("offline", batch_size=32).embed_images(images)
    return [
        {"key": url_key(r["url"]), "url": r["url"], "embedding": e, "quality": 0.5, "thumb": thumbnail(im)}
        for r, im, e in zip(rows, images, emb)
    ]


def test_coco_variants_every_copy_detected_no_false_merge(tmp_path):
    root = shared_subset("coco_mini")
    with open(root / "metadata.csv", encoding="utf-8") as fh:
        files = [line.split(",", 1)[0] for line in fh.read().splitlines()[1:41]]
    items = [(os.path.join(root, f), "a photo") for f in files]
    corpus = build_corpus(items, str(tmp_path), fraction=1.0, seed=0)  # one variant per image, kinds cycle
    truth = read_truth(corpus["truth"])
    points = _points_from_corpus(corpus)
    clusters, dups, _ = cluster_group(points, "all", ClusterConfig())
    res = score(clusters, dups, truth, {p["key"] for p in points})
    assert res["planted_pairs"] == 40 and res["recall_by_kind"] == {k: "8/8" for k in sorted(KINDS)}
    assert res["recall"] == 1.0 and res["precision"] == 1.0, res
    assert res["clusters_with_planted_dups"] == 0
    # the previous rule (semantic cosine + pHash only) misses crops: the copy signal is what finds them
    off, off_dups, _ = cluster_group(points, "all", ClusterConfig(dedup=DedupConfig(use_copy=False)))
    assert score(off, off_dups, truth, {p["key"] for p in points})["recall"] < 1.0


def test_cosine_rule_needs_a_copy_below_cos_alone():
    from clustering.dedup import neighbour_duplicates

    a, b = _jpeg(_photo(1)), _jpeg(_photo(2))  # b: another image the embedding finds as close as a copy
    c = make_variant(a, "reencode", np.random.default_rng(0))
    thumbs = [_thumb(d) for d in (a, b, c)]
    idx = np.array([[1, 2], [0, 2], [0, 1]])

    def dups(cos_ab: float, cfg: DedupConfig) -> list[int]:
        sims = np.array([[cos_ab, 0.975], [cos_ab, 0.9], [0.975, 0.9]], dtype=np.float32)
        copies = CopyScores(thumbs, cfg.copy_threshold, cfg.copy_gate, cfg.copy_max_colour_change,
                            cfg.copy_max_residual)
        dup_of, reason, _ = neighbour_duplicates(np.arange(3), sims, idx, cfg, None, None, None, copies)
        assert reason[2] == 1 and dup_of[2] == 0  # the copy goes by the cosine rule
        return dup_of.tolist()

    assert dups(0.975, DedupConfig()) == [-1, -1, 0]  # another image: kept although cosine >= 0.97
    assert dups(0.975, DedupConfig(cos_min_copy=-1)) == [-1, 0, 0]  # plain SemDeDup removes it
    assert dups(0.99, DedupConfig()) == [-1, 0, 0]  # at cos_alone the cosine alone decides


def test_affine_residual_ignores_colour_shifts_and_sees_local_changes():
    from clustering.copy_features import affine_residual

    view = np.random.default_rng(0).uniform(0, 255, (16, 16, 3)).astype(np.float32)
    assert affine_residual(view, view * np.array([1.05, 0.95, 1.0], np.float32) + 3) < 1e-3
    redrawn = view.copy()
    redrawn[4:8, 4:12, 0] += 80  # one part recoloured
    assert affine_residual(view, redrawn) > 1.0
    data = _jpeg(_photo(5))
    thumbs = [_thumb(data), _thumb(make_variant(data, "crop", np.random.default_rng(0)))]
    residual = aligned_match(*thumbs).residual
    assert 0 < residual <= 5.0
    assert CopyScores(thumbs, 0.9, max_residual=5.0).match(0, 1)
    assert not CopyScores(thumbs, 0.9, max_residual=residual / 2).match(0, 1)

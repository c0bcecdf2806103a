"""Face-identity part of the offline embedder (clustering/face_identity.py) on real CelebA photos."""

import csv

import numpy as np
import pytest
from PIL import Image

from tests.conftest import shared_subset


def _celeba(n_people: int = 4):
    root = shared_subset("celeba_faces")
    by_id: dict[str, list[str]] = {}
    for r in csv.DictReader(open(root / "metadata.csv")):
        by_id.setdefault(r["identity"], []).append(str(root / r["file"]))
    people = sorted(by_id)[:n_people]
    return [(p, Image.open(f).convert("RGB")) for p in people for f in by_id[p]]


def test_one_persons_photos_are_nearer_than_other_peoples():
    from clustering.face_identity import FaceIdentity

    rows = _celeba()
    v, found = FaceIdentity().describe([im for _, im in rows])
    assert found.mean() >= 0.6  # dlib's frontal HOG detector: ~79% of CelebA photos
    np.testing.assert_allclose(np.linalg.norm(v[found], axis=1), 1, atol=1e-5)
    assert not v[~found].any()
    labels = np.array([p for p, _ in rows])[found]
    s = v[found] @ v[found].T
    same = (labels[:, None] == labels[None]) & ~np.eye(len(labels), dtype=bool)
    diff = labels[:, None] != labels[None]
    assert np.median(s[same]) > np.quantile(s[diff], 0.95)


def test_scenes_and_small_faces_get_no_face_part():
    from clustering.face_identity import FaceIdentity

    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    _, face = _celeba(1)[0]
    canvas = Image.new("RGB", (1600, 1200), (90, 120, 90))
    canvas.paste(face.resize((89, 109)), (700, 500))  # a face under a quarter of the short side
    fi = FaceIdentity()
    v, found = fi.describe([noise, canvas, face])
    assert found.tolist() == [False, False, True] and not v[:2].any()
    assert fi.dominant_box(face) is not None
    strip = Image.new("RGB", (20_000, 2), (128, 128, 128))  # detection size stays bounded
    assert fi.describe([strip])[1].tolist() == [False]


def test_combine_keeps_non_face_cosines_and_weights_the_face_part():
    from clustering.face_identity import combine

    rng = np.random.default_rng(1)
    t = rng.normal(size=(3, 16)).astype(np.float32)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    f = np.zeros((3, 4), np.float32)
    f[1, 0] = f[2, 0] = 1.0
    x = combine(t, f, 2.0)
    assert np.isclose(x[0, :16] @ x[0, :16], 1.0) and not x[0, 16:].any()
    assert np.isclose(x[1] @ x[2], (t[1] @ t[2] + 4.0) / 5.0, atol=1e-6)


def test_missing_face_packages_name_the_install(monkeypatch):
    import clustering.face_identity as fi
    import core.model_packages as mp
    from clustering.face_identity import FaceIdentity

    monkeypatch.setattr(fi, "_MODELS", [])  # as in a fresh process
    real = mp.find_spec
    monkeypatch.setattr(
        mp, "find_spec", lambda name: None if name == "face_recognition_models" else real(name)
    )
    with pytest.raises(mp.MissingModelPackage, match="face_recognition_models.*--no-faces"):
        FaceIdentity().describe([Image.new("RGB", (64, 64))])

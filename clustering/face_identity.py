"""Face-identity descriptors for photos whose subject is a person's face.

The EfficientNet-Lite0 trunk, however it is pooled, hardly tells two people apart: on CelebA the
4 nearest photos of a face are the same person 17-26% of the time (``docs/clustering.md``). The
clustering stage's subject clusters need other photos of the same person, so photos with a
*dominant* face get a second descriptor: dlib's ResNet face-recognition network (128-d, weights
from the ``face_recognition_models`` package, CC0), on the 5-landmark aligned chip of the largest
face found by dlib's HOG detector.

* **Dominant**: the face box is at least ``min_side`` of the image's short side. Faces in a crowd
  or a street scene are left alone; such photos are about their scene, not one person.
* The detector runs on a greyscale copy whose short side is ``DETECT_SIDE`` px (about 20 ms a
  photo here), so its cost does not grow with the photo; the descriptor (about 0.1 s) runs only
  for photos that have a dominant face.
* **Centred**: raw dlib descriptors of any two faces sit at cosine 0.83 (median, CelebA). ``CENTRING``
  times the shipped mean (``clustering/weights/face_mean.npy``, the mean descriptor of the dev-split
  CelebA photos, ``bench/clustering_faces.py --fit-mean``) is subtracted, which spreads unrelated
  faces apart while one person's photos stay close. Centring fully puts unrelated faces near cosine 0
  but also pushes one person's photos under the calibrated member floor (13/30 dev people seeded a
  cluster); 0.6 was chosen with the weight on dev identities (``docs/clustering.md``).

:func:`combine` appends the centred descriptor, weighted, to the trunk vector (zeros for photos
without a dominant face), so non-face photos keep their vectors' cosines exactly.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np
from PIL import Image

FACE_DIM = 128
DETECT_SIDE = 320  # short side the HOG detector sees (it finds faces of about 80 px and up)
DETECT_LONG = 1280  # ... and its long side at most (a 1 x 10,000 px strip is not blown up to 3 Gpx)
MIN_SIDE = 0.25  # a dominant face's box side, as a share of the image's short side
WEIGHT = 1.0  # the face part's weight against the unit trunk vector (chosen in bench/clustering_faces.py)
CENTRING = 0.6  # share of the mean descriptor subtracted (chosen with WEIGHT on dev identities)
MEAN = os.path.join(os.path.dirname(__file__), "weights", "face_mean.npy")


_MODELS: list = []
_LOCK = threading.Lock()
# dlib's detector keeps scratch buffers: one call at a time per process (a Dask worker runs threads)
_RUN_LOCK = threading.Lock()


def _models():
    """The detector, the 5-landmark predictor and the ResNet, loaded once per process and kept out of
    the stage objects: dlib objects don't pickle, and Beam runners (DaskRunner's nested side-input
    computes) serialise DoFns after their setup. The model folder is found without importing
    ``face_recognition_models`` (its ``__init__`` needs the retired ``pkg_resources``)."""
    with _LOCK:
        if not _MODELS:
            from core.model_packages import require

            require("dlib", "face descriptors")
            folder = os.path.join(require("face_recognition_models", "face descriptors"), "models")
            import dlib

            _MODELS.extend([
                dlib.get_frontal_face_detector(),
                dlib.shape_predictor(os.path.join(folder, "shape_predictor_5_face_landmarks.dat")),
                dlib.face_recognition_model_v1(
                    os.path.join(folder, "dlib_face_recognition_resnet_model_v1.dat")
                ),
            ])
        return tuple(_MODELS)


class FaceIdentity:
    """``describe(images) -> (vectors (n, 128) float32, found (n,) bool)``; rows without a dominant
    face are zeros. Models load on first use (one per process)."""

    name = f"dlib-face{FACE_DIM}"

    def __init__(self, min_side: float = MIN_SIDE, mean_path: str | None = MEAN, centring: float = CENTRING):
        self.min_side = min_side
        mean = np.load(mean_path, allow_pickle=False).astype(np.float32) if mean_path else None
        self.mean = None if mean is None else centring * mean

    def dominant_box(self, image: Image.Image):
        """The largest detected face as (left, top, right, bottom) in ``image``'s pixels, or None
        when no face reaches ``min_side`` of the short side."""
        det = _models()[0]
        s = min(DETECT_SIDE / max(1, min(image.size)), DETECT_LONG / max(1, max(image.size)))
        grey = image.convert("L").resize((max(1, round(image.width * s)), max(1, round(image.height * s))),
                                         Image.BILINEAR)
        with _RUN_LOCK:
            boxes = list(det(np.asarray(grey), 0))
        if not boxes:
            return None
        b = max(boxes, key=lambda r: (r.area(), r.left(), r.top()))
        if min(b.width(), b.height()) < self.min_side * min(grey.size):
            return None
        return tuple(int(round(v / s)) for v in (b.left(), b.top(), b.right(), b.bottom()))

    def describe(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        import dlib

        _, shape, rec = _models()
        out = np.zeros((len(images), FACE_DIM), np.float32)
        found = np.zeros(len(images), bool)
        for i, im in enumerate(images):
            box = self.dominant_box(im)
            if box is None:
                continue
            rgb = np.ascontiguousarray(np.asarray(im.convert("RGB")))
            rect = dlib.rectangle(*box)
            with _RUN_LOCK:
                v = np.asarray(rec.compute_face_descriptor(rgb, shape(rgb, rect)), np.float32)
            v /= max(float(np.linalg.norm(v)), 1e-12)
            if self.mean is not None:
                v = v - self.mean
            out[i] = v / max(float(np.linalg.norm(v)), 1e-12)
            found[i] = True
        return out, found


def combine(trunk: np.ndarray, faces: np.ndarray, weight: float = WEIGHT) -> np.ndarray:
    """``[trunk, weight * face]`` re-normalised: two face photos' cosine is
    ``(t.t' + w^2 f.f') / (1 + w^2)``; a non-face photo's vector is its trunk vector plus zeros."""
    x = np.concatenate([trunk.astype(np.float32), weight * faces.astype(np.float32)], axis=1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

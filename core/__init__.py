"""core: the foundation every stage imports, and which imports no stage code.

What lives here: on-disk contracts (``contracts``: schemas, the run-folder layout, shard formats),
storage (atomic writes on any Beam filesystem, unit manifests, the output lock), safe file reads,
image decoding, shared image features, the stage contract (``stage``), the config system
(``config``), CLI error handling, device selection and model-weight packages.

Importing it (every stage package does) sets the environment that keeps third-party libraries
offline and quiet, unless the user set those variables: albumentations (pulled in by img2dataset)
checks PyPI for updates on import, Hugging Face libraries try the hub and send telemetry,
tokenizers warns after a fork. It also keeps glibc from returning every freed array to the kernel
(``core/malloc.py``: page faults were most of the clustering stage's time).
"""

import logging as _logging
import os as _os

__version__ = "0.1.0"  # the package version (pyproject reads it from here)

QUIET_ENV = {
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
for _k, _v in QUIET_ENV.items():
    _os.environ.setdefault(_k, _v)

from core import malloc as _malloc  # noqa: E402 - after the environment, before any heavy import

_malloc.tune()  # keep freed heap memory instead of a page fault per page per allocation (core/malloc.py)


class _QuietBeamImport(_logging.Filter):
    """Drop Beam's import-time notice that the optional GCP client libraries are absent."""

    def filter(self, record: _logging.LogRecord) -> bool:
        return "apitools not found" not in str(record.msg)


_logging.getLogger().addFilter(_QuietBeamImport())

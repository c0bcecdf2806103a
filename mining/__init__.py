"""mining: readers, decode, quality, domains, filter (see docs/mining.md).

Importing any of the toolkit's packages (they all import this one) sets the environment that keeps
third-party libraries offline and quiet, unless the user set those variables: albumentations
(pulled in by img2dataset) checks PyPI for updates on import, Hugging Face libraries try the hub
and send telemetry, tokenizers warns after a fork.
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


class _QuietBeamImport(_logging.Filter):
    """Drop Beam's import-time notice that the optional GCP client libraries are absent."""

    def filter(self, record: _logging.LogRecord) -> bool:
        return "apitools not found" not in str(record.msg)


_logging.getLogger().addFilter(_QuietBeamImport())

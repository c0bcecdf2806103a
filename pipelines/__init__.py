"""pipelines: thin Apache Beam wrappers around the stage folders (see docs/runners.md)."""

import core  # noqa: F401  (installs the filter for Beam's import-time GCP notice before Beam loads)
from core import __version__  # noqa: F401

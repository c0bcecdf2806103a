"""mining: readers, quality, domains, filter, the mining stage (see docs/mining.md)."""

from core import __version__  # noqa: F401 - the package version lives in core

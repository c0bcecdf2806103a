"""clustering."""

from core import __version__  # noqa: E402,F401  (one version; also sets the quiet environment)

"""mining: readers, decode, quality, domains, filter (see docs/mining.md)."""

import logging as _logging


class _QuietBeamImport(_logging.Filter):
    """Drop Beam's import-time notice that the optional GCP client libraries are absent."""

    def filter(self, record: _logging.LogRecord) -> bool:
        return "apitools not found" not in str(record.msg)


_logging.getLogger().addFilter(_QuietBeamImport())

"""Input readers: everything becomes base records of ``core.contracts`` (see docs/readers.md).

``read_any(input, work_dir=None, **opts)`` detects the input kind and yields records;
``write_records(input, output_dir, shard_size=1000, **opts)`` writes them as Parquet shards.
The stages read those shards, one Beam unit per shard (the shards, not raw inputs, are the
fan-out).
"""

from mining.readers.common import ReadStats
from mining.readers.dispatch import KINDS, detect_kind, read_any
from mining.readers.writer import write_records

__all__ = ["KINDS", "ReadStats", "detect_kind", "read_any", "write_records"]

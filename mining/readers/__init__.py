"""Input readers: everything becomes base records of ``core.contracts`` (see docs/readers.md).

``read_any(input, work_dir=None, **opts)`` detects the input kind and yields records;
``write_records(input, output_dir, shard_size=1000, **opts)`` writes them as Parquet shards.
``input_units`` / ``read_unit`` split an input into independent units for a Beam fan-out.
"""

from mining.readers.common import ReadStats
from mining.readers.dispatch import KINDS, detect_kind, input_units, read_any, read_unit
from mining.readers.writer import write_records

__all__ = ["KINDS", "ReadStats", "detect_kind", "input_units", "read_any", "read_unit", "write_records"]

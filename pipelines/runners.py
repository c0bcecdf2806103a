"""Beam runner selection shared by every pipeline.

Short names for the local runners, and pass-through for everything else:

==============  ==================================================================
``fnapi``       FnApiRunner in this process (default; fast, offline)
``direct-mp``   DirectRunner, ``--direct_running_mode=multi_processing``
``portable``    PortableRunner against an embedded job endpoint, LOOPBACK workers
                (the portable path that FlinkRunner and SparkRunner take)
other           any Beam runner name (DataflowRunner, FlinkRunner, SparkRunner)
                with the remaining ``beam_args`` (``--project``, ``--setup_file``...)
==============  ==================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from core.config import knob

# Historical names (the mining CLI's) for the short names: every stage accepts both.
RUNNER_ALIASES = {"FnApiRunner": "fnapi", "DirectRunner": "direct-mp", "PortableRunner": "portable"}


@dataclass(frozen=True)
class RunnerConfig:
    """Which Beam runner a stage's graph runs on (every Beam stage CLI has these flags)."""

    runner: str = field(default="fnapi", metadata=knob(
        "Beam runner: fnapi, direct-mp (multi-processing), portable, or a Beam runner name "
        "(FlinkRunner, SparkRunner, DataflowRunner) with its options"))
    workers: int = field(default=2, metadata=knob("worker processes for direct-mp", min=1))


def make_pipeline(runner: str | None = "fnapi", beam_args: Sequence[str] = (), workers: int = 2) -> beam.Pipeline:
    """A ``beam.Pipeline`` for ``runner`` (a short name above or a Beam runner name)."""
    runner = RUNNER_ALIASES.get(runner or "fnapi", runner or "fnapi")
    args = list(beam_args)
    if runner == "fnapi":
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(args))
    if runner == "direct-mp":
        opts = ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
        return beam.Pipeline(runner="DirectRunner", options=PipelineOptions(opts + args))
    if runner == "portable":
        opts = ["--job_endpoint=embed", "--environment_type=LOOPBACK"]
        return beam.Pipeline(runner="PortableRunner", options=PipelineOptions(opts + args))
    return beam.Pipeline(runner=runner, options=PipelineOptions(args))

"""Beam runner selection shared by every pipeline.

Short names for the local runners, and pass-through for everything else:

==============  ==================================================================
``fnapi``       FnApiRunner in this process (default; fast, offline)
``direct-mp``   DirectRunner, ``--direct_running_mode=multi_processing``
``portable``    PortableRunner against an embedded job endpoint, LOOPBACK workers
                (the portable path that FlinkRunner and SparkRunner take)
``dask``        Beam's DaskRunner on a ``dask.distributed`` scheduler given by
                ``--dask_client_address tcp://HOST:PORT`` (``pipelines/dask_cluster.py``
                starts one on loopback); needs the ``[dask]`` extra
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

try:  # registers DaskOptions (--dask_client_address...) with Beam's option parser when dask is installed
    from apache_beam.runners.dask import dask_runner as _dask_runner
except ImportError:  # the [dask] extra is absent: --runner dask says so
    _dask_runner = None

# Historical names (the mining CLI's) for the short names: every stage accepts both.
RUNNER_ALIASES = {"FnApiRunner": "fnapi", "DirectRunner": "direct-mp", "PortableRunner": "portable",
                  "DaskRunner": "dask"}


@dataclass(frozen=True)
class RunnerConfig:
    """Which Beam runner a stage's graph runs on (every Beam stage CLI has these flags)."""

    runner: str = field(default="fnapi", metadata=knob(
        "Beam runner: fnapi, direct-mp (multi-processing), portable, dask (--dask_client_address), or a "
        "Beam runner name "
        "(FlinkRunner, SparkRunner, DataflowRunner) with its options"))
    workers: int = field(default=2, metadata=knob("worker processes for direct-mp", min=1))


DASK_USED = False  # a dask pipeline ran in this process (see exit_after)


def exit_after(code: int) -> None:
    """Leave a stage CLI with ``code``. After a dask pipeline the interpreter's teardown can abort
    (``terminate called without an active exception``: native thread pools of the models meet the
    dask client's threads), after every output and the summary are written; so flush and leave
    without it then."""
    if DASK_USED:
        import os
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


def make_pipeline(
    runner: str | None = "fnapi", beam_args: Sequence[str] = (), workers: int = 2
) -> beam.Pipeline:
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
    if runner == "dask":
        if _dask_runner is None:
            from core.cli import InputError

            raise InputError("--runner dask needs dask.distributed: pip install -e '.[dask]'")
        global DASK_USED
        DASK_USED = True
        return beam.Pipeline(runner=ClosingDaskRunner(), options=PipelineOptions(args))
    return beam.Pipeline(runner=runner, options=PipelineOptions(args))


if _dask_runner is not None:
    from apache_beam.pipeline import PTransformOverride

    class _BatchElementsOverride(PTransformOverride):
        """The ParDo inside ``BatchElements`` (its batching DoFn keeps a batch across elements)."""

        def matches(self, applied_ptransform) -> bool:
            from apache_beam.transforms import util

            t = applied_ptransform.transform
            return isinstance(t, beam.ParDo) and isinstance(
                t.fn, (util._GlobalWindowsBatchingDoFn, util._WindowAwareBatchingDoFn))

        def get_replacement_transform_for_applied_ptransform(self, applied_ptransform):
            from pipelines.safe_transforms import GroupedBatches

            return GroupedBatches(applied_ptransform.transform.fn._batch_size_estimator._max_batch_size)

    class ClosingDaskRunner(_dask_runner.DaskRunner):
        """Beam's DaskRunner with two repairs: every ``BatchElements`` becomes
        ``safe_transforms.GroupedBatches`` (the stock runner drops what a DoFn emits in
        ``finish_bundle``, where BatchElements emits its last partial batch), and the
        ``distributed.Client`` is closed once the pipeline has finished (the stock runner leaves it
        open, reconnecting after the scheduler stops). ``with_outputs`` and several sinks, which it
        also mishandles, are avoided by the pipelines themselves (``pipelines/safe_transforms.py``)."""

        def run_pipeline(self, pipeline, options):
            pipeline.replace_all([_BatchElementsOverride()])
            result = super().run_pipeline(pipeline, options)
            wait = result.wait_until_finish

            def wait_and_close(duration=None):
                try:
                    return wait(duration)
                finally:
                    result.client.close()

            result.wait_until_finish = wait_and_close
            return result

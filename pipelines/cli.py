"""Console-script entry points (``[project.scripts]`` in pyproject.toml): one per stage CLI.

Each runs the same ``main`` as ``python -m <module>`` through :func:`core.cli.run`: a user's mistake
is one line on stderr and exit 2, and a ``main`` that returns its summary (a dict) exits 0.
"""

from __future__ import annotations

import importlib

from core import cli

STAGES = {
    "iidata-read": "mining.readers.__main__",
    "iidata-corpus": "mining.demo_corpus.generate",
    "iidata-quality": "mining.quality.__main__",
    "iidata-mine": "pipelines.mine",
    "iidata-clusters": "pipelines.build_clusters",
    "iidata-control": "datasets.control.__main__",
    "iidata-tasks": "pipelines.build_tasks",
    "iidata-export": "pipelines.export",
    "iidata-train": "train.__main__",
    "iidata-report": "pipelines.report",
    "iidata-demo": "pipelines.demo",
}


def _run(script: str) -> int:
    return cli.run(importlib.import_module(STAGES[script]).main)


def read() -> int: return _run("iidata-read")  # noqa: E704
def corpus() -> int: return _run("iidata-corpus")  # noqa: E704
def quality() -> int: return _run("iidata-quality")  # noqa: E704
def mine() -> int: return _run("iidata-mine")  # noqa: E704
def clusters() -> int: return _run("iidata-clusters")  # noqa: E704
def control() -> int: return _run("iidata-control")  # noqa: E704
def tasks() -> int: return _run("iidata-tasks")  # noqa: E704
def export() -> int: return _run("iidata-export")  # noqa: E704
def train() -> int: return _run("iidata-train")  # noqa: E704
def report() -> int: return _run("iidata-report")  # noqa: E704
def demo() -> int: return _run("iidata-demo")  # noqa: E704

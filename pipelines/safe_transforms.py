"""Graph constructs that every runner we support executes the same way, in place of three that Beam
2.77's DaskRunner gets wrong (``tests/test_dask_runner.py`` probes each on a real cluster):

- ``ParDo(...).with_outputs(...)``: DaskRunner hands *every* element to every output (tags are
  ignored). Instead a DoFn yields ``(tag, value)`` pairs and :func:`split` gives one filtering
  consumer per tag.
- ``BatchElements``: DaskRunner drops what a DoFn emits in ``finish_bundle``, where BatchElements
  emits its last partial batch. Instead :func:`keyed_batches` keys each element by a hash bucket
  (bucket count from the group's size), groups by key and cuts each group into batches.
- Several sinks: DaskRunner computes only the transform applied last. Instead :func:`finish`
  flattens every sink's output into one final transform, applied last.

On FnApiRunner, DirectRunner and the portable runners these give the same elements as the
constructs they replace (the batches differ; every per-batch step here is per-element math).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam

from clustering.kmeans import hash01

BATCH_SALT = "batch"  # the batch bucket hash is independent of the k-means sample hash


def tagged(main_tag: str, result: tuple[list, ...], tags: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    """(main items, then one list or single value per tag in ``tags``) -> ``(tag, value)`` pairs."""
    main, *rest = result
    for item in main:
        yield main_tag, item
    for tag, value in zip(tags, rest):
        for v in (value if isinstance(value, list) else [value]):
            yield tag, v


def split(pcoll, label: str, tags: Iterable[str]) -> dict[str, Any]:
    """A PCollection of ``(tag, value)`` -> {tag: PCollection of its values} (one consumer per tag)."""

    def pick(tv, want):
        if tv[0] == want:
            yield tv[1]

    return {t: pcoll | f"{label}.{t}" >> beam.FlatMap(pick, t) for t in tags}


def batch_key(kv: tuple[Any, dict], sizes: dict, per_batch: int) -> tuple[tuple[Any, int], tuple[Any, dict]]:
    """(group, point) -> ((group, bucket), (group, point)); ``sizes[group]`` is (points, ...) and the
    bucket count ``ceil(points / per_batch)``, so buckets average ``per_batch`` points."""
    group, p = kv
    n = sizes[group][0]
    buckets = max(1, math.ceil(n / per_batch))
    return (group, int(hash01(p["key"], BATCH_SALT) * buckets)), kv


def chunks(kv: tuple[Any, Iterable], max_size: int) -> Iterator[list]:
    """One bucket's elements -> lists of at most ``max_size``."""
    batch: list = []
    for item in kv[1]:
        batch.append(item)
        if len(batch) >= max_size:
            yield batch
            batch = []
    if batch:
        yield batch


def keyed_batches(keyed, label: str, sizes, per_batch: int = 2048, max_size: int = 4096):
    """(group, point) elements -> lists of them, every list within one group (``sizes``: an AsDict side
    input of group -> (points, ...))."""
    return (keyed | f"{label}Key" >> beam.Map(batch_key, sizes, per_batch)
            | f"{label}Group" >> beam.GroupByKey()
            | f"{label}Chunks" >> beam.FlatMap(chunks, max_size))


def finish(pcolls: Iterable, label: str = "Done"):
    """Flatten every sink's output into one last, plain transform (DaskRunner runs only the transform
    applied last, and a ParDo's input is a true dependency there, unlike a side input)."""
    return tuple(pcolls) | f"{label}All" >> beam.Flatten() | label >> beam.Map(lambda _: None)


class GroupedBatches(beam.PTransform):
    """``BatchElements`` without ``finish_bundle``: elements dealt round-robin into ``buckets`` keys,
    grouped, cut into lists of at most ``max_size``. ``pipelines/runners.py`` puts it in place of
    every ``BatchElements`` on DaskRunner (which drops the last partial batch of each bundle)."""

    def __init__(self, max_size: int, buckets: int = 16):
        super().__init__()
        self.max_size, self.buckets = max(1, max_size), buckets

    def expand(self, pcoll):
        return (pcoll | "Deal" >> beam.ParDo(_Deal(self.buckets)) | "Group" >> beam.GroupByKey()
                | "Chunks" >> beam.FlatMap(chunks, self.max_size))


class _Deal(beam.DoFn):
    def __init__(self, buckets: int):
        self.buckets, self.n = buckets, 0

    def process(self, x):
        self.n += 1
        yield self.n % self.buckets, x

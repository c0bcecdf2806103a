"""Beam transforms for the clusters / duplicates tables, with no step that gathers a table on one worker.

- :func:`write_parts`: each row goes to the part its sort key hashes to (``core.tables.part_index``;
  N from the row count and ``tables.rows_per_shard``), one GroupByKey, each part sorted and written
  atomically as its own parquet file; every part index gets a file, empty or not, so a lost sink shows
  as an incomplete set (``core.tables.part_files``).
- :func:`resolve_roots`: ``duplicate_of`` chains followed to a kept record by pointer jumping: each
  round joins every row's pointer against the rows' keys and moves it to that row's pointer (the
  distance covered doubles per round), ``tables.root_rounds`` rounds. Rows still moving in the last
  round (a chain longer than 2^rounds, or a cycle) are the residue: only they meet on one worker, where
  ``clustering.cross_domain.resolve_roots`` (the single-worker rule) settles them, given the roots of
  the resolved rows they point at. The result equals that function on all rows.

Only Map / FlatMap / Filter / Flatten / GroupByKey / CombineGlobally and singleton side inputs: no
tagged outputs, no BatchElements (``pipelines/safe_transforms.py``: DaskRunner runs these the same).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import apache_beam as beam

from clustering.cross_domain import resolve_roots as resolve_roots_in_memory
from core import tables
from core.contracts import TABLE_SORT_KEYS

ASK, PTR = 0, 1  # tags of the values meeting at a node in a round's GroupByKey


def write_parts(rows, path: str, schema, rows_per_part: int, label: str):
    """Write the PCollection of dict ``rows`` as the parts of the table whose merged file is ``path``;
    returns the PCollection of part paths (one per part)."""
    key = TABLE_SORT_KEYS[tables.split_path(path)[1]]
    count = (rows | f"{label}Count" >> beam.combiners.Count.Globally()
             | f"{label}N" >> beam.Map(tables.part_count, rows_per_part))
    keyed = rows | f"{label}Key" >> beam.Map(
        lambda r, n: (tables.part_index(r[key], n), r), beam.pvalue.AsSingleton(count))
    every = count | f"{label}Every" >> beam.FlatMap(lambda n: [(i, None) for i in range(n)])

    def write(kv: tuple[int, Iterable], n: int) -> str:
        return tables.write_part((r for r in kv[1] if r is not None), path, kv[0], n, schema)

    return ((keyed, every) | f"{label}All" >> beam.Flatten() | f"{label}Group" >> beam.GroupByKey()
            | f"{label}Write" >> beam.Map(write, beam.pvalue.AsSingleton(count)))


def jump(kv: tuple[str, Iterable]) -> Iterator[tuple[str, str, dict, bool]]:
    """One node's round: (node, [(ASK, state) | (PTR, the node's own pointer)]) -> every asker's new
    state (key, pointer, row, moved). An asker moves to the node's pointer when the node is a duplicate
    row itself, else the node is its root and it stays. Iterates the group twice, never copying it."""
    node, values = kv
    ptrs = [v for tag, v in values if tag == PTR]
    ptr = min(ptrs) if ptrs else None  # keys are unique; min only makes a repeated key deterministic
    for tag, v in values:
        if tag == ASK:
            k, _, row, _ = v
            yield (k, ptr, row, True) if ptr is not None else (k, node, row, False)


def parent_roots(kv: tuple[str, Iterable]) -> Iterator[tuple[dict, str, str | None]]:
    """(node, [(ASK, residue row) | (PTR, the node's root when it is a resolved row)]) -> (residue
    row, its parent, the parent's root or None)."""
    node, values = kv
    roots = [v for tag, v in values if tag == PTR]
    root = min(roots) if roots else None
    for tag, v in values:
        if tag == ASK:
            yield v, node, root


def settle_residue(items: list[tuple[dict, str, str | None]]) -> list[dict]:
    """The residue rows resolved by the single-worker rule: their own chains, with every resolved row
    they reach standing in as one link to its root (what the rule would reach from there)."""
    rows = [row for row, _, _ in items]
    keys = {r["key"] for r in rows}
    links = {p: root for _, p, root in items if root is not None and p not in keys}
    stand_ins = [{"key": p, "duplicate_of": root} for p, root in sorted(links.items())]
    return resolve_roots_in_memory(rows + stand_ins)[: len(rows)]


def resolve_roots(dups, rounds: int, label: str = "Roots"):
    """Duplicate rows -> (the rows with ``duplicate_of`` resolved, a one-element PCollection of chain
    stats: ``moved_round_NN`` per round, ``residue``)."""
    state = dups | f"{label}Start" >> beam.Map(lambda r: (r["key"], r["duplicate_of"], r, True))
    stats = []
    for i in range(1, rounds + 1):
        asks = state | f"{label}Ask{i}" >> beam.Map(lambda s: (s[1], (ASK, s)))
        ptrs = state | f"{label}Ptr{i}" >> beam.Map(lambda s: (s[0], (PTR, s[1])))
        state = ((asks, ptrs) | f"{label}Meet{i}" >> beam.Flatten() | f"{label}Group{i}" >> beam.GroupByKey()
                 | f"{label}Jump{i}" >> beam.FlatMap(jump))
        stats.append(state | f"{label}Moved{i}"
                     >> beam.Map(lambda s, i=i: {f"moved_round_{i:02d}": int(s[3])}))
    done = state | f"{label}Done" >> beam.Filter(lambda s: not s[3])
    moving = state | f"{label}Moving" >> beam.Filter(lambda s: s[3])
    resolved = done | f"{label}Resolved" >> beam.Map(lambda s: dict(s[2], duplicate_of=s[1]))
    residue_asks = moving | f"{label}ResidueAsk" >> beam.Map(lambda s: (s[2]["duplicate_of"], (ASK, s[2])))
    roots = done | f"{label}Roots" >> beam.Map(lambda s: (s[0], (PTR, s[1])))
    residue = ((residue_asks, roots) | f"{label}ResidueMeet" >> beam.Flatten()
               | f"{label}ResidueGroup" >> beam.GroupByKey() | f"{label}Parents" >> beam.FlatMap(parent_roots)
               | f"{label}Residue" >> beam.combiners.ToList()  # the residue only (normally empty)
               | f"{label}Settle" >> beam.FlatMap(settle_residue))
    stats.append(residue | f"{label}ResidueCount" >> beam.Map(lambda _: {"residue": 1}))
    out = (resolved, residue) | f"{label}Out" >> beam.Flatten()
    return out, tuple(stats)

"""clusters.parquet / duplicates.parquet without a one-worker gather (issue 15 item 1): sorted hash
parts + a streaming k-way merge give the old single writer's bytes; pointer-jumping root resolution in
Beam gives the old ``resolve_roots``; the merge reads one row group per part at a time; consumers read
the parts when the merge is off."""

from __future__ import annotations

import random

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to

from clustering import steps
from clustering.cross_domain import resolve_roots
from core import storage, tables
from core.contracts import CLUSTER_SCHEMA, DUP_SCHEMA, RunLayout
from pipelines import table_transforms as tt


def _clusters(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        keys = [f"{rng.getrandbits(64):016x}" for _ in range(5)]
        out.append({"cluster_id": f"c{rng.getrandbits(48):012x}-{i}", "domain": rng.choice(["a", "b", None]),
                    "keys": keys, "urls": [f"https://x.invalid/{k}" for k in keys],
                    "similarities": [1.0] + [rng.random() for _ in range(4)],
                    "coherence": rng.random(), "coherent": rng.random() < 0.5})
    return out


def _dups(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"key": f"k{rng.getrandbits(40):010x}{i}", "duplicate_of": f"r{rng.randrange(50)}",
             "reason": rng.choice(["sha256", "cosine", "phash"])} for i in range(n)]


def _write_parts(rows, path, schema, count):
    key = tables.sort_key(path)
    for i in range(count):
        tables.write_part([r for r in rows if tables.part_index(r[key], count) == i], path, i, count, schema)


# 8000 rows: the urls overflow the 1 MiB dictionary page, the writer falls back to plain mid row group
@pytest.mark.parametrize("n,count", [(0, 1), (1, 3), (700, 1), (2500, 7), (8000, 3)])
def test_parts_then_merge_give_the_old_writers_bytes(tmp_path, n, count):
    for table, rows, schema, key in (("clusters", _clusters(n, n), CLUSTER_SCHEMA, "cluster_id"),
                                     ("duplicates", _dups(n, n), DUP_SCHEMA, "key")):
        old = steps.write_rows(list(rows), str(tmp_path / "old" / f"{table}.parquet"), schema, key)
        path = str(tmp_path / "new" / f"{table}.parquet")
        random.Random(0).shuffle(rows)
        _write_parts(rows, path, schema, count)
        assert len(tables.part_files(path)) == count and not storage.exists(path)
        # the parts alone read as the table, in its order (tables.merge off)
        assert tables.read_table(path).to_pylist() == pq.read_table(old).to_pylist()
        assert list(tables.iter_rows(path, columns=[key])) == pq.read_table(old, columns=[key]).to_pylist()
        tables.merge(path, schema)
        assert open(path, "rb").read() == open(old, "rb").read(), table
        assert tables.read_table(path).equals(pq.read_table(old))


def test_small_merged_row_groups_keep_rows_and_order(tmp_path):
    rows = _dups(3000, 1)
    old = steps.write_rows(list(rows), str(tmp_path / "old.parquet"), DUP_SCHEMA, "key")
    path = str(tmp_path / "new" / "duplicates.parquet")
    _write_parts(rows, path, DUP_SCHEMA, 4)
    tables.merge(path, DUP_SCHEMA, row_group_rows=500)
    assert pq.ParquetFile(path).num_row_groups == 6 and pq.read_table(path).equals(pq.read_table(old))


def test_merge_reads_one_row_group_per_part_at_a_time(tmp_path, monkeypatch):
    """40 parts of ~3 row groups each: when the first output row group is written the merge has read
    about one row group per part, never a whole part; every read is one row group."""
    n_parts = 40
    rows = _dups(40 * 3 * tables.PART_ROW_GROUP, 2)
    path = str(tmp_path / "t" / "duplicates.parquet")
    _write_parts(rows, path, DUP_SCHEMA, n_parts)
    reads, at_first_write = [], []
    real_read = pq.ParquetFile.read_row_group

    def read_row_group(self, i, *a, **k):
        t = real_read(self, i, *a, **k)
        reads.append(t.num_rows)
        return t

    real_write = pq.ParquetWriter.write_table

    def write_table(self, t, *a, **k):
        at_first_write.append(len(reads)) if not at_first_write else None
        return real_write(self, t, *a, **k)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", read_row_group)
    monkeypatch.setattr(pq.ParquetFile, "read", lambda *a, **k: pytest.fail("a whole part was read"))
    monkeypatch.setattr(pq.ParquetWriter, "write_table", write_table)
    tables.merge(path, DUP_SCHEMA, row_group_rows=tables.PART_ROW_GROUP)
    assert max(reads) <= tables.PART_ROW_GROUP and sum(reads) == len(rows)
    assert len(reads) >= 3 * n_parts - n_parts // 2  # parts hold ~3 row groups each
    assert n_parts <= at_first_write[0] <= n_parts + 2  # the heap's head of each part, not the parts
    assert pq.read_table(path).column("key").to_pylist() == sorted(r["key"] for r in rows)


def test_incomplete_parts_are_a_missing_table(tmp_path):
    rows = _dups(50, 3)
    path = str(tmp_path / "duplicates.parquet")
    _write_parts(rows, path, DUP_SCHEMA, 3)
    assert tables.exists(path)
    (tmp_path / "tables" / "duplicates-00001-of-00003.parquet").unlink()
    assert not tables.exists(path)
    with pytest.raises(tables.IncompleteTable):
        tables.read_table(path)
    tables.remove_parts(path)
    assert not list((tmp_path / "tables").glob("duplicates-*"))


def _chains(rng: random.Random, n: int, cycles: bool) -> list[dict]:
    """Random duplicate forests: each key points at a root (r*) or an earlier key, so chains of
    every length; with ``cycles``, some keys point at later keys too (cycles, self-loops)."""
    keys = [f"k{i:03d}" for i in range(n)]
    rng.shuffle(keys)
    rows = []
    for i, k in enumerate(keys):
        if cycles and rng.random() < 0.2:
            target = rng.choice(keys)  # anywhere: cycles and self-loops
        elif i and rng.random() < 0.8:
            target = keys[max(0, i - rng.randint(1, 3))]  # long chains: mostly the few just before
        else:
            target = f"r{rng.randrange(5)}"
        rows.append({"key": k, "duplicate_of": target, "reason": rng.choice(["sha256", "cosine"])})
    return rows


def test_pointer_jumping_gives_the_single_worker_roots():
    """Random chains (up to tens of links), with and without cycles, each at 0-3 rounds (0: all
    residue; 3: chains beyond 8 links settled as residue)."""
    cases = []
    rng = random.Random(7)
    for c in range(4):
        rows = _chains(rng, 60, cycles=c % 2 == 1)
        cases.append((rows, c))
    cases.append(([{"key": "a", "duplicate_of": "a", "reason": "x"}], 1))  # a self-loop alone
    with beam.Pipeline() as p:
        for i, (rows, rounds) in enumerate(cases):
            out, stats = tt.resolve_roots(p | f"In{i}" >> beam.Create(rows), rounds, label=f"R{i}")
            assert_that(out, equal_to(resolve_roots(rows)), label=f"Same{i}")
            if rounds:
                moved = (stats | f"S{i}" >> beam.Flatten()
                         | f"Sum{i}" >> beam.CombineGlobally(steps.sum_dicts)
                         | f"M{i}" >> beam.Map(lambda d: d.get("moved_round_01", 0)))
                keys = {r["key"] for r in rows}
                assert_that(moved, equal_to([sum(r["duplicate_of"] in keys for r in rows)]),
                            label=f"Moved{i}")
    assert any(any(r["duplicate_of"] == r["key"] for r in resolve_roots(rows)) for rows, _ in cases)


def test_settle_residue_uses_the_roots_of_resolved_parents():
    rows = [{"key": "a", "duplicate_of": "b", "reason": "x"},
            {"key": "c", "duplicate_of": "c", "reason": "x"}]
    items = [(rows[0], "b", "root"), (rows[1], "c", None)]
    assert [r["duplicate_of"] for r in tt.settle_residue(items)] == ["root", "c"]


def test_parts_in_beam_then_check_and_merge(tmp_path):
    """The graph's part writer: every part index gets a file (empty ones too), check_tables sees the
    set, the merge gives the old bytes."""
    rows = _clusters(90, 5)
    out = str(tmp_path / "run")
    path = RunLayout.clusters_table(out)
    with beam.Pipeline() as p:
        tt.write_parts(p | beam.Create(rows), path, CLUSTER_SCHEMA, 30, "Parts")
        tt.write_parts(p | "NoDups" >> beam.Create([]), RunLayout.duplicates_table(out), DUP_SCHEMA, 30,
                       "DupParts")
    assert len(tables.part_files(path)) == 3 and len(tables.part_files(RunLayout.duplicates_table(out))) == 1
    with pytest.raises(steps.AccountingError, match="group_stats.json"):
        steps.check_tables(out)  # the two parquet tables count as present
    steps.write_group_stats({}, out)
    steps.check_tables(out)
    steps.merge_tables(out, {"clusters.parquet": CLUSTER_SCHEMA, "duplicates.parquet": DUP_SCHEMA}, 1 << 20)
    old = steps.write_rows(rows, str(tmp_path / "old.parquet"), CLUSTER_SCHEMA, "cluster_id")
    assert open(path, "rb").read() == open(old, "rb").read()
    assert pq.read_table(RunLayout.duplicates_table(out)).num_rows == 0
    assert not (tmp_path / "run" / "tables").exists() or not list((tmp_path / "run" / "tables").iterdir())
    steps.remove_tables(out)
    assert not tables.exists(path)

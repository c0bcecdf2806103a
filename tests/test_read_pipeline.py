"""The read stage as a Beam graph (pipelines/read.py): split into several units, the same bytes as the loop.

Each input kind that splits (image folder, Parquet table with several row groups, CSV with quoted
multi-line fields, CRLF, a BOM and bad lines, JSONL, img2dataset output folder) is read by the
one-process loop and by the graph split into units of two shards; every output file (shards and
read_summary.json) must be byte-identical. Repeated sources across units check that occurrence
keys do not depend on the split; missing files and failed downloads check kept + rejected = read.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from core import storage
from core.contracts import url_key
from mining.readers import units as ru
from mining.readers import write_records
from mining.readers.__main__ import main as cli_main
from pipelines.read import run as run_graph

SHARD = 2
UNIT_ROWS = 4  # two shards per unit


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8 + i, 8), (i * 20 % 256, 40, 90)).save(buf, format="PNG")
    return buf.getvalue()


def _folder(tmp_path):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    for i in range(9):
        (root / ("sub" if i % 2 else ".") / f"im{i}.png").write_bytes(_png(i))
    (root / "im0.txt").write_text("a caption")
    (root / "notes.md").write_text("ignored")
    return root


def _parquet(tmp_path):
    """11 rows in row groups of 3 (units of 4 rows cut them), a source repeated in every unit, a
    missing file, a url column with a repeat."""
    root = tmp_path / "tab"
    root.mkdir()
    for i in range(4):
        (root / f"p{i}.png").write_bytes(_png(i))
    files = ["p0.png", "p1.png", "p0.png", "p2.png", "p0.png", "gone.png", "p3.png", "p0.png", "p1.png",
             "p2.png", "p0.png"]
    urls = [None, "http://u/x", None, None, None, None, "http://u/x", None, None, "http://u/x", None]
    table = pa.table({"file": files, "caption": [f"cap {i}" for i in range(11)], "url": urls,
                      "extra": list(range(11))})
    pq.write_table(table, root / "t.parquet", row_group_size=3)
    return root / "t.parquet"


def _csv(tmp_path):
    """A BOM, CRLF ends, quoted fields over several lines (with \\r\\n, \\n and a bare \\r inside), a
    blank line, extra fields, a non-UTF-8 caption, a missing file, a path repeated in every unit, no
    final newline, and two lines over the (lowered) field size limit: bad_row records, one the first
    row of a unit (its line number is the loop's DictReader's there) and one mid-field, whose rest of
    the quoted field then reads as a row of its own. 13 records: units of 4 give 4 units."""
    root = tmp_path / "csv"
    root.mkdir()
    for i in range(3):
        (root / f"c{i}.png").write_bytes(_png(i))
    long = b"x" * 300
    rows = [b"\xef\xbb\xbffile,caption", b'c0.png,"two\r\nlines"', b"c1.png,plain",
            b'c0.png,"a ""quoted"" one"', b'c2.png,"x\ny"', b"c1.png," + long, b"c9.png,missing", b"",
            b'c0.png,"multi\rline\r\nthree"', b"c2.png,extra,fields", b'c1.png,"x"y',
            b'c0.png,"long ' + long + b'\r\nstill"', b"c0.png,caf\xe9", b"c1.png,last"]
    text = b"\r\n".join(rows)
    (root / "t.csv").write_bytes(text)
    return root / "t.csv"


@pytest.fixture
def small_csv_fields():
    """csv.field_size_limit lowered to 200 (in this process: FnApiRunner runs here), so a long field is
    a parser error, the one bad line the csv module raises on."""
    import csv

    old = csv.field_size_limit(200)
    yield
    csv.field_size_limit(old)


def _jsonl(tmp_path):
    """JSONL with blank lines, CRLF, a bad line and a non-object, a repeated file: 10 records."""
    root = tmp_path / "jsonl"
    root.mkdir()
    for i in range(2):
        (root / f"j{i}.png").write_bytes(_png(i))
    lines = [b'{"file": "j0.png", "caption": "a"}', b"", b'{"file": "j1.png", "caption": "b"}\r',
             b"not json", b"   ", b'{"file": "j0.png", "caption": "c\\nd"}', b"[1, 2]",
             b'{"file": "j9.png"}', b'{"file": "j0.png", "caption": "caf\xe9"}', b"\r",
             b'{"file": "j1.png"}', b'{"file": "j0.png", "x": 1}', b'{"file": "j1.png"}']
    (root / "t.jsonl").write_bytes(b"\n".join(lines))
    return root / "t.jsonl"


def _img2dataset(tmp_path):
    """3 shards of 3 rows (units of 4 records span shards), a url repeated across shards, a failure."""
    folder = tmp_path / "i2d"
    folder.mkdir()
    for s in range(3):
        rows, members = [], []
        for j in range(3):
            key = f"{s:05d}{j:04d}"
            ok = (s, j) != (1, 1)
            url = "http://h/same.jpg" if j == 0 else f"http://h/{s}-{j}.jpg"
            rows.append({"url": url, "caption": f"c{s}{j}", "key": key,
                         "status": "success" if ok else "failed_to_download",
                         "error_message": None if ok else "HTTP Error 404"})
            if ok:
                members.append((key, _png(s * 3 + j)))
        pq.write_table(pa.Table.from_pylist(rows[::-1]), folder / f"{s:05d}.parquet")
        with tarfile.open(folder / f"{s:05d}.tar", "w") as tar:
            for key, body in members:
                info = tarfile.TarInfo(f"{key}.jpg")
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    return folder


def _files(out):
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def _loop_then(src: str, out, read, loop=None, **kw):
    """(the loop's files, its summary, ``read``'s summary), both written to the same ``out`` folder
    (the summary names it), the loop's output moved away in between."""
    loop = (loop or (lambda src, out: write_records(src, out, shard_size=SHARD)))(src, str(out))
    files = _files(out)
    out.rename(out.with_name(out.name + "-loop"))
    return files, loop, read(src, str(out), **kw)


INPUTS = {"folder": _folder, "parquet": _parquet, "csv": _csv, "jsonl": _jsonl, "img2dataset": _img2dataset}


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_graph_split_into_units_writes_the_loops_bytes(name, tmp_path, small_csv_fields):
    src = str(INPUTS[name](tmp_path))
    out = tmp_path / "out"
    files, loop, graph = _loop_then(src, out, run_graph, shard_size=SHARD, unit_rows=UNIT_ROWS,
                                    runner="fnapi")
    want_units = -(-loop["read"] // UNIT_ROWS)
    assert graph.get("units", 1) == want_units
    assert want_units == 1 or want_units >= 3
    if name in ("csv", "jsonl"):
        assert loop["rejected"]["bad_row"] == 2 and graph["units"] == want_units
    assert _files(out) == files and len(files) >= 4
    for s in (loop, graph):
        assert s["read"] == s["kept"] + sum(s["rejected"].values())
    assert {k: v for k, v in graph.items() if k not in ("seconds", "units")} == {
        k: v for k, v in loop.items() if k != "seconds"}


@pytest.mark.parametrize("make", [_csv, _jsonl])
def test_text_table_read_from_each_mark_gives_the_loops_rows(make, tmp_path, small_csv_fields):
    """The launcher's pre-pass (mining/readers/line_marks.py) and the slice reader, for every unit size
    (each record a unit start once) and a limit: the rows, bad lines' numbers included, are the loop's."""
    from itertools import islice

    from mining.readers import line_marks
    from mining.readers.table_rows import iter_table_rows, iter_text_slice

    path = str(make(tmp_path))
    loop = list(iter_table_rows(path))
    scan = line_marks.csv_marks if path.endswith(".csv") else line_marks.line_marks
    for every in range(1, len(loop) + 1):
        marks, n = scan(path, every)
        assert n == len(loop) and len(marks) == -(-n // every) - 1
        got = loop[:every] + [r for m in marks for r in islice(iter_text_slice(path, m), every)]
        assert got == loop
    marks, n = scan(path, 3, limit=7)
    assert n == 7 and len(marks) == 2


def test_limit_on_a_split_csv_writes_the_loops_bytes(tmp_path, small_csv_fields):
    src = str(_csv(tmp_path))
    out = tmp_path / "out"
    files, loop, graph = _loop_then(src, out, run_graph, shard_size=SHARD, unit_rows=UNIT_ROWS, limit=9,
                                    loop=lambda s, o: write_records(s, o, shard_size=SHARD, limit=9))
    assert loop["read"] == 9 and graph["units"] == 3 and _files(out) == files


def test_repeats_across_units_keep_their_occurrence_keys(tmp_path):
    src = _parquet(tmp_path)
    units, _ = ru.plan_units(str(src), "table", SHARD, UNIT_ROWS)
    assert [u["start"] for u in units] == [0, 4, 8] and ru.needs_key_offsets(units)
    # "p0.png" occurs at rows 0, 2, 4, 7, 10 and "http://u/x" at rows 1, 6, 9: the units after the first
    # start their counters where the earlier ones stopped.
    sources = [ru.unit_sources(u) for u in units]
    p0 = str(src.parent / "p0.png")
    assert [c[p0] for c in sources] == [2, 2, 1] and [c["http://u/x"] for c in sources] == [1, 1, 1]
    offsets = dict(ru.repeat_offsets((p0, [(2, 1), (0, 2), (1, 1)])))
    assert offsets == {1: (p0, 2), 2: (p0, 3)}
    run_graph(str(src), str(tmp_path / "g"), shard_size=SHARD, unit_rows=UNIT_ROWS)
    rows = storage.read_parquet(str(tmp_path / "g")).to_pylist()
    assert [r["key"] for r in rows if r["url"] == p0] == [url_key(p0, n) for n in range(5)]
    x = "http://u/x"
    assert [r["key"] for r in rows if r["url"] == x] == [url_key(x, n) for n in range(3)]


def test_cli_runner_direct_mp_matches_the_loop(tmp_path, capsys):
    src = str(_img2dataset(tmp_path))
    out = tmp_path / "out"

    def cli(src, out, *runner):
        return cli_main(["--input", src, "--output", out, "--shard-size", str(SHARD),
                         "--unit-rows", str(UNIT_ROWS), *runner])

    files, _, summary = _loop_then(src, out, lambda s, o: cli(s, o, "--runner", "direct-mp",
                                                              "--workers", "2"), loop=cli)
    assert summary["units"] == 3 and summary["read"] == 9 and summary["rejected"] == {"download_failed": 1}
    assert _files(out) == files
    capsys.readouterr()


def test_input_errors_stay_one_line_errors_on_the_graph(tmp_path):
    from core.cli import InputError

    (tmp_path / "empty.csv").write_text("file,caption\n")
    with pytest.raises(InputError, match="empty input"):
        run_graph(str(tmp_path / "empty.csv"), str(tmp_path / "o"))
    with pytest.raises(Exception, match="Beam option"):
        cli_main(["--input", str(tmp_path / "empty.csv"), "--output", str(tmp_path / "o2"),
                  "--direct_num_workers", "2"])


def test_dask_cluster_writes_the_loops_bytes(tmp_path):
    """DaskRunner on a loopback cluster (pipelines/dask_cluster.py): the pre-pass, the join and the one
    sink run there as on FnApiRunner (the lead's tests/test_dask_runner.py covers the other stages)."""
    from pipelines import dask_cluster

    why = dask_cluster.skip_reason()
    if why:
        pytest.skip(why)
    c = dask_cluster.start(str(tmp_path / "logs"), n_workers=2, timeout=120)
    try:
        src = str(_img2dataset(tmp_path))
        out = tmp_path / "out"
        files, _, graph = _loop_then(src, out, run_graph, shard_size=SHARD, unit_rows=UNIT_ROWS,
                                     runner="dask", beam_args=dask_cluster.beam_args(c))
    finally:
        dask_cluster.stop(c)
    assert graph["units"] == 3 and _files(out) == files


@pytest.fixture
def url_server():
    """PNGs on a loopback HTTP server (tests/test_img2dataset_loopback.py's)."""
    from tests.test_img2dataset_loopback import _Server

    with _Server({f"/i{i}.png": _png(i) for i in range(4)}) as server:
        yield server


URL_DL = {"processes": 1, "threads": 4, "timeout": 5, "retries": 0, "shard_samples": 2,
          "allow_private_addresses": True}  # img2dataset shards of 2: a unit of 4 rows is two of them


def _url_list(base: str) -> list[str]:
    """11 URL rows, units of 4: the first and last units hold only refused URLs (they run no img2dataset;
    one repeats across units), the middle one downloads as img2dataset shards 2 and 3 of the whole
    input: two images, a 404, a URL repeated within the unit."""
    ok = [f"{base}/i{i}.png" for i in range(2)]
    return ["ftp://h/x.png", "file:///etc/passwd", "ftp://h/a", "gopher://h/c",
            ok[0], ok[1], f"{base}/missing.png", ok[0],
            "ftp://h/x.png", "ftp://h/b", "javascript:x"]


def test_url_list_split_into_units_writes_the_loops_bytes(url_server, tmp_path):
    """A URL list (blank lines, CRLF) downloaded by one img2dataset run (the loop) and by a run per unit:
    the same shards (img2dataset's shard names and sample keys in source_meta included) and summary,
    reader counts included. Two img2dataset runs in all (each costs seconds of process start-up)."""
    urls = _url_list(url_server.base)
    src = tmp_path / "urls.txt"
    src.write_bytes(b"\r\n".join(u.encode() + (b"\r\n  " if i == 5 else b"") for i, u in enumerate(urls)))
    out = tmp_path / "out"
    files, loop, graph = _loop_then(str(src), out, run_graph, shard_size=SHARD, unit_rows=UNIT_ROWS,
                                    runner="fnapi", loop=lambda s, o: write_records(s, o, shard_size=SHARD,
                                                                                    **URL_DL), **URL_DL)
    assert graph["units"] == 3 and loop["read"] == 11
    assert loop["rejected"] == {"download_failed": 1, "unsupported_url_scheme": 7}
    assert loop["reader_stats"]["counts"] == loop["rejected"]  # a refused row counts once
    assert _files(out) == files
    assert {k: v for k, v in graph.items() if k not in ("seconds", "units")} == {
        k: v for k, v in loop.items() if k != "seconds"}
    rows = storage.read_parquet(str(out)).to_pylist()
    metas = [json.loads(r["source_meta"]).get("img2dataset", {}) for r in rows[4:8]]
    assert [m.get("shard") for m in metas] == ["00002", "00002", "00003", "00003"]
    for url, n in ((url_server.base + "/i0.png", 2), ("ftp://h/x.png", 2)):
        assert [r["key"] for r in rows if r["url"] == url] == [url_key(url, i) for i in range(n)]


@pytest.mark.parametrize("fmt", ["txt", "csv", "jsonl", "parquet"])
def test_url_table_units_read_the_loops_rows(fmt, tmp_path):
    """A URL list (blank lines) and a url-only table are split alike: each unit's rows (what its
    download gets) are the loop's, in order, and the key pre-pass counts every row's url (no download)."""
    urls = _url_list("http://127.0.0.1:9") + ["http://h/z.png"]
    src = tmp_path / f"t.{fmt}"
    rows = [{"url": u, "caption": f"cap {i}\r\nline two"} for i, u in enumerate(urls)]
    if fmt == "txt":
        src.write_text("\n \n".join(r["url"] for r in rows))
        rows = [{"url": r["url"]} for r in rows]
    elif fmt == "csv":
        body = "".join(f'{r["url"]},"{r["caption"]}"\r\n' for r in rows)
        src.write_bytes(b"url,caption\r\n" + body.encode())
    elif fmt == "jsonl":
        src.write_text("\n\n".join(json.dumps(r) for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), src, row_group_size=3)
    kind = "urls" if fmt == "txt" else "table"
    units, _ = ru.plan_units(str(src), kind, SHARD, UNIT_ROWS, shard_samples=2)
    from mining.readers.table_rows import iter_table_rows
    from mining.readers.urls import iter_url_lines

    assert [(u["kind"], u["start"], u["rows"]) for u in units] == [("urls", a, 4) for a in (0, 4, 8)]
    loop = list(iter_url_lines(str(src)) if fmt == "txt" else iter_table_rows(str(src)))
    assert [r for u in units for r in ru._url_unit_rows(u)] == loop and len(loop) == 12
    assert sum((ru.unit_sources(u) for u in units), Counter())["ftp://h/x.png"] == 2
    assert ru.needs_key_offsets(units)
    assert len(ru.plan_units(str(src), kind, SHARD, UNIT_ROWS, shard_samples=3)[0]) == 2  # lcm(2, 3) = 6

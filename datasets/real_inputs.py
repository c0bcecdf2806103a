"""Small task-stage inputs from a real captioned image folder (``metadata.csv`` with ``file``,
``caption`` and optionally ``main_category``), for tests, pictures and the docs' mixture table.

``OUT`` is a run folder (``core.contracts.RunLayout``), so ``pipelines.build_tasks --input OUT``
reads it: ``OUT/mined/kept/part-00000.parquet`` (record schema + ``quality``, ``domain``) and, when
the folder has categories, ``OUT/clusters/clusters.parquet``: label-based 5-pair clusters (five
images of one category), a stand-in for the clustering stage's output with the same columns.

    python -m datasets.real_inputs --src ../shared/data/coco_mini --out out/coco_inputs [--n 0]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
from collections import defaultdict

from core import storage
from core.contracts import RunLayout, make_record, schema_for, url_key

CLUSTER_SIZE = 5


def write_inputs(src: str, out: str, n: int | None = None, quality: float = 0.8) -> dict[str, int]:
    """Write kept rows (and clusters when categories exist); returns counts."""
    with open(os.path.join(src, "metadata.csv"), newline="", encoding="utf-8") as fh:
        meta = list(csv.DictReader(fh))
    meta.sort(key=lambda r: r["file"])
    if n:
        meta = meta[:n]
    rows, by_cat = [], defaultdict(list)
    for r in meta:
        path = os.path.join(src, r["file"])
        with open(path, "rb") as fh:
            data = fh.read()
        rec = make_record(key=url_key(path), url=path, caption=r.get("caption"), image=data, source="folder",
                          source_meta={"file": r["file"]})
        cat = r.get("main_category") or ""
        rec["quality"] = quality
        rec["domain"] = cat or "photo"
        rows.append(rec)
        if cat:
            by_cat[cat].append(rec)
    extra = schema_for(rows)
    storage.write_parquet(
        rows, storage.join(RunLayout.kept(RunLayout(out).mined), "part-00000.parquet"), extra
    )
    clusters = []
    for cat in sorted(by_cat):
        recs = by_cat[cat]
        for i in range(0, len(recs) - CLUSTER_SIZE + 1, CLUSTER_SIZE):
            group = recs[i : i + CLUSTER_SIZE]
            cid = hashlib.sha1(("|".join(g["key"] for g in group)).encode()).hexdigest()[:16]
            clusters.append({"cluster_id": cid, "domain": cat, "keys": [g["key"] for g in group],
                             "urls": [g["url"] for g in group], "similarities": [1.0] * CLUSTER_SIZE})
    if clusters:
        _write_clusters(clusters, out)
    return {"records": len(rows), "clusters": len(clusters)}


def _write_clusters(clusters: list[dict], out: str) -> None:
    import pyarrow as pa

    table = pa.Table.from_pylist(clusters, schema=pa.schema([
        ("cluster_id", pa.string()), ("domain", pa.string()), ("keys", pa.list_(pa.string())),
        ("urls", pa.list_(pa.string())), ("similarities", pa.list_(pa.float32()))]))
    storage.write_parquet(table, RunLayout.clusters_table(RunLayout(out).clusters))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--src", required=True, help="image folder with metadata.csv")
    ap.add_argument(
        "--out", required=True, help="run folder to write (mined/kept/, clusters/clusters.parquet)"
    )
    ap.add_argument("--n", type=int, default=0, help="first N images by file name (0 = all)")
    args = ap.parse_args(argv)
    print(json.dumps(write_inputs(args.src, args.out, args.n or None)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

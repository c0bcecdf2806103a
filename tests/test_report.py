"""The HTML report renders in a real headless Chromium: clusters, rejects and images that decode."""

import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from core import contracts as schema
from core import storage
from pipelines.report import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _jpeg(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, "JPEG")
    return buf.getvalue()


def _fake_run(run):
    """A run that is not the demo: stage summaries, mined records with quality and domain, clusters,
    duplicates, embeddings in clip-retrieval's layout and a dataset card (no demo_summary.json)."""
    recs = [
        schema.make_record(
            key=f"k{i}",
            url=f"u{i}",
            caption=f"caption {i}",
            image=_jpeg((40 * i, 90, 200 - 30 * i)),
            source="t",
        )
        for i in range(6)
    ]
    recs.append(schema.make_record(key="bad", url="ub", caption="broken", image=b"\xff\xd8trunc", source="t"))
    storage.write_parquet(recs, str(run / "records" / "records-00000.parquet"))
    kept = [
        dict(r, quality=0.4 + 0.1 * i, domain="art" if i % 2 else "animals") for i, r in enumerate(recs[:6])
    ]
    storage.write_parquet(kept, str(run / "mined" / "kept" / "kept-00000.parquet"))
    storage.write_parquet(
        [
            {
                "cluster_id": "c0",
                "domain": "art",
                "keys": [f"k{i}" for i in range(5)],
                "urls": [f"u{i}" for i in range(5)],
                "similarities": [1.0, 0.9, 0.8, 0.7, 0.6],
            }
        ],
        str(run / "clusters" / "clusters.parquet"),
    )
    storage.write_parquet(
        [{"key": "k5", "duplicate_of": "k4", "reason": "phash"}], str(run / "clusters" / "duplicates.parquet")
    )
    (run / "clusters" / "summary.json").write_text(json.dumps({
        "stage": "cluster", "read": 6, "kept": 5, "rejected": {"duplicate_phash": 1}, "accounted": True,
        "clusters_kept": 1, "clusters_too_small": 2, "clusters_weak": 3, "duplicates_removed": {"phash": 1},
        "config": {"max_distance_ratio": 2.0}}))
    emb = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
    (run / "clusters" / "embeddings" / "img_emb").mkdir(parents=True)
    np.save(run / "clusters" / "embeddings" / "img_emb" / "img_emb_0.npy", emb)
    storage.write_parquet([{"key": r["key"], "domain": r["domain"]} for r in kept],
                          str(run / "clusters" / "embeddings" / "metadata" / "metadata_0.parquet"))
    storage.write_parquet([schema.reject(recs[-1], "mine", "truncated_image", "image file is truncated")],
                          str(run / "mined" / "rejects" / "rejects-00000.parquet"), schema.REJECT_SCHEMA)
    (run / "mined" / "summary.json").write_text(json.dumps(
        {"stage": "mine", "read": 7, "kept": 6, "rejected": {"truncated_image": 1}, "accounted": True,
         "config": {"min_quality": 0.35}}))
    (run / "tasks").mkdir()
    (run / "tasks" / "card.json").write_text(
        json.dumps(
            {
                "title": "Instruct-Imagen multi-modal instruction tasks",
                "total_samples": 3,
                "tasks": [
                    {"task": "t2i", "written": 3, "rejected": {}},
                    {"task": "control_edge", "written": 0, "rejected": {"x": 1}},
                ],
                "records": {"read": 6, "kept": 3, "rejected": {"unused": 3}},
            }
        )
    )


def test_report_of_a_run_that_is_not_the_demo(tmp_path):
    run = tmp_path / "run"
    _fake_run(run)
    page = open(build_report(str(run), str(run / "report"))["outputs"]["html"]).read()
    assert "No demo summary" not in page and "<code>mined</code>" in page and "<code>clusters</code>" in page
    assert page.count('<svg class="chart"') >= 4  # quality, domains, two coherence histograms
    assert "min_quality 0.35" in page and "distance-ratio test" in page and "clusters weak" in page
    assert page.count('class="pair"') == 1 and "removed: caption 5" in page and "kept: caption 4" in page
    assert 'alt="embedding map"' in page and "animals (3)" in page
    assert (
        "<th>task</th>" in page
        and "control_edge" in page
        and "{" not in page.split("Dataset card")[1].split("<h2")[0]
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it)")
def test_report_renders_in_headless_chromium(tmp_path):
    run = tmp_path / "run"
    _fake_run(run)
    html_path = build_report(str(run), str(run / "report"))["outputs"]["html"]
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", f"file://{html_path}"],
        capture_output=True, text=True, timeout=120,
    ).stdout
    attrs = dict(re.findall(r'data-(\w+)="(\d+)"', dom.split("<body", 1)[1].split(">", 1)[0]))
    assert (
        attrs["clusters"] == "1"
        and attrs["pairs"] == "1"
        and attrs["maps"] == "1"
        and int(attrs["charts"]) >= 4
    )
    assert int(attrs["images"]) >= 5 and attrs["decoded"] == attrs["images"]  # every thumbnail decoded
    assert "truncated_image" in dom and "caption 3" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1200,900",
                    f"--screenshot={shot}", f"file://{html_path}"], capture_output=True, timeout=120)
    im = Image.open(shot).convert("L")
    assert im.size == (1200, 900) and im.getextrema()[0] < 100  # something dark was drawn on the page

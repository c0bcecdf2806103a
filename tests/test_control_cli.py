"""CLI: one 8-bit PNG per image named by stem, rejects counted, reruns skip finished files."""

import json

import numpy as np
from PIL import Image

from datasets.control.__main__ import main


def _write_list(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("a.jpg", (48, 40)), ("b.png", (33, 57))):
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(d / name)
    (d / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "list.csv").write_text(
        "file,caption\nimgs/a.jpg,x\nimgs/b.png,y\nimgs/broken.jpg,z\nimgs/gone.jpg,w\n"
    )
    return str(tmp_path / "list.csv")


def test_edges_cli_writes_png_per_image(tmp_path, capsys):
    lst = _write_list(tmp_path)
    out = tmp_path / "edges"
    s = main(["edges", "--images", lst, "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    a = Image.open(out / "a.png")
    assert a.mode == "L" and a.size == (40, 48)
    assert s["read"] == 4 and s["kept"] == 2 and s["rejected"] == {"decode_error": 1, "missing_file": 1}
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["kept"] == 2
    again = main(["edges", "--images", lst, "--out", str(out)])
    assert again["skipped_existing"] == 2 and again["kept"] == 0


def test_sketch_and_masks_cli(tmp_path):
    lst = _write_list(tmp_path)
    for kind in ("sketch", "masks"):
        out = tmp_path / kind
        s = main([kind, "--images", lst, "--out", str(out)])
        assert s["kept"] == 2
        arr = np.asarray(Image.open(out / "b.png"))
        assert arr.shape == (33, 57) and set(np.unique(arr)) <= {0, 255}

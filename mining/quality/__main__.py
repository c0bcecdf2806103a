"""Score a list of images: ``python -m mining.quality --images LIST.csv --out SCORES.csv``.

LIST.csv has a ``file`` column (paths relative to the CSV). SCORES.csv gets ``file,quality``
first, then the parts (``quality_technical``, ``quality_brisque``, ``quality_learned``) and an
``error`` column for files that could not be decoded (their quality is empty).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from core import cli
from core import config as cfgsys
from core.config import knob
from core.decode import decode_image
from core.safe_files import read_file_bytes
from mining.config import MiningConfig

COLUMNS = ("file", "quality", "quality_technical", "quality_brisque", "quality_learned", "error")


@dataclass(frozen=True)
class QualityCommand:
    """The scoring options of ``python -m mining.quality`` (flags, ``--config`` YAML, ``--set``)."""

    weights: str | None = field(default=None, metadata=knob(
        "quality head .npz (default: mining/weights/quality_head.npz)"))
    batch_size: int = field(default=16, metadata=knob("images per model call", min=1))
    use_brisque: bool = field(default=True, metadata=knob(
        "skip BRISQUE (faster; the blend uses its val mean)", flag="--no-brisque"))


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from mining.quality.scorer import get_scorer

    ap = cfgsys.parser_for("python -m mining.quality", __doc__)
    ap.add_argument("--images", required=True, help="CSV with a `file` column, paths relative to it")
    ap.add_argument("--out", required=True, help="output CSV: file,quality,parts...")
    cfgsys.add_flags(ap, QualityCommand, "scoring options")
    cfgsys.add_config_args(ap)
    a, opts, _ = cfgsys.parse(ap, QualityCommand, argv)
    root = Path(a.images).resolve().parent
    with open(a.images, newline="", encoding="utf-8") as fh:
        files = [r["file"] for r in csv.DictReader(fh)]
    scorer = get_scorer(opts.weights, opts.use_brisque)
    cfg = MiningConfig(max_aspect=1e9, min_side=1)
    out_rows = []
    for i in tqdm(range(0, len(files), opts.batch_size), desc="quality", unit="batch"):
        chunk = files[i : i + opts.batch_size]
        images, ok = [], []
        for f in chunk:
            data, error = read_file_bytes(str(root / f))  # regular files only, size-capped
            im, reason, detail = decode_image(data, cfg) if error is None else (None, "read_error", error)
            if im is None:
                out_rows.append({"file": f, "error": f"{reason}: {detail}"[:200]})
            else:
                images.append(im)
                ok.append(f)
        for f, s in zip(ok, scorer.score(images)):
            out_rows.append({"file": f, **{k: (None if v is None else round(v, 6)) for k, v in s.items()}})
    order = {f: i for i, f in enumerate(files)}
    out_rows.sort(key=lambda r: order[r["file"]])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(out_rows)
    from core.storage import atomic_write_bytes

    atomic_write_bytes(str(Path(a.out).resolve()), buf.getvalue().encode("utf-8"))
    print(f"wrote {len(out_rows)} rows to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))

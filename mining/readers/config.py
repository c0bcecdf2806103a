"""Reader options (``python -m mining.readers``): one frozen dataclass, flags/YAML/--set from ``core.config``.

The column options are ``knob(column=True)``: the CLI checks the ones the user set against the
input table's columns before reading, so ``--caption-col captoin`` is an error naming ``caption``
instead of a run of null captions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from core.config import knob, section
from mining.readers.common import DEFAULT_MAX_IMAGE_BYTES
from mining.readers.dispatch import KINDS
from mining.readers.urls import DEFAULTS as U
from mining.readers.urls import DISTRIBUTORS, RESIZE_MODES


@dataclass(frozen=True)
class DownloadConfig:
    """URL inputs, fetched through img2dataset."""

    processes: int = field(default=U["processes"], metadata=knob("img2dataset processes", min=1))
    threads: int = field(default=U["threads"], metadata=knob("download threads per process", min=1))
    timeout: int = field(default=U["timeout"], metadata=knob("seconds per request", min=1))
    retries: int = field(default=U["retries"], metadata=knob("retries per URL", min=0))
    shard_samples: int = field(default=U["shard_samples"], metadata=knob("URLs per img2dataset shard", min=1))
    reencode: str = field(
        default=U["reencode"],
        metadata=knob(
            "none: keep downloaded bytes exactly; skip: decode-check, re-encode non-JPEG",
            choices=("none", "skip"),
        ),
    )
    allow_private_addresses: bool = field(
        default=U["allow_private_addresses"],
        metadata=knob(
            "fetch loopback/link-local/private hosts too (default: private_address reject)",
            flag="--allow-private-addresses",
        ),
    )
    user_agent_token: str | None = field(
        default=U["user_agent_token"], metadata=knob("token added to the user agent")
    )
    distributor: str = field(
        default=U["distributor"],
        metadata=knob(
            "img2dataset's distributor: multiprocessing (local processes) or pyspark (the active Spark "
            "session, else a local one; needs pyspark and Java)",
            choices=DISTRIBUTORS,
        ),
    )
    resize_mode: str = field(
        default=U["resize_mode"],
        metadata=knob("img2dataset's resize on download (anything but no re-encodes every image)",
                      choices=RESIZE_MODES),
    )
    image_size: int = field(
        default=U["image_size"], metadata=knob("target side in px when resize_mode is not no", min=8)
    )


@dataclass(frozen=True)
class ReadersConfig:
    shard_size: int = field(default=1000, metadata=knob("records per output shard", min=1))
    kind: str | None = field(
        default=None, metadata=knob("force the input kind (default: detect it)", choices=KINDS)
    )
    limit: int | None = field(
        default=None, metadata=knob("read at most this many input rows (default: all)", min=0)
    )
    work_dir: str | None = field(default=None, metadata=knob(
        "download folder for URL inputs (default: OUTPUT/_download)"))
    caption_col: str | None = field(default=None, metadata=knob(
        "caption column (default: caption, text, or the first of captions)", column=True))
    path_col: str | None = field(default=None, metadata=knob(
        "image path column (default: the first of path, file, filepath, ...)", column=True))
    url_col: str = field(default="url", metadata=knob("URL column", column=True))
    load_bytes: bool = field(default=True, metadata=knob(
        "local inputs: store only `path`, not the image bytes", flag="--no-bytes"))
    max_image_bytes: int = field(default=DEFAULT_MAX_IMAGE_BYTES, metadata=knob(
        "larger image files (and tar members, downloads) are refused: file_too_large", min=1))
    follow_symlinks: bool = field(default=False, metadata=knob(
        "follow symlinks that point outside the input's folder (default: symlink_outside_root)",
        flag="--follow-symlinks"))
    unit_rows: int = field(default=100_000, metadata=knob(
        "Beam runners: records per read unit, rounded up to whole shards (an input this small is one "
        "unit; docs/readers.md)", min=1))
    download: DownloadConfig = section(DownloadConfig, "download (URL inputs, through img2dataset)")

    def reader_options(self) -> dict:
        """Keyword options for :func:`mining.readers.writer.write_records` (beyond shard/work/kind/limit)."""
        opts = {
            "caption_col": self.caption_col,
            "url_col": self.url_col,
            **dataclasses.asdict(self.download),  # every download knob, by its own name
            "max_image_bytes": self.max_image_bytes,
            "follow_symlinks": self.follow_symlinks,
        }
        if self.path_col:
            opts["path_col"] = self.path_col
        if not self.load_bytes:
            opts["load_bytes"] = False
        return opts

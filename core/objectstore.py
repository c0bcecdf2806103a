"""Folder semantics on object stores (``s3://``, ``gs://``), where folders do not exist as objects.

On a local disk ``run/mined/kept`` is a directory that exists. On S3 or GCS it is only a key
prefix: ``FileSystems.exists`` says False for it, although ``run/mined/kept/a.parquet`` is there.
Code that asks "does this output folder exist?" therefore has to ask "is there any object under
this prefix?" on those filesystems; :func:`exists` and :func:`is_dir` do that, and fall back to the
plain checks for local paths.

Beam's S3 filesystem also needs pipeline options before its first use, even outside a pipeline
(the launcher lists inputs and reads summaries itself). :func:`configure` gives the process
options parsed from its command line (so ``--s3_endpoint_url``, ``--s3_region_name``... work in the
launcher too); with none of those flags boto3 reads its usual environment (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ...). It runs once when this module is imported and never replaces options
that a Beam worker has already set.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence

from apache_beam.io.filesystems import FileSystems

REMOTE_MARK = "://"


def configure(argv: Sequence[str] | None = None, force: bool = False) -> None:
    """Give Beam's filesystems pipeline options from ``argv`` (default: this process's arguments)."""
    if FileSystems._pipeline_options is not None and not force:
        return
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(sys.argv[1:] if argv is None else argv)
    FileSystems.set_options(PipelineOptions(_store_flags(args)))


def _store_flags(args: list[str]) -> list[str]:
    """Only the object-store flags (``--s3_*``, with their values): the rest of a command line is
    the stage's own and may not parse as Beam options."""
    out = []
    for i, a in enumerate(args):
        if a.startswith("--s3_"):
            out.append(a)
            if "=" not in a and i + 1 < len(args) and not args[i + 1].startswith("--"):
                out.append(args[i + 1])
    return out


_S3_FIELDS = ("s3_access_key_id", "s3_secret_access_key", "s3_session_token", "s3_endpoint_url",
              "s3_region_name", "s3_api_version", "s3_verify", "s3_disable_ssl")


def share_s3_clients() -> bool:
    """Make Beam's S3 filesystem reuse one boto3 client per process and configuration.

    Beam 2.77 builds a new boto3 client for every ``exists``/``open``/``match`` call; that costs
    about 30x the request itself (0.84 s against 0.027 s per ``exists`` against a loopback server,
    measured on this 2-core machine under load), so a reader touching one object per image spends
    its time making clients. boto3 clients are thread-safe; the per-download state stays on each
    Beam wrapper. Returns False when Beam's AWS extra is not installed.
    """
    try:
        from apache_beam.io.aws.clients.s3 import boto3_client
    except ImportError:
        return False
    cls = boto3_client.Client
    if getattr(cls, "_iidata_shared", False):
        return True
    original, cache, lock = cls.__init__, {}, threading.Lock()

    def init(self, options):
        key = (os.getpid(), os.environ.get("AWS_ENDPOINT_URL"), _s3_values(options))
        with lock:
            client = cache.get(key)
        if client is None:
            original(self, options)
            with lock:
                cache.setdefault(key, self.client)
            return
        self.client = client
        self._download_request, self._download_stream, self._download_pos = None, None, 0

    cls.__init__, cls._iidata_shared = init, True
    return True


def _s3_values(options) -> tuple:
    from apache_beam.options.pipeline_options import PipelineOptions, S3Options

    if isinstance(options, PipelineOptions):
        view = options.view_as(S3Options)
        return tuple(getattr(view, f) for f in _S3_FIELDS)
    return tuple((options or {}).get(f) for f in _S3_FIELDS)


def is_remote(path: str) -> bool:
    return REMOTE_MARK in path


def has_children(path: str) -> bool:
    """True when at least one object lies under the prefix ``path/``."""
    prefix = path.rstrip("/") + "/"
    try:
        found = FileSystems.match([prefix + "**"], limits=[1])[0].metadata_list
    except Exception:  # noqa: BLE001 - a bucket that does not exist, or no such scheme installed
        return False
    return bool(found)


def exists(path: str) -> bool:
    """A file, a local folder, or a remote prefix with at least one object under it."""
    if FileSystems.exists(path):
        return True
    return is_remote(path) and has_children(path)


def is_dir(path: str) -> bool:
    """A local folder; a remote prefix given with a trailing slash, or one that is not an object
    itself but has objects under it."""
    if not is_remote(path):
        return os.path.isdir(path)
    if path.endswith("/"):
        return True
    return not FileSystems.exists(path) and has_children(path)


configure()
share_s3_clients()

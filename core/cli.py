"""What every command line does with a user's mistake: one clear line on stderr and exit 2.

``raise SystemExit(cli.run(main))`` at the bottom of a ``__main__``: a missing input, an empty
table, a wrong column or a bad option value (:class:`InputError` and the OS "no such file"
family) prints ``error: <message>`` and exits 2; anything else is a bug and keeps its
traceback. ``--debug`` anywhere on the command line shows the traceback for user errors too.
stdout is reserved for the command's JSON summary: :func:`stdout_to_stderr` sends library
chatter (img2dataset's progress, model loading) to stderr, child processes included.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any


class InputError(ValueError):
    """A user's input or option is unusable (empty, missing a column, a gzip bomb): a one-line message."""


# Disk full, quota, read-only output: the machine's state, not a bug, so one line too.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
USER_ERRORS = (InputError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def run(main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> int:
    """Call ``main(argv)``; a user error becomes ``error: ...`` on stderr and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        result = main(argv)
    except (*USER_ERRORS, OSError) as exc:
        if debug or (not isinstance(exc, USER_ERRORS) and exc.errno not in ENVIRONMENT_ERRNOS):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


def require(condition: bool, message: str) -> None:
    """Raise :class:`InputError` with ``message`` unless ``condition`` (option checks)."""
    if not condition:
        raise InputError(message)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Point file descriptor 1 (and ``sys.stdout``) at stderr for the block, child processes included."""
    sys.stdout.flush()
    fd, err_fd = 1, 2  # the descriptors child processes inherit, whatever sys.stdout is
    try:
        saved = os.dup(fd)
    except OSError:  # no descriptor 1: Python level only
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    try:
        os.dup2(err_fd, fd)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, fd)
        os.close(saved)

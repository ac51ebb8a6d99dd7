"""The one error path: ``UserError`` means "the user asked for something that cannot run".

Every entry point (the runner, the report, sync, the output-dir preflight) turns it into the same thing:
one line ``error: <what is wrong and how to fix it>`` on stderr and exit status ``EXIT_USER_ERROR``.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path

from lstm_exp.common.credentials import mask

EXIT_USER_ERROR = 2
EXIT_NOT_RECORDED = 3  # trained, but its MLflow records wait in the run folder's spool for python -m lstm_exp.sync


class UserError(ValueError):
    """A bad setting, input file or selection, reported as one readable line naming the problem and the fix."""


class Unwritable(UserError):
    """A file the run needs could not be written (its disk is full, its folder was deleted): nothing half-written is
    left, and the run stops with this one line."""


class DiskFull(Unwritable):
    """Its disk (or quota) is full."""


FULL = (errno.ENOSPC, errno.EDQUOT)


def full_disk(error: BaseException, path) -> Unwritable | None:
    """The Unwritable to raise for an OSError that says the disk is full or the folder is gone, else None."""

    if isinstance(error, OSError) and error.errno in FULL:
        return DiskFull(f"the disk is full: {path} could not be written ({error.strerror})")
    if isinstance(error, FileNotFoundError) and not Path(path).parent.exists():
        return Unwritable(f"the folder {Path(path).parent} was deleted while this run wrote to it")
    return None


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type's name if it has none)."""
    lines = str(getattr(error, "message", None) or error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def complain(message: str) -> int:
    """Print ``error: message`` to stderr (the only place that does; never a URI's password); its exit status."""
    print(f"error: {mask(message)}", file=sys.stderr)
    return EXIT_USER_ERROR


def warn(message: str) -> None:
    """Print ``warning: message`` to stderr: something went wrong that the run survives (never a URI's password)."""
    print(f"warning: {mask(message)}", file=sys.stderr)


def refuse(message: str) -> None:
    """complain(message) and exit with its status (never returns)."""
    raise SystemExit(complain(message))

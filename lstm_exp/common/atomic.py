"""Every state file the tool writes is written whole or not at all: a temporary file, fsync, then rename.

A crash (or a full disk) mid-write leaves the previous file, never half of a new one.
"""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path, data: str | bytes | None = None, *, write=None) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) — or call ``write(file)`` on a binary file — to ``path`` atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            if write is not None:
                write(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path

"""Every state file the tool writes is written whole or not at all: a temporary file, fsync, then rename.

A crash (or a full disk) mid-write leaves the previous file, never half of a new one.
"""

from __future__ import annotations

import os
from pathlib import Path

from lstm_exp.common.credentials import mask
from lstm_exp.common.errors import full_disk


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
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        full = full_disk(e, path)
        if full is not None:
            raise full from None
        raise
    return path


def mask_files(paths) -> None:
    """Rewrite each file (whole or not at all) with every URI's password masked: Hydra saves the command line and
    the composed config (``.hydra/*.yaml``, ``multirun.yaml``) as given."""
    for path in paths:
        text = path.read_text(encoding="utf-8")
        if mask(text) != text:
            atomic_write(path, mask(text))

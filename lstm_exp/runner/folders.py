"""Every launch gets a folder of its own: ``${fresh:outputs/runs/<date>/<time>}`` in Hydra's run and sweep dirs.

Hydra names run and sweep folders by the second; two launches in the same second would share one (the second run's
``.hydra/`` overwriting the first's, two sweeps' jobs refusing each other). The ``fresh`` resolver claims its folder
with ``mkdir``, which exactly one process can win: the first launch gets ``10-15-03``, the next ``10-15-03-2``. Its
answer is cached in the config (as Hydra's ``now`` is), so every later reading in the process, and a sweep's jobs
elsewhere (Slurm), get the same folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

MAX_TRIES = 1000


def fresh(path: str) -> str:
    """``path``, or ``path-2``, ``path-3``, ...: the first of them this process could create (a folder it cannot
    create at all is returned as given, for the output-folder check to refuse with the reason)."""
    base = Path(path)
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return path
    for n in range(1, MAX_TRIES + 1):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            os.mkdir(candidate)
            return str(candidate)
        except FileExistsError:
            continue
        except OSError:
            return path
    return path


def register() -> None:
    """Make ``${fresh:...}`` known to OmegaConf (idempotent)."""
    OmegaConf.register_new_resolver("fresh", fresh, use_cache=True, replace=True)

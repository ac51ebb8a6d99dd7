"""``python -m lstm_exp resume=<sweep folder>``: finish a stopped sweep as the same sweep.

The command is turned into the sweep's own multirun again, from the overrides its folder recorded
(``multirun.yaml``), into the same folder and with ``resume=<sweep folder>``: the callback then reopens the
sweep's parent runs instead of opening new ones, and every job decides for itself what is left
(``lstm_exp.runner.continuation``): a finished job is kept, an interrupted one resumes from its checkpoint into its
own run, a failed one runs again (``resume_failed=skip``: not), one that never started starts. Only what changes
how the sweep runs may be given beside ``resume=``; any other override is refused with the difference listed.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from omegaconf import OmegaConf

from lstm_exp.common.credentials import is_masked
from lstm_exp.common.errors import UserError

# what may change when a sweep is finished: how it runs, not what it computes
HOW_IT_RUNS = ("hydra.launcher.", "hydra/launcher", "tracking.uri", "progress", "resume_failed", "blas_threads")


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def sweep_folder(argv: list[str]) -> Path | None:
    """The folder of ``resume=<folder>`` when it holds a sweep (Hydra's ``multirun.yaml``), else None."""
    targets = [a.split("=", 1)[1] for a in argv if a.startswith("resume=")]
    if len(targets) != 1:
        return None
    folder = Path(targets[0]).expanduser()
    return folder if (folder / "multirun.yaml").is_file() else None


def recorded(folder: Path) -> tuple[list[str], list[str]]:
    """The sweep's own (task overrides, Hydra overrides) as it recorded them."""
    try:
        saved = OmegaConf.load(folder / "multirun.yaml")
        return list(saved.hydra.overrides.task), list(saved.hydra.overrides.hydra)
    except Exception as e:  # a folder whose record is damaged cannot be continued as the same sweep
        raise UserError(f"resume={folder}: its multirun.yaml cannot be read ({type(e).__name__}: {e})") from None


def continue_argv(argv: list[str]) -> list[str] | None:
    """The multirun command that finishes the sweep ``resume=`` names, or None when it names no sweep; UserError
    for an override that would change what the sweep computes."""
    folder = sweep_folder(argv)
    if folder is None:
        return None
    task, hydra = recorded(folder)
    given = [a for a in argv if not a.startswith("resume=") and a not in ("-m", "--multirun")]
    changed = [a for a in given if not key_of(a).startswith(HOW_IT_RUNS) and a not in task]
    if changed:
        raise UserError(
            f"resume={folder} finishes the sweep with its own settings; not with {' '.join(changed)} (it ran with "
            f"{' '.join(task) or 'no overrides'}); to change them, start a new sweep"
        )
    replaced = {key_of(a) for a in given}
    keep = [o for o in [*hydra, *task] if key_of(o) not in replaced and not key_of(o).startswith("hydra.sweep.dir")]
    masked = [o for o in keep if key_of(o) == "tracking.uri" and is_masked(o.split("=", 1)[1])]
    if masked:
        raise UserError(f"resume={folder}: the sweep's {masked[0]} was saved without its password; add tracking.uri=")
    return ["-m", *keep, *given, f"hydra.sweep.dir={folder}", f"resume={folder}"]


def command(folder) -> str:
    """The one command that finishes the sweep in ``folder``."""
    return f"python -m lstm_exp resume={shlex.quote(str(folder))}"

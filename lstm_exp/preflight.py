"""Checks Hydra cannot make for us, run before it creates the run's output directory."""

from __future__ import annotations

import os
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lstm_exp.errors import refuse


def unwritable_reason(directory: Path) -> str | None:
    """Why ``directory`` cannot be created or written, or None if it can."""
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"'{existing}' is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"'{existing}' is not writable"
    return None


CONF = Path(__file__).resolve().parents[1] / "conf"


def composition_error(overrides: list[str]) -> str | None:
    """One line for command-line overrides that do not compose, or None.

    Hydra reports these itself in several lines with exit 1; composing once here first gives the same
    refusal in the project's one-line form. Hydra's flags (``-m``, ``--cfg``, ``--help``, ...) are left
    to Hydra: with any of them nothing is checked here.
    """
    if any(arg.startswith("-") for arg in overrides):
        return None
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from lstm_exp.schema import register

    register()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        first = str(e).strip().splitlines()[0].rstrip(".")
        cause = str(e.__cause__).strip().splitlines()[0] if e.__cause__ and str(e.__cause__).strip() else ""
        return f"{first}: {cause}" if cause else first
    return None


class OutputDirCheck(Callback):
    """Refuse an output directory that cannot be written with one line, instead of Hydra's traceback."""

    @staticmethod
    def _check(directory: str, key: str) -> None:
        reason = unwritable_reason(Path(directory))
        if reason:
            refuse(f"{key}={directory}: cannot create the output folder ({reason}); choose another with {key}=...")

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if config.get("resume"):
            self._nothing_to_resume(str(config.resume), config.get("tracking", {}).get("uri"))
        self._check(str(config.hydra.run.dir), "hydra.run.dir")

    @staticmethod
    def _nothing_to_resume(target: str, uri) -> None:
        """A resume of a run that has already ended says so and exits 0, before Hydra creates a new folder."""
        from lstm_exp.errors import UserError
        from lstm_exp.resume import finished_outcome, locate

        try:
            run_dir, ckpt, original = locate(target, uri)
        except UserError:
            return  # the job itself reports what is wrong with the target
        done = finished_outcome(run_dir, ckpt, original)
        if done is not None:
            print(f"{run_dir} has already ended ({done}); nothing to resume")
            raise SystemExit(0)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(str(config.hydra.sweep.dir), "hydra.sweep.dir")

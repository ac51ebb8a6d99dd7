"""Checks Hydra cannot make for us, run before it creates the run's output directory."""

from __future__ import annotations

import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from lstm_exp.common.errors import UserError, refuse
from lstm_exp.runner.resume import finished_outcome, locate
from lstm_exp.runner.schema import register


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


CONF = Path(__file__).resolve().parents[2] / "conf"


def composition_error(overrides: list[str]) -> str | None:
    """One line for command-line overrides that do not compose, or None.

    Hydra reports these itself in several lines with exit 1; composing once here first gives the same
    refusal in the project's one-line form. Hydra's flags (``-m``, ``--cfg``, ``--help``, ...) are left
    to Hydra: with any of them nothing is checked here.
    """
    if any(arg.startswith("-") for arg in overrides):
        return None

    register()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        return hydra_message(e)
    return None


DETAILS = ("full_key:", "reference_type", "object_type")


def hydra_message(error: BaseException) -> str:
    """Hydra's several-line composition error as one line that names the key: "In 'layout/mine': Key 'orientaton'
    not in 'LayoutConfig' (layout.orientaton)", not just "ConfigKeyError raised while composing config"."""
    text = str(error).strip().split("Config search path:")[0]  # Hydra's search path is for its developers
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0].rstrip(".") if lines else type(error).__name__
    detail = next((line for line in lines[1:] if not line.startswith(DETAILS)), "")
    if detail.startswith("Available options"):  # one option a line after it
        detail = f"choose one of {', '.join(lines[lines.index(detail) + 1 :])}"
    key = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("full_key:")), "")
    if first.endswith("raised while composing config:"):  # "In 'layout/mine': ConfigKeyError raised while ..."
        first = first.partition(": ")[0] if first.startswith("In ") else ""
    message = ": ".join(part for part in (first, detail.rstrip(".")) if part)
    if key and key not in message:
        message += f" ({key})"
    if not detail and error.__cause__ is not None and str(error.__cause__).strip():
        message += ": " + str(error.__cause__).strip().splitlines()[0]
    if "layout" in message:
        message += "; layouts: docs/own_lstm.md#layouts"
    return message


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

"""Checks Hydra cannot make for us, run before it creates the run's output directory: the command line composes
(one line if not), its config would not be refused, a sweep's launcher and sweeper settings are in range, the output
folder is writable. And what the command line needs before Hydra parses it: ``expand_home``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException, OverrideParseException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from lstm_exp.common.errors import UserError, refuse
from lstm_exp.runner.groups import CONF
from lstm_exp.runner.ranges import SEED_LIMIT, Range
from lstm_exp.runner.resume import changed_settings, finished_outcome, locate
from lstm_exp.runner.schema import register, typed_config
from lstm_exp.runner.validation import Usage, dead_settings


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


def quoted(value: str) -> str:
    """``value`` as one quoted string of Hydra's override grammar (a backslash doubled only before a quote)."""
    return "'" + re.sub(r"(\\*)('|$)", lambda m: m[1] * 2 + ("\\'" if m[2] else ""), value) + "'"


def expand_home(overrides: list[str]) -> list[str]:
    """The overrides with every value that starts with ``~`` (``task.corpus=~/books/alice.txt``, or an item of a
    sweep's list) made the path it names, quoted: what the shell does for ``--corpus ~/books/alice.txt``.

    The shell expands ``~`` after ``=`` only in a word like ``name=~/x``, not ``task.corpus=~/x``; and Hydra's
    override grammar refuses an unquoted ``~`` in a value (a ``~`` before the key, ``~task.corpus``, deletes it: left
    alone, as are Hydra's flags).
    """
    out = []
    for arg in overrides:
        key, sep, value = arg.partition("=")
        items = value.split(",")
        if sep and not arg.startswith("-") and not key.startswith("~") and any(v.startswith("~") for v in items):
            value = ",".join(quoted(os.path.expanduser(v)) if v.startswith("~") else v for v in items)
            arg = f"{key}={value}"
        out.append(arg)
    return out


def composed(overrides: list[str], hydra: bool = False) -> DictConfig:
    """The config ``python -m lstm_exp <overrides>`` composes (with ``hydra``: its ``hydra`` node too, the launcher's
    and the sweeper's settings); Hydra's errors raised as they are. A sweep's job at a time: Hydra's compose refuses
    ``seed=0,1``."""
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra)


def composition_error(overrides: list[str]) -> str | None:
    """One line for command-line overrides that do not compose, or compose a config the run would refuse; or None.

    Hydra reports the first itself in several lines with exit 1; composing once here first gives the same
    refusal in the project's one-line form, and the second (``refusal``) before Hydra creates the run's folder.
    Hydra's flags (``-m``, ``--cfg``, ``--help``, ...) are left to Hydra: with any of them nothing is checked here
    (a sweep's jobs are judged each in its own process).
    """
    if any(arg.startswith("-") for arg in overrides):
        return None
    try:
        cfg = composed(overrides)
    except (HydraException, OmegaConfBaseException) as e:
        return hydra_message(e)
    return refusal(cfg, overrides)


def refusal(cfg: DictConfig, overrides: list[str]) -> str | None:
    """The line ``validate`` refuses a single run's composed config with (a value out of its range, a setting that
    would do nothing), or None; its warnings are left to the run, which says them once."""
    try:
        typed = typed_config(cfg)
    except UserError as e:
        return str(e)
    refused = [message for refuse, message in dead_settings(typed, Usage.of(overrides)) if refuse]
    return refused[0] if refused else None


DETAILS = ("full_key:", "reference_type", "object_type")


def hydra_message(error: BaseException) -> str:
    """Hydra's several-line composition error as one line that names the key: "In 'layout/mine': Key 'orientaton'
    not in 'LayoutConfig' (layout.orientaton)", not just "ConfigKeyError raised while composing config"."""
    grammar = unparsable(str(error)) if isinstance(error, OverrideParseException) else None
    if grammar:
        return grammar
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


LEXER_ERROR = re.compile(r"(\w+Exception): (?P<override>[^\n]*)\n(?P<pad> *)\^")


def unparsable(text: str) -> str | None:
    """One line for an override Hydra's grammar cannot read ("LexerNoViableAltException: task.corpus=~/x" and a caret
    under the character it stopped at): the character, and how to write it; None for any other error."""
    match = LEXER_ERROR.match(text.strip())
    if not match:
        return None
    override = match["override"]
    key, sep, value = override.partition("=")
    column = len(match["pad"]) - (len(match[1]) + 2) - len(key) - 1  # the caret's column within the value
    if not sep or not 0 <= column < len(value):
        return f"{override}: Hydra's override grammar cannot read it (docs/running.md)"
    quote = f'quote the value for Hydra inside the shell\'s quotes: "{key}={quoted(value)}"'
    if value.startswith("~"):
        quote = f'write "{key}=$HOME{value[1:]}" (the shell expands $HOME in double quotes), or {quote}'
    return f"{override}: Hydra's override grammar cannot read '{value[column]}' in a value; {quote}"


PLUGIN_RANGES = [  # (hydra.<node>, the plugin whose setting it is (its class), the setting, its valid values)
    ("launcher", "PoolLauncher", "n_jobs", Range(lambda v: v == -1 or v >= 1, ">= 1, or -1 (one job per core)")),
    ("launcher", "PoolLauncher", "timeout", Range(lambda v: v is None or v > 0, "> 0 seconds, or null (no limit)")),
    ("launcher", "PopulationLauncher", "n_jobs", Range(lambda v: v == -1 or v >= 1, ">= 1, or -1 (one per core)")),
    ("launcher", "PopulationLauncher", "timeout", Range(lambda v: v is None or v > 0, "> 0 seconds, or null")),
    ("launcher", "PopulationLauncher", "memory_gb", Range(lambda v: v is None or v > 0, "> 0 GiB, or null")),
    ("launcher", "PopulationLauncher", "max_members", Range(lambda v: v is None or v >= 1, ">= 1, or null")),
    ("sweeper", "SearchSweeper", "n_jobs", Range(lambda v: v >= 1, ">= 1", " (trials asked and run at a time)")),
    ("sweeper", "SearchSweeper", "n_trials", Range(lambda v: v >= 1, ">= 1", " (the study's size)")),
    ("sweeper", "SearchSweeper", "seed", Range(lambda v: 0 <= v < SEED_LIMIT, ">= 0 and < 2**32")),
]


def plugin_problem(hydra_cfg) -> str | None:
    """One line for a setting of lstm_exp's launcher or sweeper out of its range (``hydra.launcher.n_jobs=0``, which
    the pool would silently take as one job per core), or None; ``hydra_cfg``: the composed ``hydra`` node."""
    for node, plugin, name, allowed in PLUGIN_RANGES:
        settings = hydra_cfg.get(node) or {}
        if str(settings.get("_target_", "")).rpartition(".")[2] == plugin and name in settings:
            value = settings[name]
            if not allowed.ok(value):
                return f"hydra.{node}.{name}={value}: {allowed.rule()}"
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
            overrides = list(config.hydra.overrides.task)
            self._nothing_to_resume(str(config.resume), config.get("tracking", {}).get("uri"), overrides)
        self._check(str(config.hydra.run.dir), "hydra.run.dir")

    @staticmethod
    def _nothing_to_resume(target: str, uri, overrides: list[str]) -> None:
        """A resume of a run that has already ended says so and exits 0, before Hydra creates a new folder; unless
        the command changes a setting (``steps=`` extends the run; anything else the job refuses)."""
        try:
            run_dir, ckpt, original = locate(target, uri)
        except UserError:
            return  # the job itself reports what is wrong with the target
        if changed_settings(overrides, original):
            return
        done = finished_outcome(run_dir, ckpt, original)
        if done is not None:
            print(f"{run_dir} has already ended ({done}); nothing to resume")
            raise SystemExit(0)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        problem = plugin_problem(config.hydra)
        if problem:
            refuse(problem)
        self._check(str(config.hydra.sweep.dir), "hydra.sweep.dir")

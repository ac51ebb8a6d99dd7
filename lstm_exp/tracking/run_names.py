"""Names a reviewer can read in the MLflow runs table: a run by what it is and what its job varied
(``sin adam clip=6 seed=3``), a sweep by when it began, what it sweeps and how many jobs it plans
(``sweep 2026-12-01 21:53 clip×seed (60)``)."""

from __future__ import annotations

from datetime import datetime

QUIET_KEYS = ("task", "optim", "progress", "experiment")  # named otherwise, or not what was trained
QUIET_PREFIXES = ("hydra.", "tracking.", "hydra/")


def short(key: str) -> str:
    """``optim.clip`` -> ``clip``: the last part of a dotted key, without Hydra's ``+``/``~``/``++``."""
    return key.lstrip("+~").rsplit(".", 1)[-1]


def varied(overrides: list[str]) -> list[tuple[str, str]]:
    """(key, value) of the overrides that say what a run trained with."""
    pairs = [o.partition("=")[::2] for o in overrides if "=" in o]
    return [
        (k, v) for k, v in pairs if k.lstrip("+~") not in QUIET_KEYS and not k.lstrip("+~").startswith(QUIET_PREFIXES)
    ]


def run_name(task: str, optimizer: str, overrides: list[str]) -> str:
    """``sin adam clip=6 seed=3``: the task, the optimizer and the job's own overrides, short."""
    return " ".join([task, optimizer, *(f"{short(k)}={v}" for k, v in varied(overrides))])


def sweep_name(started: datetime, swept_keys: list[str], planned: int | None) -> str:
    """``sweep 2026-12-01 21:53 clip×seed (60)``."""
    name = f"sweep {started:%Y-%m-%d %H:%M}"
    if swept_keys:
        name += " " + "×".join(short(k) for k in swept_keys)
    return name + (f" ({planned})" if planned is not None else "")

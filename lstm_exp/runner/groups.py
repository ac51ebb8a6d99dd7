"""The config groups a user chooses (``task=``, ``init=``, ...), each with its options and what choosing it does:
``--help``'s list (``${groups:}`` in conf/config.yaml's ``hydra.help``) and docs/config.md's."""

from __future__ import annotations

import textwrap
from pathlib import Path

CONF = Path(__file__).resolve().parents[2] / "conf"


GROUPS = [  # (config group, what choosing it does): --help's and docs/config.md's, in this order
    ("task", "the task: its data and loss, and its own task.* settings"),
    ("init", "the weight scheme (sets init.scheme)"),
    ("optim", "the optimizer, with its own optim.* settings"),
    ("layout", "how your own LSTM's parameters map onto the core's (with model.impl; see docs/own_lstm.md)"),
    ("experiment", "a seed case's own setup; each file's header says what the case reported and what fixes it"),
    ("hparams_search", "an Optuna search over lr, clip and init (with -m; see docs/sweeps.md)"),
]
LAUNCHERS = (  # hydra/launcher=: lstm_exp's own and Hydra's plugins (those of the extras only once installed)
    "pool (lstm_exp's, the default), Hydra's basic and joblib, slurm or submitit_local (the slurm extra), "
    "ray or ray_cluster (the ray extra)"
)


def options(group: str) -> list[str]:
    """A config group's options: its YAML files in ``conf/``."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def help_groups() -> str:
    """The config groups a user chooses, for ``--help`` (``${groups:}`` in conf/config.yaml's ``hydra.help``): each
    with its options and what choosing it does."""
    rows = [(group, ", ".join(options(group)), meaning) for group, meaning in GROUPS]
    rows.append(("hydra/launcher", LAUNCHERS, "where a sweep's jobs run (with -m)"))
    width = max(len(group) for group, _, _ in rows) + 2
    indent = " " * (width + 2)
    return "\n".join(
        textwrap.fill(f"{group:<{width}}{opts}", 116, initial_indent="  ", subsequent_indent=indent)
        + f"\n{indent}{meaning}"
        for group, opts, meaning in rows
    )

"""The tasks lstm_exp trains on, behind one small protocol (``tasks.base``), by name in ``TASKS``.

A task owns its data and says how to score the model: ``loss`` (``mse`` or ``xent``), the input size
``input_dim`` (a vocabulary size when inputs are token ids) and ``output_dim``. ``batch(step)`` is a pure
function of the step (each task derives the step's randomness from its seed and the step), which makes
runs reproducible and resumable without saving data-loader state.

Import story: the project's layout keeps ``tasks/`` at the top level, so it installs as a top-level package
named ``tasks`` beside ``lstm_exp`` (``pyproject.toml``: ``include = ["lstm_exp*", "tasks*"]``). Install the
project in its own virtual environment (as the README's Quick start does): another distribution that also
installs a top-level ``tasks`` would shadow one of the two. Inside the project, only ``lstm_exp`` imports it,
always as ``tasks`` (``from tasks import make_task``); tasks import nothing of ``lstm_exp`` (they need NumPy only):
the runner turns a ``TaskError`` into the user's one-line error, and samples text from a char model itself.
"""

from __future__ import annotations

import numpy as np

from tasks import char, sin, x2
from tasks.base import Batch, Task, TaskError, step_rng  # noqa: F401  (the package's public names)

TASKS = {"x2": x2.X2Task, "sin": sin.SineTask, "char": char.CharTask}  # the one list of tasks


def make_task(cfg, batch_size: int, seed: int, dtype=np.float64) -> Task:
    """Build the task named by ``cfg.name`` (validated at composition) from its config section."""
    return TASKS[cfg.name](cfg, batch_size, seed, dtype)

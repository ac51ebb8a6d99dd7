"""The tasks lstm_exp trains on, behind one small protocol.

A task owns its data and says how to score the model: ``loss`` (``mse`` or ``xent``), the input size
``input_dim`` (a vocabulary size when inputs are token ids) and ``output_dim``. ``batch(step)`` is a pure
function of the step (each task derives the step's randomness from its seed and the step), which makes
runs reproducible and resumable without saving data-loader state.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np


class Batch(NamedTuple):
    x: np.ndarray  # (B, T, D) floats or (B, T) token ids
    y: np.ndarray  # (B, T, K) floats or (B, T) token ids
    reset: bool  # True: start from a zero state; False: carry (hT, cT) from the previous batch


class Task(Protocol):
    name: str
    loss: str
    input_dim: int
    output_dim: int

    def batch(self, step: int) -> Batch: ...

    def eval_batch(self) -> Batch | None: ...


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """An independent generator for (seed, step): the data of a step never depends on earlier steps."""
    return np.random.default_rng([seed, stream, step])


def make_task(cfg, batch_size: int, seed: int, dtype=np.float64) -> Task:
    """Build the task named by ``cfg.name`` (x2, sin or char) from its config section."""
    from tasks import char, sin, x2

    makers = {"x2": x2.X2Task, "sin": sin.SineTask, "char": char.CharTask}
    if cfg.name not in makers:
        raise ValueError(f"unknown task {cfg.name!r}; choose one of {', '.join(makers)}")
    return makers[cfg.name](cfg, batch_size, seed, dtype)

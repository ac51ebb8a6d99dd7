"""What every task shares: the batch it hands the loop, the protocol it keeps, and per-step randomness."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np


class TaskError(ValueError):
    """Data a task cannot use (a missing or unreadable corpus, a chunk longer than the text): the runner tells the
    user in one line."""


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

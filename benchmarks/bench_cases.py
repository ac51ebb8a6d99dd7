"""The problems ``bench_core.py`` times: its sizes, and float64 weights and data for each.

Every implementation of a size runs on the same ``BenchCase`` (the same weights, inputs and targets), cast
to its dtype with ``cast``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lstm_exp.core.network import param_shapes

CHAR_VOCAB = 65
CHAR_HIDDEN = (128, 256)
CHAR_STEPS = (25, 100)
CHAR_BATCH = (1, 32)
SINE_HIDDEN = 32
SINE_STEPS = 30
SINE_BATCH = (1, 64)


@dataclass(frozen=True)
class Size:
    """One benchmark problem size: task kind (char or sine), hidden H, timesteps T, batch B."""

    kind: str
    hidden: int
    steps: int
    batch: int

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``char H=128 T=25 B=32``."""
        return f"{self.kind} H={self.hidden} T={self.steps} B={self.batch}"

    @property
    def input_dim(self) -> int:
        """D: the vocabulary for char (one-hot), 1 for sine."""
        return CHAR_VOCAB if self.kind == "char" else 1

    @property
    def loss(self) -> str:
        """The loss of the task: softmax cross-entropy for char, MSE for sine."""
        return "xent" if self.kind == "char" else "mse"

    @property
    def token_ids(self) -> bool:
        """Whether our core gets int token ids (no input matmul) rather than float features."""
        return self.kind == "char"


@dataclass
class BenchCase:
    """A size with its float64 weights and data (x, y in the core's formats)."""

    size: Size
    params: dict
    x: np.ndarray
    y: np.ndarray


def all_sizes(quick: bool) -> list[Size]:
    """The char and sine sizes of the benchmark (a small subset with ``--quick``)."""
    hidden, steps = (CHAR_HIDDEN[:1], CHAR_STEPS[:1]) if quick else (CHAR_HIDDEN, CHAR_STEPS)
    char = [Size("char", h, t, b) for h in hidden for t in steps for b in CHAR_BATCH]
    return char + [Size("sine", SINE_HIDDEN, SINE_STEPS, b) for b in SINE_BATCH]


def make_params(size: Size, rng: np.random.Generator) -> dict:
    """float64 weights drawn like PyTorch's default: uniform(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / np.sqrt(size.hidden)
    shapes = param_shapes(size.input_dim, size.hidden, size.input_dim)
    return {name: rng.uniform(-bound, bound, shape) for name, shape in shapes.items()}


def make_data(size: Size, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random next-character ids for char; next-sample prediction of phase-shifted sines for sine."""
    B, T = size.batch, size.steps
    if size.token_ids:
        return rng.integers(0, CHAR_VOCAB, (B, T)), rng.integers(0, CHAR_VOCAB, (B, T))
    grid = 0.2 * np.arange(T + 1)[None, :] + rng.uniform(0, 2 * np.pi, (B, 1))
    wave = np.sin(grid)[..., None]  # (B, T + 1, 1)
    return wave[:, :-1], wave[:, 1:]


def make_case(size: Size, rng: np.random.Generator) -> BenchCase:
    """Weights and data of one size."""
    return BenchCase(size, make_params(size, rng), *make_data(size, rng))


def cast(case: BenchCase, dtype) -> tuple[dict, np.ndarray, np.ndarray]:
    """Params and float data in ``dtype`` (token ids and class targets stay integers)."""
    params = {name: value.astype(dtype) for name, value in case.params.items()}
    x, y = (a if np.issubdtype(a.dtype, np.integer) else a.astype(dtype) for a in (case.x, case.y))
    return params, x, y

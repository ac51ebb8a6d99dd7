"""x^2 regression, seed 001's task: fit y = x^2 + noise along a sequence of 6-dimensional steps.

x = linspace(0.01, 1, 600) arranged as 100 timesteps of 6 values; y = x^2 + N(0, noise^2) with
noise = 1/200. The model sees the whole sequence every step (full-batch training), from a zero state.
With ``batch_size`` B > 1 each of the B sequences gets its own noise draw. The eval loss scores the
noise-free curve.
"""

from __future__ import annotations

import numpy as np

from tasks.base import Batch, step_rng


class X2Task:
    name = "x2"
    loss = "mse"

    def __init__(self, cfg, batch_size: int, seed: int, dtype=np.float64):
        T, D = cfg.timesteps, cfg.width
        x = np.linspace(0.01, 1.0, T * D).reshape(1, T, D)
        noise = step_rng(seed, 0, stream=1).normal(0.0, cfg.noise, size=(batch_size, T, D))
        self.input_dim = self.output_dim = D
        self._x = np.repeat(x, batch_size, axis=0).astype(dtype)
        self._y = (x * x + noise).astype(dtype)
        self._clean = (x * x).astype(dtype)

    def batch(self, step: int) -> Batch:
        return Batch(self._x, self._y, reset=True)

    def eval_batch(self) -> Batch:
        return Batch(self._x[:1], self._clean, reset=True)

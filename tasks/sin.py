"""Sine-wave next-value prediction: windows of sin(2 pi t / period + phase) with random phases.

Input x_t = sin(w t + phase); target y_t = x_{t + horizon}. ``horizon = 1`` predicts the next value.
Seed 002 built its targets with ``np.roll(inputs, 1)``, which makes y_t = x_{t-1}: the *previous*
value (``horizon = -1``, and at t = 0 a wrapped-around value). That is memorisation of one step, not
prediction; ``task.horizon=-1`` reproduces it without the wrap-around.
"""

from __future__ import annotations

import numpy as np

from tasks.base import Batch, step_rng

EVAL_WINDOWS = 64


class SineTask:
    name = "sin"
    loss = "mse"
    input_dim = 1
    output_dim = 1

    def __init__(self, cfg, batch_size: int, seed: int, dtype=np.float64):
        self.cfg, self.batch_size, self.seed, self.dtype = cfg, batch_size, seed, dtype
        self._eval = self._windows(step_rng(seed, 0, stream=2), EVAL_WINDOWS)

    def _windows(self, rng: np.random.Generator, count: int) -> Batch:
        T, k = self.cfg.seq_len, self.cfg.horizon
        phase = rng.uniform(0.0, 2 * np.pi, size=(count, 1))
        t = np.arange(T + abs(k))
        wave = np.sin(2 * np.pi * t / self.cfg.period + phase)
        wave += rng.normal(0.0, self.cfg.noise, size=wave.shape) if self.cfg.noise > 0 else 0.0
        start = max(0, -k)  # negative horizons look back: shift the window forward
        x = wave[:, start : start + T]
        y = wave[:, start + k : start + k + T]
        return Batch(x[..., None].astype(self.dtype), y[..., None].astype(self.dtype), reset=True)

    def batch(self, step: int) -> Batch:
        return self._windows(step_rng(self.seed, step, stream=1), self.batch_size)

    def eval_batch(self) -> Batch:
        return self._eval

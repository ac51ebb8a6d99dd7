"""Health measures of one training step, cheap enough to compute at every logged step."""

from __future__ import annotations

import numpy as np

SATURATION = 0.01  # a sigmoid gate within this of 0 or 1 (tanh: of -1 or 1) passes almost no gradient


def max_abs_cell(cache) -> float:
    """Largest |c_t| over the batch and the sequence: a growing cell state is the first sign of trouble."""
    return float(np.abs(cache.cs[1:]).max())


def saturated_fraction(cache) -> float:
    """Fraction of gate activations within SATURATION of their bounds (sigmoid 0/1, tanh -1/1)."""
    G = cache.gates
    H = G.shape[-1] // 4
    sig = np.concatenate([G[..., : 2 * H], G[..., 3 * H :]], axis=-1)
    g = G[..., 2 * H : 3 * H]
    saturated = np.count_nonzero((sig < SATURATION) | (sig > 1 - SATURATION))
    saturated += np.count_nonzero(np.abs(g) > 1 - 2 * SATURATION)
    return saturated / G.size


def first_nonfinite(loss: float, grads: dict) -> str | None:
    """Name of the first non-finite value in computation order (loss, then gradients), or None."""
    if not np.isfinite(loss):
        return "loss"
    return next((f"grad.{k}" for k, g in grads.items() if not np.isfinite(g).all()), None)

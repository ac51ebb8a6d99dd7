"""Output layer and losses: an affine head over every timestep, MSE and softmax cross-entropy.

Every loss returns ``(loss, dlogits)``. The reduction is explicit:
- ``mean``: average over batch x time (and over output units for MSE) — what PyTorch's losses do;
- ``sum``: sum over time (and output units), averaged over the batch — what the seeds do with B = 1.
  The gradient is T times larger than with ``mean``, which is part of why seed 000 diverges.

A population (see ``lstm_exp.core.lstm``) has a leading member axis on every array; a loss is then one per member.
"""

from __future__ import annotations

import numpy as np

from lstm_exp.core.members import member_major, total

REDUCTIONS = ("mean", "sum")


def affine_forward(hs: np.ndarray, Wy: np.ndarray, by: np.ndarray):
    """Apply the same affine map at every timestep.

    Inputs:
    - hs: hidden states of shape (B, T, H)
    - Wy: weights of shape (H, K); by: bias of shape (K,)

    Returns a tuple of:
    - out: outputs of shape (B, T, K)
    - cache: (hs, Wy) for affine_backward
    """
    return hs @ Wy + by[..., None, :], (hs, Wy)


def affine_backward(dout: np.ndarray, cache):
    """Backward pass of affine_forward.

    Inputs:
    - dout: upstream gradient of shape (B, T, K)
    - cache: from affine_forward

    Returns a tuple of:
    - dhs: gradient of the hidden states, of shape (B, T, H)
    - grads: dict with Wy (H, K) and by (K,)
    """
    hs, Wy = cache
    k = Wy.ndim - 2  # member axes
    hs2, dout2 = member_major(hs, k), member_major(dout, k)  # (*M, T*B, H), (*M, T*B, K)
    grads = {"Wy": np.swapaxes(hs2, -1, -2) @ dout2, "by": dout2.sum(axis=-2)}
    return dout @ np.swapaxes(Wy, -1, -2), grads  # backprop into h: dh = dy Wy^T


def _normaliser(shape: tuple, reduction: str, per_unit: bool) -> int:
    """How many terms the summed loss is divided by under each reduction (``shape``: one member's (B, T, K))."""
    if reduction == "mean":
        return int(np.prod(shape)) if per_unit else int(np.prod(shape[:2]))
    if reduction == "sum":
        return shape[0]
    raise ValueError(f"unknown reduction {reduction!r}; choose one of {', '.join(REDUCTIONS)}")


def mse_loss(pred: np.ndarray, target: np.ndarray, reduction: str = "mean"):
    """Squared error sum((pred - target)^2) divided per ``reduction``.

    Inputs:
    - pred, target: arrays of shape (B, T, K)

    Returns (loss, dpred) with dpred of shape (B, T, K).
    """
    diff = pred - target
    n = _normaliser(pred.shape[-3:], reduction, per_unit=True)
    return total(diff * diff, pred.ndim - 3) / n, diff * (2.0 / n)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, shifted by the max so that exp never overflows."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray, reduction: str = "mean"):
    """Cross-entropy of integer targets under softmax(logits), divided per ``reduction``.

    Inputs:
    - logits: scores of shape (B, T, V)
    - targets: integer class ids of shape (B, T), each in [0, V)

    Returns (loss, dlogits) with dlogits of shape (B, T, V): (softmax - onehot) / n.
    """
    logp = log_softmax(logits)
    n = _normaliser(logits.shape[-3:], reduction, per_unit=False)
    picked = targets[..., None]
    loss = -total(np.take_along_axis(logp, picked, axis=-1)[..., 0], targets.ndim - 2) / n
    dlogits = np.exp(logp)  # softmax ...
    np.put_along_axis(dlogits, picked, np.take_along_axis(dlogits, picked, axis=-1) - 1.0, axis=-1)  # ... - one-hot
    dlogits /= n
    return loss, dlogits

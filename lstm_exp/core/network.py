"""The network the tasks train: one LSTM layer, an affine head at every timestep, and a loss.

Parameters live in one flat dict: the core's ``Wx, Wh, b`` (see ``lstm_exp.core.lstm``) and the head's
``Wy (H, K), by (K,)`` (a population's: each with a leading member axis, and its loss one per member).
``loss_and_grads`` is the single place that chains forward, loss and backward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from lstm_exp.core.heads import affine_backward, affine_forward, mse_loss, softmax_cross_entropy
from lstm_exp.core.lstm import batch_first, lstm_backward, lstm_forward, member_dims, time_major

LOSSES = {"mse": mse_loss, "xent": softmax_cross_entropy}


class Backward(NamedTuple):
    """The network's two backward passes: the LSTM's (``lstm_backward``'s signature) and the head's
    (``affine_backward``'s). The reference is the core's own; ``lstm_exp.core.faults`` builds the others."""

    lstm: Callable = lstm_backward
    head: Callable = affine_backward


REFERENCE = Backward()


class StepOptions(NamedTuple):
    """How a step is scored and backpropagated: the task's loss and reduction, the BPTT state clip."""

    loss: str  # mse | xent
    reduction: str  # mean | sum
    state_clip: float | None = None  # clamp the BPTT carries dh, dc (optim.clip_mode=state)


class StepResult(NamedTuple):
    loss: float
    grads: dict  # same keys and shapes as params
    state: tuple  # (hT, cT), to carry into the next chunk
    dstate: tuple  # (dh0, dc0)
    outputs: np.ndarray  # head outputs (B, T, K): predictions or logits
    cache: object  # the LSTM's forward cache (gates, cell states) for diagnostics
    clamped: float | None = None  # with a state clip: the fraction of BPTT carry entries it clamped


def param_shapes(input_dim: int, hidden: int, output_dim: int) -> dict:
    """Shape of every parameter for D inputs (or a vocabulary of D), H hidden units and K outputs."""
    return {
        "Wx": (input_dim, 4 * hidden),
        "Wh": (hidden, 4 * hidden),
        "b": (4 * hidden,),
        "Wy": (hidden, output_dim),
        "by": (output_dim,),
    }


def loss_fn(name: str):
    """The loss function registered under ``name``."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}") from None


def forward_loss(params: dict, x, y, h0, c0, loss: str = "mse", reduction: str = "mean") -> float:
    """The loss alone (no backward), e.g. for held-out data."""
    hs, _, _ = lstm_forward(params, x, h0, c0)
    out_tm, _ = affine_forward(time_major(hs), params["Wy"], params["by"])
    return loss_fn(loss)(batch_first(out_tm, member_dims(params)), _cast_targets(y, params), reduction)[0]


def _cast_targets(y: np.ndarray, params: dict) -> np.ndarray:
    """Float targets follow the params' dtype; token ids stay integers."""
    return y.astype(params["Wy"].dtype, copy=False) if np.issubdtype(y.dtype, np.floating) else y


def loss_and_grads(
    params: dict,
    x: np.ndarray,
    y: np.ndarray,
    h0: np.ndarray,
    c0: np.ndarray,
    loss: str = "mse",
    reduction: str = "mean",
    dhT=None,
    dcT=None,
    state_clip: float | None = None,
    backward: Backward = REFERENCE,
) -> StepResult:
    """Forward the sequence, score it, and backpropagate through time.

    Inputs:
    - params: dict of Wx, Wh, b, Wy, by
    - x: inputs of shape (B, T, D), or integer token ids of shape (B, T)
    - y: targets of shape (B, T, K) for ``mse``, integer ids of shape (B, T) for ``xent``
    - h0, c0: initial state, each of shape (B, H)
    - dhT, dcT: optional upstream gradients of the final state (for gradient checks)
    - state_clip: clamp the BPTT carries dh/dc to this magnitude (None or <= 0: off)
    - backward: the network's backward (the reference unless a catalogued mistake is injected)

    Returns a StepResult.
    """
    y = _cast_targets(y, params)
    hs, state, cache = lstm_forward(params, x, h0, c0)
    # the head runs on the core's time-major (T, B, H) memory, where every row is contiguous
    out_tm, head_cache = affine_forward(time_major(hs), params["Wy"], params["by"])
    members = member_dims(params)
    out = batch_first(out_tm, members)  # (B, T, K) view for the loss
    value, dout = loss_fn(loss)(out, y, reduction)
    dhs_tm, head_grads = backward.head(np.ascontiguousarray(time_major(dout)), head_cache)
    stats: dict = {}
    grads, dh0, dc0 = backward.lstm(batch_first(dhs_tm, members), cache, dhT, dcT, state_clip, stats)
    grads.update(head_grads)
    return StepResult(value, grads, state, (dh0, dc0), out, cache, stats.get("clamped"))

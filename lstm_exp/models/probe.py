"""The small problems diagnose poses, and what the core answers on them under any backward and any output gradient.

A *case* is one unbatched sequence with its initial state. Cases are drawn so that no degenerate draw can hide a
bug: token inputs differ from their targets at every step (a loss gradient taken at the input token would
otherwise look right), the long case is no longer than the hidden size (so the gradient of the outputs can be
read back from a model's output-weight gradient) and its length differs from the number of outputs (so the loss
conventions "mean over time" and "mean over outputs" cannot be confused).

A ``Probe`` is the core's forward on one case; ``answer`` runs any backward of the catalogue (``lstm_exp.core.faults``)
from any gradient of the outputs on it, and gives the gradients in the user's names, summed over time and step by
step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from lstm_exp.core.faults import Pieces, gate_gradients_with
from lstm_exp.core.heads import affine_forward
from lstm_exp.core.lstm import lstm_forward, weight_gradients
from lstm_exp.core.network import loss_fn
from lstm_exp.models.layout import Layout, blocks, from_fused

HIDDEN = 5  # small shapes: the numerical check perturbs every entry
VOCAB = 6  # token-id tasks are diagnosed over a vocabulary this small
STATE = ("h0", "c0")


@dataclass
class Case:
    """One problem: unbatched inputs, targets and initial state."""

    name: str
    x: np.ndarray
    y: np.ndarray
    h0: np.ndarray
    c0: np.ndarray

    @property
    def T(self) -> int:
        return len(self.x)


def long_length(K: int) -> int:
    """The long case's length: at most HIDDEN (the outputs' gradient stays recoverable) and never K."""
    return 4 if K != 4 else 3


def make_cases(loss: str, token_ids: bool, D: int, K: int, rng: np.random.Generator) -> list[Case]:
    """T = 1 from a zero state, T = 1 from a non-zero state, and a longer case from a non-zero state."""

    def data(T: int):
        if token_ids:
            x = rng.permutation(D)[:T] if D >= T else rng.integers(0, D, size=T)
        else:
            x = rng.normal(size=(T, D))
        if loss != "xent":
            return x, rng.normal(size=(T, K))
        if token_ids and D == K:  # a target is never its own input
            return x, (x + rng.integers(1, K, size=T)) % K
        return x, rng.integers(0, K, size=T)

    zero = np.zeros(HIDDEN)
    T = long_length(K)
    return [
        Case("T=1, zero state", *data(1), zero.copy(), zero.copy()),
        Case("T=1, non-zero state", *data(1), rng.normal(size=HIDDEN), rng.normal(size=HIDDEN)),
        Case(f"T={T}, non-zero state", *data(T), rng.normal(size=HIDDEN), rng.normal(size=HIDDEN)),
    ]


class Answer(NamedTuple):
    """The gradients one backward gives on one case, in the user's names (plus h0, c0)."""

    total: dict  # name -> gradient summed over time
    steps: list  # per step: name -> that step's own contribution (weights and biases only)
    fused: dict  # the summed gradients in the core's names


@dataclass
class Probe:
    """The core's forward on one case, with the fused weights; the reference's summed loss and output gradient."""

    case: Case
    fused: dict
    loss_name: str
    layout: Layout
    dims: tuple  # (D, H, K)

    @cached_property
    def _forward(self):
        c = self.case
        hs, state, cache = lstm_forward(self.fused, c.x[None], c.h0[None], c.c0[None])
        out_tm, head_cache = affine_forward(hs.transpose(1, 0, 2), self.fused["Wy"], self.fused["by"])
        loss, dout = loss_fn(self.loss_name)(out_tm.transpose(1, 0, 2), c.y[None], "sum")
        return loss, (state[0][0], state[1][0]), cache, head_cache, dout[0]

    @property
    def loss(self) -> float:
        """The reference's loss, summed over time (and outputs)."""
        return self._forward[0]

    @property
    def state(self) -> tuple:
        return self._forward[1]

    @property
    def dout(self) -> np.ndarray:
        """The reference's gradient of its summed loss with respect to the outputs, (T, K)."""
        return self._forward[4]

    @property
    def hidden(self) -> np.ndarray:
        """h_1 .. h_T, (T, H): what the output layer reads."""
        return self._forward[2].hs[1:, 0]

    def answer(self, pieces: Pieces, dout: np.ndarray, steps: bool = False) -> Answer:
        """The gradients of ``pieces``' backward driven by ``dout`` (T, K): summed, and per step if asked."""
        _, _, cache, head_cache, _ = self._forward
        dout_tm = np.ascontiguousarray(dout[:, None, :])
        dhs_tm, head = pieces.head(dout_tm, head_cache)
        g = gate_gradients_with(pieces, dhs_tm.transpose(1, 0, 2), cache)
        fused = {**weight_gradients(cache, g.weight_input, g.h_in), **head}
        total = {**self.user(fused), "h0": g.dh0[0], "c0": g.dc0[0]}
        per_step = [self.user(self._step(cache, g, dout, t)) for t in range(len(dout))] if steps else []
        return Answer(total, per_step, fused)

    def user(self, fused: dict) -> dict:
        """Fused gradients in the user's names and shapes."""
        return from_fused(fused, self.layout, *self.dims, grads=True)

    def blocks(self, user: dict) -> dict:
        """The user's gradients cut into the layout's blocks (``lstm_exp.models.layout.blocks``)."""
        return blocks(user, self.layout, *self.dims)

    def _step(self, cache, g, dout: np.ndarray, t: int) -> dict:
        """Step t's own contribution to every weight and bias gradient (what a gradient overwritten at every step
        keeps, when t is the last step its loop visits)."""
        D = self.dims[0]
        x = cache.x[t, 0]
        x_row = np.eye(D)[x] if np.ndim(x) == 0 else x
        wi, h_in, h = g.weight_input[t, 0], g.h_in[t, 0], cache.hs[t + 1, 0]
        return {
            "Wx": np.outer(x_row, wi),
            "Wh": np.outer(h_in, wi),
            "b": wi,
            "Wy": np.outer(h, dout[t]),
            "by": dout[t],
        }


def recover_dout(dWy: np.ndarray, hidden: np.ndarray, dby: np.ndarray | None) -> np.ndarray | None:
    """The output gradient (T, K) a model used, read back from its output-weight gradient dWy = sum_t h_t dout_t^T.

    Exact when T <= H (the hidden states are independent); None when dWy is not of that form (its output layer's
    own backward is wrong) or disagrees with the output bias's gradient (which is sum_t dout_t).
    """
    dout, *_ = np.linalg.lstsq(hidden.T, dWy, rcond=None)
    scale = max(float(np.abs(dWy).max()), 1e-300)
    if float(np.abs(hidden.T @ dout - dWy).max()) > 1e-9 * scale:
        return None
    if dby is not None and float(np.abs(dout.sum(axis=0) - dby).max()) > 1e-9 * max(float(np.abs(dby).max()), scale):
        return None
    return dout

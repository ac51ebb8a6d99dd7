"""The catalogue of classic mistakes in a hand-written LSTM backward, each the reference with one piece swapped.

The reference backward (``lstm_exp.core.lstm`` and the head of ``lstm_exp.core.heads``) is built from named
pieces: the values the local derivatives read, the matrices and factors that carry a gradient into the step
before, and the inputs the weight gradients are built from. Each ``Mistake`` below swaps exactly one piece for
the wrong one people write, so the real core carries no branch for any of them, and mistakes that swap
different pieces compose (``variant(["tanh_prime_from_h", "no_c_carry"])``): ``mode=diagnose`` recognises them
in anyone's code by their gradients alone, and ``model.fault=<name>`` trains with one on purpose.

``not_summed_over_time`` is the one mistake that is not a piece: a tensor's gradient overwritten at every step
(``=`` where ``+=`` is meant) keeps one step's contribution, whichever tensor it is; diagnose looks for it per
tensor on top of any combination of the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import numpy as np

from lstm_exp.core.heads import affine_backward
from lstm_exp.core.lstm import (
    activations,
    backprop_through_time,
    local_derivatives,
    previous_cells,
    tanh_of_cells,
    weight_gradients,
)
from lstm_exp.core.network import REFERENCE, Backward

# ---------------------------------------------------------------------------------------------------------
# the reference's pieces


def transposed(Wh: np.ndarray) -> np.ndarray:
    """The matrix that carries da_t into h_{t-1}: Wh^T, of shape (4H, H)."""
    return Wh.T


def forget_gates(cache) -> np.ndarray:
    """The factor that carries dc_t into c_{t-1}: the forget gate f_t, of shape (T, B, H)."""
    H = cache.tanh_cs.shape[-1]
    return cache.gates[..., H : 2 * H]


def gate_gradients(dA: np.ndarray, dcs: np.ndarray) -> np.ndarray:
    """What the weight gradients are built from: the gate pre-activation gradients dA themselves."""
    return dA


def previous_hidden(cache) -> np.ndarray:
    """The hidden states dWh is built from: h_{t-1}, the ones the forward multiplied by Wh, shape (T, B, H)."""
    return cache.hs[:-1]


class Pieces(NamedTuple):
    """The reference backward, piece by piece (the defaults); a mistake swaps one field."""

    evaluated_at: Callable = activations  # gates -> the values sigmoid' and tanh' are evaluated at
    forget_cell: Callable = previous_cells  # cache -> the c the forget gate's gradient reads
    tanh_c: Callable = tanh_of_cells  # cache -> the tanh(c) whose slope carries dh_t into dc_t
    carry_h: Callable = transposed  # Wh -> the (4H, H) matrix that carries da_t into h_{t-1}
    carry_c: Callable = forget_gates  # cache -> the factor that carries dc_t into c_{t-1}
    h_carried: bool = True  # dh_{t-1} is added into the step before
    c_carried: bool = True  # dc_{t-1} is added into the step before
    weight_input: Callable = gate_gradients  # (dA, dcs) -> the (T, B, 4H) the weight gradients are built from
    recurrent_input: Callable = previous_hidden  # cache -> the hidden states dWh is built from
    head: Callable = affine_backward  # the output layer's backward


# ---------------------------------------------------------------------------------------------------------
# the wrong pieces people write


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)); only ever applied here to gate activations in [-1, 1], so exp cannot overflow."""
    return 1.0 / (1.0 + np.exp(-z))


def activated_again(gates: np.ndarray) -> np.ndarray:
    """sigmoid(i), sigmoid(f), tanh(g), sigmoid(o): the derivative formulas fed the activations as if they were
    the pre-activations (``dsigmoid(ot)`` where ``ot = sigmoid(a_o)``)."""
    H = gates.shape[-1] // 4
    at = _sigmoid(gates)
    at[..., 2 * H : 3 * H] = np.tanh(gates[..., 2 * H : 3 * H])
    return at


def current_cells(cache) -> np.ndarray:
    """c_t where the forget gate's gradient needs c_{t-1}."""
    return cache.cs[1:]


def hidden_states(cache) -> np.ndarray:
    """h_t = o tanh(c_t) where tanh(c_t) is meant: tanh'(c) written as 1 - h^2."""
    return cache.hs[1:]


def no_tanh(cache) -> np.ndarray:
    """Zeros, so that 1 - z^2 = 1: the path from h_t into c_t without tanh'."""
    return np.zeros_like(cache.tanh_cs)


def input_gate_only(Wh: np.ndarray) -> np.ndarray:
    """Wh^T with the rows of the f, g and o gates zeroed: dh_{t-1} carries only the input gate's path."""
    H = Wh.shape[0]
    WhT = Wh.T.copy()
    WhT[H:] = 0.0
    return WhT


def untransposed(Wh: np.ndarray) -> np.ndarray:
    """Each gate's square recurrent block as used in the forward, not transposed, stacked to (4H, H)."""
    H = Wh.shape[0]
    return np.concatenate([Wh[:, k * H : (k + 1) * H] for k in range(4)], axis=0)


def ones_factor(cache) -> np.ndarray:
    """1 where the forget gate f_t belongs: dc_{t-1} = dc_t."""
    return np.ones_like(cache.tanh_cs)


def candidate_from_cell(dA: np.ndarray, dcs: np.ndarray) -> np.ndarray:
    """dA with the candidate's columns replaced by the cell-state gradient dc (the weight gradients only)."""
    H = dcs.shape[-1]
    out = dA.copy()
    out[..., 2 * H : 3 * H] = dcs
    return out


def current_hidden(cache) -> np.ndarray:
    """h_t where dWh needs h_{t-1}."""
    return cache.hs[1:]


def last_step_head(dout: np.ndarray, cache):
    """The head's backward with dWy from the last step only (time-major dout (T, B, K))."""
    dhs, grads = affine_backward(dout, cache)
    hs, Wy = cache
    grads["Wy"] = hs[-1].T @ dout[-1]
    return dhs, grads


# ---------------------------------------------------------------------------------------------------------
# the catalogue


@dataclass(frozen=True)
class Mistake:
    """One classic mistake: the piece of the reference it swaps, where it comes from, the wrong line as people
    write it beside the right one, and what it does (``{tensors}``: the user's names of what it corrupts)."""

    name: str
    piece: str | None  # the field of Pieces it swaps (None: not a piece, see not_summed_over_time)
    swap: object
    finding: str  # where it is: local_derivatives, bptt_carry, output_layer or not_summed_over_time
    source: str
    wrong: str
    right: str
    says: str


CATALOGUE = (
    Mistake(
        "sigmoid_of_activation",
        "evaluated_at",
        activated_again,
        "local_derivatives",
        "seed 000",
        "do = dsigmoid(o) * do  # o = sigmoid(a_o) already",
        "do = o * (1 - o) * do",
        "sigmoid' and tanh' are evaluated at the activated gates (dsigmoid(o) of o = sigmoid(a)): every gate's "
        "local derivative is wrong ({tensors})",
    ),
    Mistake(
        "candidate_from_dc",
        "weight_input",
        candidate_from_cell,
        "local_derivatives",
        "seed 000",
        "dWc += np.dot(xh, dc.T)",
        "dWc += np.dot(xh, dg.T)  # dg = dc * i * (1 - g**2)",
        "the candidate's weight and bias gradients are built from dc, the cell-state gradient, instead of the "
        "candidate's own pre-activation gradient ({tensors})",
    ),
    Mistake(
        "dh_prev_one_gate",
        "carry_h",
        input_gate_only,
        "bptt_carry",
        "seed 003",
        "dh_prev = np.dot(Wi.T, da_i)",
        "dh_prev = Wi.T @ da_i + Wf.T @ da_f + Wg.T @ da_g + Wo.T @ da_o",
        "dh_{{t-1}} carries only the input gate's path: the f, g and o terms are missing ({tensors})",
    ),
    Mistake(
        "forget_from_c_t",
        "forget_cell",
        current_cells,
        "local_derivatives",
        "seed 002's doubt",
        "df = dc * c",
        "df = dc * c_prev",
        "the forget gate's gradient uses c_t in place of c_{{t-1}} ({tensors}): look for `c * dc` where "
        "`c_prev * dc` is meant",
    ),
    Mistake(
        "c_carry_without_forget",
        "carry_c",
        ones_factor,
        "bptt_carry",
        "common",
        "dc_prev = dc",
        "dc_prev = dc * f",
        "the cell carry into t-1 is not multiplied by the forget gate f ({tensors}): look for `dc_next = dc`",
    ),
    Mistake(
        "no_c_carry",
        "c_carried",
        False,
        "bptt_carry",
        "common",
        "dc = dh * o * (1 - np.tanh(c) ** 2)",
        "dc = dh * o * (1 - np.tanh(c) ** 2) + dc_next",
        "the cell carry is dropped: dc_t never gets dc_{{t+1}} * f_{{t+1}} from the step after ({tensors})",
    ),
    Mistake(
        "no_h_carry",
        "h_carried",
        False,
        "bptt_carry",
        "common",
        "dh = dy @ Wy.T",
        "dh = dy @ Wy.T + dh_next",
        "the hidden carry is dropped: dh_t gets only the output layer's gradient, never da_{{t+1}} Wh^T from the "
        "step after ({tensors})",
    ),
    Mistake(
        "tanh_prime_from_h",
        "tanh_c",
        hidden_states,
        "local_derivatives",
        "common",
        "dc += dh * o * (1 - h ** 2)",
        "dc += dh * o * (1 - np.tanh(c) ** 2)",
        "dc uses 1 - h_t^2 where the LSTM needs 1 - tanh(c_t)^2 ({tensors})",
    ),
    Mistake(
        "tanh_prime_missing",
        "tanh_c",
        no_tanh,
        "local_derivatives",
        "common",
        "dc += dh * o",
        "dc += dh * o * (1 - np.tanh(c) ** 2)",
        "the path from h_t into c_t has no tanh'(c_t) ({tensors}): look for `dh * o` without `(1 - tanh(c)**2)`",
    ),
    Mistake(
        "dWh_from_h_t",
        "recurrent_input",
        current_hidden,
        "local_derivatives",
        "common",
        "dWh += h.T @ da",
        "dWh += h_prev.T @ da",
        "the recurrent weight gradient is built from h_t where the forward multiplied h_{{t-1}} ({tensors})",
    ),
    Mistake(
        "recurrent_not_transposed",
        "carry_h",
        untransposed,
        "bptt_carry",
        "common",
        "dh_prev += da @ Wh",
        "dh_prev += da @ Wh.T",
        "dh_{{t-1}} goes back through the recurrent matrix as used in the forward, not its transpose ({tensors})",
    ),
    Mistake(
        "output_weight_last_step",
        "head",
        last_step_head,
        "output_layer",
        "common",
        "dWy = np.outer(h[T - 1], dy[T - 1])  # after the loop",
        "dWy += np.outer(h[t], dy[t])  # inside the loop over t",
        "the output layer's weight gradient comes from the last step only, not summed over time ({tensors})",
    ),
    Mistake(
        "not_summed_over_time",
        None,
        None,
        "not_summed_over_time",
        "common",
        "dW = x.T @ da  # inside the loop over t",
        "dW += x.T @ da",
        "{tensors}'s gradient is overwritten at every step instead of summed over time: it holds one step's "
        "contribution (look for `=` where `+=` is meant)",
    ),
)
FAULTS = {m.name: m for m in CATALOGUE}
PIECEWISE = tuple(m.name for m in CATALOGUE if m.piece is not None)  # the ones model.fault= can inject


def pieces_of(names) -> Pieces:
    """The reference's pieces with those of every named mistake swapped in.

    Raises ValueError for an unknown name, for ``not_summed_over_time`` (not a piece) and for two mistakes that
    swap the same piece (they cannot both be written at once).
    """
    swaps = {}
    for name in names:
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; choose one of {', '.join(FAULTS)}")
        m = FAULTS[name]
        if m.piece is None:
            raise ValueError(f"{name} is not one piece of the backward: diagnose looks for it tensor by tensor")
        if m.piece in swaps:
            raise ValueError(f"{name} and another mistake both replace the backward's {m.piece}")
        swaps[m.piece] = m.swap
    return Pieces()._replace(**swaps)


def compatible(names) -> bool:
    """Whether the named mistakes swap different pieces (and so can be written together)."""
    pieces = [FAULTS[n].piece for n in names]
    return None not in pieces and len(set(pieces)) == len(pieces)


class GateGradients(NamedTuple):
    weight_input: np.ndarray  # (T, B, 4H) what the weight gradients are built from
    dcs: np.ndarray  # (T, B, H) the total cell-state gradients
    h_in: np.ndarray  # (T, B, H) the hidden states dWh is built from
    dh0: np.ndarray
    dc0: np.ndarray


def gate_gradients_with(pieces: Pieces, dhs, cache, dhT=None, dcT=None, state_clip=None, stats=None) -> GateGradients:
    """The LSTM's backward up to the weight gradients, with ``pieces``: what the weight gradients are built from.

    A carry that is computed but never added (``no_h_carry``, ``no_c_carry``) is still what the code returns as
    dL/dh0 or dL/dc0: the carry out of the first step.
    """
    P, dc_dh = local_derivatives(cache, pieces.evaluated_at, pieces.forget_cell, pieces.tanh_c)
    WhT, factor = pieces.carry_h(cache.Wh), pieces.carry_c(cache)
    carried_WhT = WhT if pieces.h_carried else np.zeros_like(WhT)
    carried_factor = factor if pieces.c_carried else np.zeros_like(factor)
    dA, dcs, dh0, dc0 = backprop_through_time(
        dhs, cache, P, dc_dh, carried_WhT, dhT, dcT, state_clip, carried_factor, stats
    )
    if not pieces.h_carried:
        dh0 = dA[0] @ WhT
    if not pieces.c_carried:
        dc0 = dcs[0] * factor[0]
    return GateGradients(pieces.weight_input(dA, dcs), dcs, pieces.recurrent_input(cache), dh0, dc0)


def lstm_backward_with(pieces: Pieces, dhs, cache, dhT=None, dcT=None, state_clip=None, stats=None):
    """lstm_backward built from ``pieces``: (grads, dh0, dc0)."""
    g = gate_gradients_with(pieces, dhs, cache, dhT, dcT, state_clip, stats)
    return weight_gradients(cache, g.weight_input, g.h_in), g.dh0, g.dc0


def backward_of(pieces: Pieces) -> Backward:
    """The network's backward built from ``pieces`` (the core's own functions for the reference's)."""
    if pieces == Pieces():
        return REFERENCE
    return Backward(partial(lstm_backward_with, pieces), pieces.head)


def variant(names=()) -> Backward:
    """The network's backward with every named mistake in it (the reference itself for none)."""
    return backward_of(pieces_of(names))


def backward_for(name: str | None) -> Backward:
    """The backward ``model.fault=<name>`` trains with: the reference for None, else the one mistake's variant.

    Raises ValueError naming the valid faults for an unknown name.
    """
    if name is not None and name not in PIECEWISE:
        raise ValueError(f"unknown fault {name!r}; choose one of {', '.join(PIECEWISE)}")
    return variant([name] if name else [])

"""Deliberately wrong LSTM backwards that reproduce documented seed bugs, for testing the bench's checks.

Each fault has the signature of ``lstm_backward(dhs, cache, dhT=None, dcT=None, state_clip=None)`` and is
the core's own pipeline (``local_derivatives`` -> ``backprop_through_time`` -> ``weight_gradients``) with
exactly ONE piece swapped, so the real core carries no branches for them. Pass one as
``loss_and_grads(..., backward=fault)`` or ``check_problem(..., backward=fault)``.

- ``sigmoid_of_activation`` (seed 000). Buggy lines: ``do = dsigmoid(ot) * do`` (likewise ``df``, ``di``)
  and ``dct = dtanh(ct) * dct``, where ``dsigmoid(z) = sigmoid(z) (1 - sigmoid(z))`` and
  ``dtanh(z) = 1 - tanh(z)^2`` take the *pre-activation* but are handed the already-activated gates
  ``ot = sigmoid(a_o)`` and ``ct = tanh(a_g)``. Every gate's da_t is wrong, so dWx, dWh, db and dh0
  are corrupted, and dc0 too once T > 1 (it is reached through the wrong dh carry); dWy, dby are right.
- ``candidate_from_dc`` (seed 000, the question's own backpropagate). Buggy lines: ``dWc += dot(g, dc.T)``
  and ``dbc += dc``, the candidate's weight gradients taken from the cell-state gradient dc instead of
  the candidate's pre-activation gradient dct; ``dxc = dot(Wc, dct)`` still uses dct, so the recurrence
  is right. Corrupts only the g-columns of dWx, dWh, db; dh0, dc0, dWy, dby are right.
- ``dh_prev_one_gate`` (seed 003). Buggy line: ``dhtmp = np.dot(self.Wi, diga[bptt_step])`` with the
  f, o and g terms commented out: dh_{t-1} carries only the input gate's path. dh0 is always corrupted;
  once T > 1 every earlier timestep's da is wrong too, so dWx, dWh, db and dc0 are as well (at T = 1 they
  are right); dWy, dby are right.
"""

from __future__ import annotations

import numpy as np

from lstm_exp.lstm import backprop_through_time, local_derivatives, lstm_backward, weight_gradients


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)); only ever applied here to gate activations in [-1, 1], so exp cannot overflow."""
    return 1.0 / (1.0 + np.exp(-z))


def _transpose(Wh: np.ndarray) -> np.ndarray:
    """The correct recurrent carry matrix Wh^T of shape (4H, H)."""
    return Wh.T


def _gate_gradients(dA: np.ndarray, dcs: np.ndarray) -> np.ndarray:
    """The correct input to weight_gradients: the gate pre-activation gradients themselves."""
    return dA


def _assemble(
    dhs, cache, dhT, dcT, state_clip, derivatives=local_derivatives, carry=_transpose, weight_input=_gate_gradients
):
    """The core's backward pipeline with swappable pieces.

    Inputs:
    - dhs, cache, dhT, dcT, state_clip: as in lstm_backward
    - derivatives: cache -> (P, dc_dh), in place of local_derivatives
    - carry: Wh -> the (4H, H) matrix that carries da_t into h_{t-1}, in place of Wh^T
    - weight_input: (dA, dcs) -> the (T, B, 4H) gradients the weight gradients are built from

    Returns (grads, dh0, dc0) as lstm_backward does.
    """
    P, dc_dh = derivatives(cache)
    dA, dcs, dh0, dc0 = backprop_through_time(dhs, cache, P, dc_dh, carry(cache.Wh), dhT, dcT, state_clip)
    return weight_gradients(cache, weight_input(dA, dcs)), dh0, dc0


def _derivatives_at_activations(cache) -> tuple[np.ndarray, np.ndarray]:
    """Seed 000's P: sigmoid' and tanh' evaluated at the activated gates instead of the pre-activations.

    Inputs:
    - cache: LSTMCache from lstm_forward

    Returns (P, dc_dh) in the layout of local_derivatives; dc_dh is the correct one (the seed's
    ``dtanh(c)`` is applied to the cell state itself, which is right).
    """
    i, f, g, o = np.split(cache.gates, 4, axis=-1)
    si, sf, so = _sigmoid(i), _sigmoid(f), _sigmoid(o)  # s(s(a)) where s(a) was meant
    tg = np.tanh(g)  # tanh(tanh(a)) where tanh(a) was meant
    P = np.concatenate(
        [g * si * (1 - si), cache.cs[:-1] * sf * (1 - sf), i * (1 - tg * tg), cache.tanh_cs * so * (1 - so)],
        axis=-1,
    )
    return P, local_derivatives(cache)[1]


def _input_gate_carry(Wh: np.ndarray) -> np.ndarray:
    """Seed 003's carry matrix: Wh^T with the rows of the f, g and o gates zeroed."""
    H = Wh.shape[0]
    WhT = Wh.T.copy()
    WhT[H:] = 0.0
    return WhT


def _candidate_columns_from_dc(dA: np.ndarray, dcs: np.ndarray) -> np.ndarray:
    """Seed 000's weight input: dA with the candidate's columns replaced by the cell-state gradient dc."""
    H = dcs.shape[-1]
    out = dA.copy()
    out[..., 2 * H : 3 * H] = dcs
    return out


def sigmoid_of_activation(dhs, cache, dhT=None, dcT=None, state_clip=None):
    """lstm_backward with seed 000's derivatives of the activations (dsigmoid(ot), dtanh(ct)).

    Inputs and returns: as lstm_backward.
    """
    return _assemble(dhs, cache, dhT, dcT, state_clip, derivatives=_derivatives_at_activations)


def candidate_from_dc(dhs, cache, dhT=None, dcT=None, state_clip=None):
    """lstm_backward with seed 000's candidate weight gradients taken from dc (dWc += g dc^T, dbc += dc).

    Inputs and returns: as lstm_backward.
    """
    return _assemble(dhs, cache, dhT, dcT, state_clip, weight_input=_candidate_columns_from_dc)


def dh_prev_one_gate(dhs, cache, dhT=None, dcT=None, state_clip=None):
    """lstm_backward with seed 003's dh_{t-1} carrying only the input gate's path.

    Inputs and returns: as lstm_backward.
    """
    return _assemble(dhs, cache, dhT, dcT, state_clip, carry=_input_gate_carry)


SWAPS = {  # the one piece of the core's pipeline each fault replaces
    "sigmoid_of_activation": {"derivatives": _derivatives_at_activations},
    "candidate_from_dc": {"weight_input": _candidate_columns_from_dc},
    "dh_prev_one_gate": {"carry": _input_gate_carry},
}
SEEDS = {"sigmoid_of_activation": "000", "candidate_from_dc": "000", "dh_prev_one_gate": "003"}  # where each is from


def combined(names) -> object:
    """The core's backward with the pieces of every fault in ``names`` swapped in at once.

    Returns a function with lstm_backward's signature; the faults touch different pieces, so they compose.
    """
    swaps = {}
    for name in names:
        swaps.update(SWAPS[name])

    def backward(dhs, cache, dhT=None, dcT=None, state_clip=None):
        return _assemble(dhs, cache, dhT, dcT, state_clip, **swaps)

    return backward


FAULTS = {
    "sigmoid_of_activation": sigmoid_of_activation,
    "candidate_from_dc": candidate_from_dc,
    "dh_prev_one_gate": dh_prev_one_gate,
}


def backward_for(name: str | None):
    """The LSTM backward to use: the real lstm_backward for None, else the fault registered under ``name``.

    Raises ValueError naming the valid faults for an unknown name.
    """
    if name is None:
        return lstm_backward
    try:
        return FAULTS[name]
    except KeyError:
        raise ValueError(f"unknown fault {name!r}; choose one of {', '.join(FAULTS)}") from None

"""Divergence forensics: which tensor went non-finite first, and what the steps before it looked like.

``History`` keeps the last K steps' loss, gradient norm and max |c|. When a run diverges, ``trace_step``
replays the failing step with a finite check on every intermediate tensor, in computation order, and
``divergence_report`` bundles the first non-finite tensor, the recent history and a one-sentence summary
into a JSON-serialisable dict.

Tensor names reported by ``trace_step`` (``t`` is the timestep, ``b`` the batch row):

    inputs    param.Wx, param.Wh, param.b, param.Wy, param.by; h0, c0 (b)
    forward   for t = 0..T-1: gate_preactivation a_t (t, b), cell_state c_t (t, b), hidden_state h_t (t, b);
              then logits (the head's outputs: logits or predictions; t, b), loss
    backward  dlogits (t, b); for t = T-1..0: dcell_state (the total dL/dc_t; t, b),
              dgate_preactivation (dL/da_t; t, b); then dh0, dc0 (b); grad.Wx, grad.Wh, grad.b, grad.Wy, grad.by

The pre-activation a_t is checked itself because an infinite a_t gives finite gates (sigmoid(+-inf) is
1 or 0, tanh(+-inf) is +-1): the forward state can stay finite while the weight gradients turn NaN.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

import numpy as np

from lstm_exp.core.faults import Pieces, backward_of, gate_gradients_with
from lstm_exp.core.lstm import PARAM_NAMES, weight_gradients
from lstm_exp.core.network import Backward, StepOptions, loss_and_grads, loss_fn

ALL_PARAMS = (*PARAM_NAMES, "Wy", "by")  # the order parameters and their gradients are checked in
KINDS = ("diverged_nan", "diverged_loss")
MSE_MEAN = StepOptions("mse", "mean")


class Record(NamedTuple):
    step: int
    loss: float
    grad_norm: float
    max_abs_c: float


class History:
    """A ring buffer of the last ``maxlen`` steps' (step, loss, grad_norm, max_abs_c)."""

    def __init__(self, maxlen: int = 50):
        self._records: deque[Record] = deque(maxlen=maxlen)

    def record(self, step: int, loss: float, grad_norm: float, max_abs_c: float) -> None:
        """Append one step, dropping the oldest once the buffer is full."""
        self._records.append(Record(int(step), float(loss), float(grad_norm), float(max_abs_c)))

    def __len__(self) -> int:
        return len(self._records)

    @property
    def last(self) -> Record:
        """The most recent step."""
        return self._records[-1]

    def __iter__(self):
        return iter(self._records)

    def as_dict(self) -> dict:
        """One list per field, oldest first; non-finite floats become None so the result is strict JSON."""
        return {name: [_json_number(getattr(r, name)) for r in self._records] for name in Record._fields}


def _json_number(value):
    """ints as they are; a float as a float if finite, else None."""
    if isinstance(value, int):
        return value
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------------------
# trace_step


def _finding(tensor: str, phase: str, timestep: int | None = None, batch: int | None = None) -> dict:
    return {"tensor": tensor, "timestep": timestep, "batch": batch, "phase": phase}


def _bad_rows(arr: np.ndarray) -> np.ndarray:
    """True for each row that holds a non-finite entry.

    Inputs:
    - arr: a time-major array of shape (T, B, ...), or a per-batch array of shape (B, H)

    Returns a boolean mask of shape (T, B), or (B,) for a 2-d array.
    """
    lead = arr.shape[:2] if arr.ndim > 2 else arr.shape[:1]
    return ~np.isfinite(arr.reshape(*lead, -1)).all(axis=-1)


def _whole(name: str, arr, phase: str) -> dict | None:
    """A finding for ``name`` if any entry of ``arr`` is non-finite (no timestep, no batch row)."""
    return None if np.isfinite(arr).all() else _finding(name, phase)


def _per_batch(name: str, arr: np.ndarray, phase: str) -> dict | None:
    """A finding at the first non-finite batch row of a (B, H) array."""
    bad = _bad_rows(arr)
    return _finding(name, phase, batch=int(np.argmax(bad))) if bad.any() else None


def _per_timestep(tensors, times, phase: str) -> dict | None:
    """The first non-finite row over timesteps in the order ``times``, tensors interleaved per timestep.

    Inputs:
    - tensors: sequence of (name, time-major array of shape (T, B, ...)), in the order computed at each t
    - times: the timesteps in computation order

    Returns the finding for the first (t, tensor, batch row) holding a non-finite entry, or None.
    """
    masks = [(name, _bad_rows(arr)) for name, arr in tensors]
    for t in times:
        for name, mask in masks:
            if mask[t].any():
                return _finding(name, phase, int(t), int(np.argmax(mask[t])))
    return None


def _preactivations(params: dict, cache) -> np.ndarray:
    """a_t = x_t Wx + b + h_{t-1} Wh for all t, recomputed from the cache, of shape (T, B, 4H)."""
    x, Wx = cache.x, params["Wx"]
    xw = Wx[x] if np.issubdtype(x.dtype, np.integer) else x @ Wx  # token ids pick rows of Wx
    return xw + params["b"] + cache.hs[:-1] @ params["Wh"]


def _recording_backward(store: dict, pieces: Pieces) -> Backward:
    """The network's backward built from ``pieces``, also keeping the gate gradients (T, B, 4H) and the cell-state
    gradients dcs (T, B, H) in store."""

    def lstm(dhs, cache, dhT=None, dcT=None, state_clip=None, stats=None):
        g = gate_gradients_with(pieces, dhs, cache, dhT, dcT, state_clip, stats)
        store.update(dA=g.weight_input, dcs=g.dcs)
        return weight_gradients(cache, g.weight_input, g.h_in), g.dh0, g.dc0

    return backward_of(pieces)._replace(lstm=lstm)


def _checks(params, x, y, h0, c0, options: StepOptions, dhT, dcT, pieces: Pieces):
    """Yield a finding or None for each check, in computation order; the step runs only if the inputs pass."""
    for name in ALL_PARAMS:
        yield _whole(f"param.{name}", params[name], "forward")
    yield _per_batch("h0", h0, "forward")
    yield _per_batch("c0", c0, "forward")

    store: dict = {}  # the backward's internals
    backward = _recording_backward(store, pieces)
    loss, reduction = options.loss, options.reduction
    r = loss_and_grads(params, x, y, h0, c0, loss, reduction, dhT, dcT, options.state_clip, backward)
    cache = r.cache
    T = cache.gates.shape[0]
    forward_tensors = [
        ("gate_preactivation", _preactivations(params, cache)),
        ("cell_state", cache.cs[1:]),
        ("hidden_state", cache.hs[1:]),
    ]
    yield _per_timestep(forward_tensors, range(T), "forward")
    yield _per_timestep([("logits", r.outputs.transpose(1, 0, 2))], range(T), "forward")
    yield _whole("loss", r.loss, "forward")

    # the loss's gradient is not returned by loss_and_grads: recompute it (its finiteness does not depend
    # on the targets' dtype cast)
    dlogits = loss_fn(loss)(r.outputs, y, reduction)[1]
    yield _per_timestep([("dlogits", dlogits.transpose(1, 0, 2))], range(T), "backward")
    backward_tensors = [("dcell_state", store["dcs"]), ("dgate_preactivation", store["dA"])]
    yield _per_timestep(backward_tensors, range(T - 1, -1, -1), "backward")
    yield _per_batch("dh0", r.dstate[0], "backward")
    yield _per_batch("dc0", r.dstate[1], "backward")
    for name in ALL_PARAMS:
        yield _whole(f"grad.{name}", r.grads[name], "backward")


def trace_step(
    params: dict,
    x: np.ndarray,
    y: np.ndarray,
    h0: np.ndarray,
    c0: np.ndarray,
    options: StepOptions = MSE_MEAN,
    pieces: Pieces = Pieces(),  # noqa: B008 (an immutable NamedTuple)
    dhT=None,
    dcT=None,
) -> dict | None:
    """Replay one training step and name the first non-finite tensor in computation order.

    Inputs:
    - params, x, y, h0, c0: as for loss_and_grads in the training step
    - options: the step's loss, reduction and state clip (as the run's model holds them)
    - pieces: the backward the run used, piece by piece (``lstm_exp.core.faults``: the reference's, or with a
      catalogued mistake in it)
    - dhT, dcT: optional upstream gradients of the final state, each of shape (B, H)

    Returns None if every tensor is finite, else a dict with keys tensor (see the module docstring),
    timestep (int or None), batch (int or None) and phase ("forward" or "backward").
    """
    with np.errstate(all="ignore"):
        checks = _checks(params, x, y, h0, c0, options, dhT, dcT, pieces)
        return next((f for f in checks if f), None)


HIDDEN_INTERNALS = (
    "the internals of a user implementation (gate pre-activations, cell states, BPTT carries) are not visible "
    "to the tool; only its parameters, its loss and its returned gradients are checked"
)


def _black_box_checks(params: dict, h0, c0, sequences):
    """Yield findings for a model seen only from outside: its inputs, then each sequence's loss and gradients."""
    for name, arr in params.items():
        yield _whole(f"param.{name}", arr, "forward")
    yield _per_batch("h0", h0, "forward")
    yield _per_batch("c0", c0, "forward")
    sequences = list(sequences)  # the step runs only if the inputs pass
    for b, (loss, _, _) in enumerate(sequences):
        if not np.isfinite(loss):
            yield _finding("loss", "forward", batch=b)
    for name in sequences[0][1]:
        for b, (_, grads, _) in enumerate(sequences):
            if not np.isfinite(grads[name]).all():
                yield _finding(f"grad.{name}", "backward", batch=b)
                break


def trace_black_box(params: dict, h0: np.ndarray, c0: np.ndarray, sequences) -> dict | None:
    """The first non-finite tensor of a step whose model exposes only its loss and gradients.

    Inputs:
    - params: the model's own parameters; h0, c0: the step's initial state, each of shape (B, H)
    - sequences: an iterable of (loss, grads, state) per batch row, evaluated lazily

    Returns None if all are finite, else a finding as trace_step's (user parameter names kept, e.g.
    ``grad.Wf``), with ``unavailable`` saying what cannot be inspected.
    """
    with np.errstate(all="ignore"):
        found = next((f for f in _black_box_checks(params, h0, c0, sequences) if f), None)
    return None if found is None else {**found, "unavailable": HIDDEN_INTERNALS}


# ---------------------------------------------------------------------------------------------------------
# divergence_sentence / divergence_report


def _num(value: float) -> str:
    """Three significant digits with a compact exponent: 870, 3.1, 1.2e4, 5e-7."""
    text = f"{value:.3g}"
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else text


def _factor(first: float, last: float) -> str:
    """'rose 12x' / 'fell 3x' from first to last (both finite)."""
    if first <= 0:
        return f"went {_num(first)} -> {_num(last)}"
    ratio = last / first
    return f"rose {_num(ratio)}x" if ratio >= 1 else f"fell {_num(1 / ratio)}x"


def _finite_records(history: History, step: int) -> list[Record]:
    """Records up to ``step`` whose loss and grad norm are finite (max |c| is NaN when a model hides it)."""
    return [r for r in history if r.step <= step and math.isfinite(r.loss) and math.isfinite(r.grad_norm)]


def _trend(step: int, records: list[Record]) -> str:
    """How the gradient norm and max |c| moved over the finite records before ``step``."""
    if len(records) < 2:
        return f"no finite history to compare before step {step}"
    first, last = records[0], records[-1]
    text = f"grad norm {_factor(first.grad_norm, last.grad_norm)} over the {step - first.step} steps before step {step}"
    if math.isfinite(first.max_abs_c) and math.isfinite(last.max_abs_c):
        text += f" (max |c| {_num(first.max_abs_c)} -> {_num(last.max_abs_c)})"
    return text


def _where(trace: dict) -> str:
    """'logits at t=57 (batch 0)' / 'param.Wh' / 'h0 (batch 1)'."""
    text = trace["tensor"]
    if trace.get("timestep") is not None:
        text += f" at t={trace['timestep']}"
    if trace.get("batch") is not None:
        text += f" (batch {trace['batch']})"
    return text


def _loss_growth(step: int, records: list[Record]) -> str:
    """'loss reached 12x its first value' from the oldest and newest finite records."""
    if not records:
        return f"loss grew without a finite record by step {step}"
    first, last = records[0], records[-1]
    base = "its first value" if first.step == 0 else f"its value at step {first.step}"
    ratio = last.loss / first.loss if first.loss else math.inf
    return f"loss reached {_num(ratio)}x {base}"


def divergence_sentence(step: int, trace: dict | None, history: History, kind: str) -> str:
    """One sentence saying what blew up, when, and what led up to it.

    Inputs:
    - step: the step at which divergence was declared
    - trace: the result of trace_step for that step (or None)
    - history: the History of the steps up to it
    - kind: "diverged_nan" or "diverged_loss"

    Returns e.g. "grad norm rose 1.2e4x over the 30 steps before step 212 (max |c| 3.1 -> 870);
    first non-finite: logits at t=57 (batch 0)".
    """
    if kind not in KINDS:
        raise ValueError(f"unknown divergence kind {kind!r}; choose one of {', '.join(KINDS)}")
    records = _finite_records(history, step)
    parts = [_trend(step, records)]
    if kind == "diverged_loss":
        parts.append(_loss_growth(step, records))
    if trace is not None:
        parts.append(f"first non-finite: {_where(trace)}")
    elif kind == "diverged_nan":
        parts.append("no non-finite tensor on replay")
    return "; ".join(parts)


def divergence_report(step: int, kind: str, trace: dict | None, history: History, reason: str) -> dict:
    """Everything known about a divergence, as plain JSON types.

    Inputs:
    - step, kind, trace, history: as for divergence_sentence
    - reason: the training loop's own one-line reason

    Returns a dict with step, kind, reason, first_nonfinite (the trace or None), sentence and history
    (History.as_dict()); only dict, list, str, int, float and None inside.
    """
    return {
        "step": int(step),
        "kind": str(kind),
        "reason": str(reason),
        "first_nonfinite": None if trace is None else dict(trace),
        "sentence": divergence_sentence(step, trace, history, kind),
        "history": history.as_dict(),
    }

"""The model seam: what the training loop, the gradient check and the forensics talk to.

A *model* has one job — "loss, gradients and final state for this batch" — plus the few things the
runner needs around it (its parameters' initial values, a forward-only loss, a replay that names the
first non-finite tensor, optional health measures, the fused view of its weights). Three kinds exist:

- ``CoreModel`` with the real ``lstm_backward``: the verified core, the reference for everything else;
- ``CoreModel`` with a ``lstm_exp.core.faults`` backward: the core with one seed bug swapped in;
- ``lstm_exp.models.user.UserModel``: a user's own hand-written LSTM (``model.impl=``), through a layout.

The loop never asks which kind it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lstm_exp.core.faults import Pieces, backward_of, pieces_of
from lstm_exp.core.forensics import trace_step
from lstm_exp.core.health import max_abs_cell, saturated_fraction
from lstm_exp.core.init import init_from_config
from lstm_exp.core.network import StepOptions, StepResult, forward_loss, loss_and_grads, param_shapes
from lstm_exp.models.user import user_model


class Model(Protocol):
    label: str  # what the model is called in summaries and reports ("core", "core+fault", a class name)
    hidden: int

    def init_params(self, rng: np.random.Generator) -> dict: ...

    def step(self, params: dict, x, y, h0, c0) -> StepResult: ...

    def loss(self, params: dict, x, y, h0, c0) -> float: ...

    def trace(self, params: dict, x, y, h0, c0) -> dict | None: ...

    def health(self, result: StepResult) -> dict: ...

    def fused(self, params: dict) -> dict | None: ...


@dataclass(frozen=True)
class CoreModel:
    """The fused NumPy core, optionally with a deliberately wrong backward (``model.fault``)."""

    options: StepOptions
    shapes: dict  # lstm_exp.core.network.param_shapes
    init: object  # the ``init`` config section
    dtype: np.dtype = np.dtype(np.float64)
    pieces: Pieces = Pieces()  # the reference's backward, or with a catalogued mistake in it (model.fault)
    label: str = "core"

    @property
    def hidden(self) -> int:
        return self.shapes["Wh"][0]

    def init_params(self, rng: np.random.Generator) -> dict:
        return init_from_config(self.shapes, rng, self.init, self.dtype)

    def step(self, params, x, y, h0, c0) -> StepResult:
        o = self.options
        return loss_and_grads(
            params, x, y, h0, c0, o.loss, o.reduction, state_clip=o.state_clip, backward=backward_of(self.pieces)
        )

    def loss(self, params, x, y, h0, c0) -> float:
        return forward_loss(params, x, y, h0, c0, self.options.loss, self.options.reduction)

    def trace(self, params, x, y, h0, c0) -> dict | None:
        return trace_step(params, x, y, h0, c0, self.options, self.pieces)

    def health(self, result: StepResult) -> dict:
        return {"max_abs_c": max_abs_cell(result.cache), "gate_saturation": saturated_fraction(result.cache)}

    def fused(self, params: dict) -> dict:
        return params

    def call(self, params, x, y, h0, c0) -> tuple[float, dict, tuple]:
        """One unbatched sequence, as a user model answers it (``mode=diagnose``): (loss, grads with h0 and c0,
        (hT, cT))."""
        o = self.options
        r = loss_and_grads(
            params, x[None], y[None], h0[None], c0[None], o.loss, o.reduction, backward=backward_of(self.pieces)
        )
        return r.loss, {**r.grads, "h0": r.dstate[0][0], "c0": r.dstate[1][0]}, (r.state[0][0], r.state[1][0])


def step_options(cfg, task) -> StepOptions:
    """The step options of a validated config and its task."""
    oc = cfg.optim
    state_clip = oc.clip if oc.clip_mode.name == "state" and oc.clip else None
    return StepOptions(task.loss, cfg.task.reduction.name, state_clip)


def build_model(cfg, task, dims: tuple | None = None) -> Model:
    """The model the config asks for: the core, the core with ``model.fault``, or ``model.impl``; ``dims``
    (D, H, K) overrides the task's and the config's sizes (the small problems of ``mode=diagnose``)."""
    options = step_options(cfg, task)
    dims = dims or (task.input_dim, cfg.model.hidden, task.output_dim)
    if cfg.model.impl is not None:
        return user_model(cfg, options, dims)
    fault = cfg.model.fault.name if cfg.model.fault is not None else None
    shapes = param_shapes(*dims)
    return CoreModel(
        options,
        shapes,
        cfg.init,
        np.dtype(cfg.model.dtype.name),
        pieces_of([fault] if fault else []),
        f"core+{fault}" if fault else "core",
    )

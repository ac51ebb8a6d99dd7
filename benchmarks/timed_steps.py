"""The training steps ``bench_core.py`` times, and the start-up check that they compute the same thing.

One step = LSTM forward + affine head at every timestep + loss + BPTT backward with all gradients, i.e. one
call of ``lstm_exp.core.network.loss_and_grads``. ``make_runners`` builds every available implementation's step
on one case: ``ours64`` / ``ours32`` (the core), ``naive`` (``naive_lstm.py``), ``gemm64``
(``pure_gemm.py``) and, when torch is installed, ``torch64`` / ``torch32`` (``torch_adapter.py``).
``verify`` asserts that naive and torch agree with the core in float64 before anything is timed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from bench_cases import BenchCase, Size, cast, make_case
from naive_lstm import naive_loss_and_grads  # the script's own folder is on sys.path
from pure_gemm import gemm_step
from torch_adapter import torch, torch_grads, torch_step

from lstm_exp.core.lstm import init_state
from lstm_exp.core.network import loss_and_grads

NAIVE_TOL = 1e-10
TORCH_TOL = 1e-8


def ours_step(case: BenchCase, dtype) -> Callable[[], float]:
    """One training step of our core in ``dtype``; returns the loss."""
    params, x, y = cast(case, dtype)
    h0, c0 = init_state(case.size.batch, case.size.hidden, dtype)

    def step() -> float:
        return loss_and_grads(params, x, y, h0, c0, loss=case.size.loss).loss

    return step


def naive_step(case: BenchCase) -> Callable[[], float]:
    """One training step of the naive float64 baseline; returns the loss."""

    def step() -> float:
        return naive_loss_and_grads(case.params, case.x, case.y, case.size.loss)[0]

    return step


def make_runners(case: BenchCase) -> dict[str, Callable[[], float]]:
    """Every available implementation's step for one case."""
    runners = {
        "ours64": ours_step(case, np.float64),
        "ours32": ours_step(case, np.float32),
        "naive": naive_step(case),
        "gemm64": gemm_step(case),
    }
    if torch is not None:
        runners["torch64"] = torch_step(case, torch.float64)
        runners["torch32"] = torch_step(case, torch.float32)
    return runners


def max_rel_error(actual: dict, expected: dict) -> float:
    """Largest |actual - expected| over all gradients, relative to max(1, |expected|) per array."""
    return max(
        float(np.max(np.abs(actual[k] - expected[k])) / max(1.0, float(np.max(np.abs(expected[k]))))) for k in expected
    )


def check_case(size: Size, rng: np.random.Generator) -> str:
    """Assert naive (and torch) match our float64 core on one small case; describe the errors."""
    case = make_case(size, rng)
    h0, c0 = init_state(size.batch, size.hidden)
    ref = loss_and_grads(case.params, case.x, case.y, h0, c0, loss=size.loss)
    loss, grads = naive_loss_and_grads(case.params, case.x, case.y, size.loss)
    naive_err = max(abs(loss - ref.loss), max_rel_error(grads, ref.grads))
    assert naive_err <= NAIVE_TOL, f"naive LSTM disagrees with the core on {size.label}: {naive_err:.2e}"
    text = f"{size.label}: naive max err {naive_err:.1e}"
    if torch is not None:
        step = torch_step(case, torch.float64)
        torch_err = max(abs(step() - ref.loss), max_rel_error(torch_grads(step), ref.grads))
        assert torch_err <= TORCH_TOL, f"torch disagrees with the core on {size.label}: {torch_err:.2e}"
        text += f", torch max err {torch_err:.1e}"
    return text


def verify(rng: np.random.Generator) -> None:
    """Start-up check in float64: naive within 1e-10 and torch within 1e-8 of the core (loss and grads)."""
    print("Verification against lstm_exp.core.network.loss_and_grads (float64, loss and all gradients):")
    for size in (Size("char", 8, 6, 3), Size("sine", 8, 6, 3)):
        print("  " + check_case(size, rng))
    print("  OK: naive within 1e-10" + (", torch within 1e-8" if torch is not None else ""))

"""Numerical gradient check: central differences in float64 against the hand-written backward.

The numerical derivative is the fourth-order central difference
    f'(x) ~ (f(x - 2h) - 8 f(x - h) + 8 f(x + h) - f(x + 2h)) / 12h,   h = 2e-3,
whose truncation error (~h^4) and round-off (~eps |f| / h) are both ~1e-12 here, where the textbook
two-point form is limited to ~1e-10 by round-off. The relative error of an entry is
|a - n| / max(|a| + |n|, floor), the CS231n form with the floor raised to the round-off level of the
stencil divided by the tolerance: a gradient entry too small for finite differences to resolve (an
unused token's row, say) is then judged by its absolute error instead of by noise.

The objective of a check is the loss plus <wh, hT> + <wc, cT> for fixed random wh, wc, so the
upstream gradients of the final state (dhT = wh, dcT = wc) are exercised too. Every perturbed
evaluation starts from the *same* h0, c0 (seed 002's harness fed each pass the previous pass's final
state, so its check could never agree).

A population (``lstm_exp.core.members``) is checked the same way: its objective is the sum of its members', so
each member's gradient is the population's gradient in that member's slice.

Run ``python -m lstm_exp.gradcheck`` for a table over both losses and both reductions, and a population; the exit
status is non-zero if any tensor fails.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lstm_exp.core.members import stack
from lstm_exp.core.network import REFERENCE, Backward, loss_and_grads, param_shapes

TOLERANCE = 1e-7  # max relative error allowed per tensor (float64, tiny shapes)
STEP = 2e-3  # h of the fourth-order stencil


class CheckRow(NamedTuple):
    tensor: str
    max_rel_error: float
    checked: int  # entries compared
    size: int  # entries in the tensor
    passed: bool


class Problem(NamedTuple):
    """Everything the objective depends on; arrays are perturbed in place, one entry at a time."""

    params: dict
    x: np.ndarray
    y: np.ndarray
    h0: np.ndarray
    c0: np.ndarray
    wh: np.ndarray  # dL/dhT
    wc: np.ndarray  # dL/dcT
    loss: str
    reduction: str


def rel_error(analytic: np.ndarray, numeric: np.ndarray, floor: float = 1e-8) -> float:
    """Largest elementwise |a - n| / max(|a| + |n|, floor) (CS231n's definition when floor = 1e-8)."""
    a, n = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), floor)))


def resolution_floor(f0: float, step: float = STEP, tol: float = TOLERANCE) -> float:
    """Gradient magnitude below which the stencil's round-off (~4 eps max(1, |f|) / h) exceeds tol."""
    return 4 * np.finfo(np.float64).eps * max(1.0, abs(f0)) / step / tol


def objective(p: Problem, backward: Backward = REFERENCE) -> float:
    """The scalar being differentiated: loss + <wh, hT> + <wc, cT>."""
    r = loss_and_grads(p.params, p.x, p.y, p.h0, p.c0, p.loss, p.reduction, backward=backward)
    hT, cT = r.state
    return float(np.sum(r.loss)) + float(np.sum(p.wh * hT) + np.sum(p.wc * cT))


def analytic_gradients(p: Problem, backward: Backward = REFERENCE) -> dict:
    """Gradients of ``objective`` from the backward pass, for every parameter and for h0, c0."""
    r = loss_and_grads(p.params, p.x, p.y, p.h0, p.c0, p.loss, p.reduction, p.wh, p.wc, backward=backward)
    return {**r.grads, "h0": r.dstate[0], "c0": r.dstate[1]}


def numerical_gradient(f, arr: np.ndarray, indices: np.ndarray, step: float = STEP) -> np.ndarray:
    """Fourth-order central differences of f() with respect to ``arr`` at the given flat indices."""
    flat = arr.reshape(-1)  # a view: perturbing it perturbs arr
    out = np.empty(len(indices))
    for k, ix in enumerate(indices):
        old = flat[ix]
        values = []
        for offset in (-2, -1, 1, 2):
            flat[ix] = old + offset * step
            values.append(f())
        flat[ix] = old  # restore exactly: the next evaluation sees the original tensor
        f_m2, f_m1, f_p1, f_p2 = values
        out[k] = (f_m2 - 8 * f_m1 + 8 * f_p1 - f_p2) / (12 * step)
    return out


def check_problem(
    p: Problem, backward: Backward = REFERENCE, max_entries: int | None = None, seed: int = 0, tol: float = TOLERANCE
) -> list[CheckRow]:
    """Compare the backward against central differences for every parameter and for h0, c0.

    Tensors with more than ``max_entries`` entries are checked on a seeded random subset.
    """
    rng = np.random.default_rng(seed)
    floor = resolution_floor(objective(p, backward), tol=tol)
    analytic = analytic_gradients(p, backward)
    tensors = {**p.params, "h0": p.h0, "c0": p.c0}
    rows = []
    for name, arr in tensors.items():
        if max_entries is not None and arr.size > max_entries:
            idx = np.sort(rng.choice(arr.size, size=max_entries, replace=False))
        else:
            idx = np.arange(arr.size)
        numeric = numerical_gradient(lambda: objective(p, backward), arr, idx)
        err = rel_error(analytic[name].reshape(-1)[idx], numeric, floor)
        rows.append(CheckRow(name, err, len(idx), arr.size, err < tol))
    return rows


def tiny_problem(
    loss: str = "mse",
    reduction: str = "mean",
    B: int = 2,
    T: int = 4,
    D: int = 3,
    H: int = 4,
    K: int = 2,
    seed: int = 0,
    token_ids: bool = False,
) -> Problem:
    """A small random float64 problem with non-zero h0, c0 and non-zero upstream dhT, dcT.

    ``token_ids`` feeds integer ids over a vocabulary of D instead of dense inputs; ``xent`` uses
    K classes as targets.
    """
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(0.0, 0.5, size=s) for k, s in param_shapes(D, H, K).items()}
    x = rng.integers(0, D, size=(B, T)) if token_ids else rng.normal(size=(B, T, D))
    y = rng.integers(0, K, size=(B, T)) if loss == "xent" else rng.normal(size=(B, T, K))
    h0, c0, wh, wc = (rng.normal(size=(B, H)) for _ in range(4))
    return Problem(params, x, y, h0, c0, wh, wc, loss, reduction)


def population_problem(members: int = 3, **kwargs) -> Problem:
    """``members`` tiny problems (seeds 0, 1, ...) stacked into one population problem."""
    problems = [tiny_problem(seed=s, **kwargs) for s in range(members)]
    first = problems[0]
    params = stack([p.params for p in problems])
    arrays = [np.stack([getattr(p, name) for p in problems]) for name in ("x", "y", "h0", "c0", "wh", "wc")]
    return Problem(params, *arrays, first.loss, first.reduction)


def format_table(title: str, rows: list[CheckRow]) -> str:
    lines = [title, f"  {'tensor':<8}{'max rel error':>15}{'checked':>10}  result"]
    for r in rows:
        verdict = "pass" if r.passed else "FAIL"
        lines.append(f"  {r.tensor:<8}{r.max_rel_error:>15.3e}{f'{r.checked}/{r.size}':>10}  {verdict}")
    return "\n".join(lines)


def main() -> int:
    cases = [
        ("mse", "mean", False),
        ("mse", "sum", False),
        ("xent", "mean", True),
        ("xent", "sum", True),
    ]
    failed = 0
    for loss, reduction, ids in cases:
        rows = check_problem(tiny_problem(loss, reduction, T=5, D=5, K=3, token_ids=ids))
        inputs = "token ids" if ids else "dense inputs"
        title = f"{loss} loss, reduction={reduction}, {inputs} (B=2, T=5, H=4, tol {TOLERANCE:g})"
        print(format_table(title, rows))
        failed += sum(not r.passed for r in rows)
    rows = check_problem(population_problem(3, loss="xent", T=5, D=5, K=3, token_ids=True))
    print(format_table("a population of 3 (xent, token ids; each member its own weights and data)", rows))
    failed += sum(not r.passed for r in rows)
    print("gradient check:", "all tensors pass" if not failed else f"{failed} tensor(s) FAIL")
    return 1 if failed else 0

"""``mode=diagnose``: is the model's code right, and if not, where is it wrong?

The model under test (a user's ``model.impl`` through its layout, or the core itself, with or without
``model.fault``) is run on small random problems with *identical* weights beside the verified core:

1. **forward**: its loss against the reference's summed loss on the same weights and the same h0, c0.
   The loss convention (sum over time, mean over time, 1/2 of the sum, ...) is found by an exact ratio;
   if none fits — or the final state differs — the forward (or the layout) differs.
2. **its own gradient check**: fourth-order central differences of *its own* loss, every perturbed pass
   from the same h0, c0 (never seed 002's harness bug), per tensor. If its gradients are a constant
   multiple c != 1 of that loss's gradient, the loss it returns and the loss it differentiates disagree.
3. **against the reference**, per tensor and per gate block, on three problems that separate the causes:
   T = 1 from a zero state (tests little: the recurrent weights and the forget gate get no gradient),
   T = 1 from a non-zero state (the local derivatives: no carry is involved yet) and T >= 3 (the carry).
   Weight gradients wrong at T = 1 -> ``local_derivatives``; right at T = 1 but wrong at T >= 3, or a
   returned dL/dh0, dL/dc0 wrong -> ``bptt_carry``; only the output layer wrong -> ``output_layer``.
4. **signature match**: the reference is re-run with every fault of ``lstm_exp.faults``, alone and in
   combination; a combination whose gradients equal the model's (to 1e-10) is named with its seed.

The verdict, the findings and one row per tensor go to the console and to ``diagnosis.json``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from lstm_exp.faults import FAULTS, SEEDS, combined
from lstm_exp.gradcheck import TOLERANCE, numerical_gradient, rel_error, resolution_floor
from lstm_exp.layout import GATES, Layout, from_fused, to_fused
from lstm_exp.lstm import lstm_backward
from lstm_exp.model import loss_and_grads

HIDDEN = 3  # small shapes: the numerical check perturbs every entry
VOCAB = 6  # token-id tasks are diagnosed over a vocabulary this small
LOSS_RTOL = 1e-8  # loss conventions are exact ratios, up to round-off
REFERENCE_TOL = 1e-7  # normwise relative error for "matches the reference"
SIGNATURE_TOL = 1e-10  # "reproduces a fault exactly"
MAX_ENTRIES = 120  # numerically checked entries per tensor (a seeded sample above this)
STATE = ("h0", "c0")
WEIGHTS = ("Wx", "Wh", "b")
OUTPUT = ("Wy", "by")

FINDINGS = ("forward", "loss_scale", "output_layer", "local_derivatives", "bptt_carry")


def conventions(loss: str, T: int, K: int) -> list[tuple[str, float]]:
    """(name, factor) of every loss convention known, as a multiple of the reference's summed loss."""
    if loss == "xent":
        return [("sum over time", 1.0), ("mean over time", 1.0 / T)]
    if K == 1:  # one output: over outputs, sum and mean are the same
        return [
            ("sum over time", 1.0),
            ("1/2 sum over time", 0.5),
            ("mean over time", 1.0 / T),
            ("1/2 mean over time", 0.5 / T),
        ]
    return [
        ("sum over time and outputs", 1.0),
        ("1/2 sum over time and outputs", 0.5),
        ("mean over time, summed over outputs", 1.0 / T),
        ("1/2 mean over time, summed over outputs", 0.5 / T),
        ("mean over time and outputs", 1.0 / (T * K)),
        ("1/2 mean over time and outputs", 0.5 / (T * K)),
        ("sum over time, mean over outputs", 1.0 / K),
        ("1/2 sum over time, mean over outputs", 0.5 / K),
    ]


def convention_named(loss: str, T: int, K: int, factor: float) -> str | None:
    """The name of the convention whose factor is ``factor`` (to round-off), or None."""
    return next((n for n, f in conventions(loss, T, K) if abs(f - factor) <= LOSS_RTOL * f), None)


def normwise(a: np.ndarray, ref: np.ndarray) -> float:
    """max |a - ref| / max |ref| (0 when both are zero): robust for entries computed in a different order."""
    scale = float(np.max(np.abs(ref))) if np.size(ref) else 0.0
    diff = float(np.max(np.abs(np.asarray(a) - ref))) if np.size(ref) else 0.0
    if scale == 0.0:
        return 0.0 if diff == 0.0 else np.inf
    return diff / scale


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


def make_cases(loss: str, token_ids: bool, D: int, K: int, rng: np.random.Generator) -> list[Case]:
    """T = 1 from a zero state, T = 1 from a non-zero state, and T >= 3 (never equal to K) from a non-zero one."""
    long_T = 5 if K != 5 else 4

    def data(T):
        x = rng.integers(0, D, size=T) if token_ids else rng.normal(size=(T, D))
        y = rng.integers(0, K, size=T) if loss == "xent" else rng.normal(size=(T, K))
        return x, y

    zero = np.zeros(HIDDEN)
    cases = [Case("T=1, zero state", *data(1), zero.copy(), zero.copy())]
    cases.append(Case("T=1, non-zero state", *data(1), rng.normal(size=HIDDEN), rng.normal(size=HIDDEN)))
    cases.append(Case(f"T={long_T}, non-zero state", *data(long_T), rng.normal(size=HIDDEN), rng.normal(size=HIDDEN)))
    return cases


@dataclass
class Reference:
    """The core's summed loss, gradients and final state for one case (optionally with faults)."""

    loss: float
    grads: dict  # fused names, plus h0, c0
    state: tuple


def reference(fused: dict, case: Case, loss: str, backward=lstm_backward) -> Reference:
    r = loss_and_grads(fused, case.x[None], case.y[None], case.h0[None], case.c0[None], loss, "sum", backward=backward)
    grads = {**r.grads, "h0": r.dstate[0][0], "c0": r.dstate[1][0]}
    return Reference(r.loss, grads, (r.state[0][0], r.state[1][0]))


class CoreUnderTest:
    """The core (or the core with a fault) behind the same unbatched call a user model answers."""

    def __init__(self, loss: str, reduction: str, backward, label: str):
        self.loss_name, self.reduction, self.backward, self.label = loss, reduction, backward, label

    def call(self, params, x, y, h0, c0):
        r = loss_and_grads(
            params, x[None], y[None], h0[None], c0[None], self.loss_name, self.reduction, backward=self.backward
        )
        return r.loss, {**r.grads, "h0": r.dstate[0][0], "c0": r.dstate[1][0]}, (r.state[0][0], r.state[1][0])


def own_gradcheck(model, params: dict, case: Case, grads: dict, rng) -> dict:
    """Central differences of the model's own loss, from the same h0, c0 every time: name -> (analytic, numeric)."""
    h0, c0 = case.h0.copy(), case.c0.copy()
    tensors = {**params, **{k: v for k, v in (("h0", h0), ("c0", c0)) if k in grads}}

    def f():
        return model.call(params, case.x, case.y, h0, c0)[0]

    out = {}
    for name, arr in tensors.items():
        idx = np.arange(arr.size)
        if arr.size > MAX_ENTRIES:
            idx = np.sort(rng.choice(arr.size, size=MAX_ENTRIES, replace=False))
        out[name] = (grads[name].reshape(-1)[idx], numerical_gradient(f, arr, idx))
    return out


def loss_scale(checked: dict, anchor: str, floor: float) -> float:
    """c if the anchor tensor's gradient is exactly c x its numerical gradient (else 1)."""
    a, n = checked.get(anchor, (None, None))
    if a is None or not np.any(n):
        return 1.0
    c = float(a @ n / (n @ n))
    return c if abs(c - 1) > 1e-6 and rel_error(a, c * n, floor) < TOLERANCE else 1.0


def _gate_errors(user: dict, ref: dict, H: int, names=WEIGHTS) -> dict:
    """gate -> the worst normwise error over the fused weight tensors' columns of that gate."""
    errors = {}
    for k, gate in enumerate(GATES):
        cols = slice(k * H, (k + 1) * H)
        errors[gate] = max(normwise(user[n][..., cols], ref[n][..., cols]) for n in names)
    return errors


@dataclass
class Bench:
    """Everything the checks share: the model's and the reference's results on the same cases and weights."""

    model: object
    params: dict
    layout: Layout
    dims: tuple  # (D, H, K)
    loss: str
    cases: list
    fused: dict  # the weights in the core's layout, taken before the model runs (buggy code may write into them)
    runs: list  # the model's (loss, grads, state) per case

    @cached_property
    def refs(self) -> list:
        """The reference's results per case, on the same weights."""
        return [reference(self.fused, c, self.loss) for c in self.cases]

    @property
    def returned(self) -> list[str]:
        """The state gradients the model returns (dL/dh0, dL/dc0), if any."""
        return [k for k in STATE if k in self.runs[-1][1]]

    @cached_property
    def compared(self) -> list[str]:
        """The fused tensors the model has (a layout without biases has no b, by) and the returned state grads."""
        lay = self.layout
        has_by = lay.output.get("b") is not None and (lay.output_bias or lay.bias) != "none"
        names = [n for n in (*WEIGHTS, *OUTPUT) if (n != "b" or lay.bias != "none") and (n != "by" or has_by)]
        return [*names, *self.returned]

    @cached_property
    def _user_fused(self) -> list:
        return [to_fused(r[1], self.layout, *self.dims) for r in self.runs]

    def user_fused(self, k: int) -> dict:
        """The model's gradients of case k in the core's layout."""
        return self._user_fused[k]


class Forward(NamedTuple):
    convention: str  # its name, or "none fits (...)"
    factors: list  # per case: the model's loss / the reference's summed loss
    notes: list


def check_forward(b: Bench) -> Forward:
    """The loss convention that makes the model's loss the reference's in every case, and the same final state."""
    K, last = b.dims[2], len(b.cases) - 1
    ratios = [r[0] / ref.loss if ref.loss else np.inf for r, ref in zip(b.runs, b.refs, strict=True)]
    name = convention_named(b.loss, b.cases[last].T, K, ratios[last])
    if name is not None:
        factors = [dict(conventions(b.loss, c.T, K))[name] for c in b.cases]
        agrees = all(abs(r - f) <= LOSS_RTOL * f for r, f in zip(ratios, factors, strict=True))
        same_state = all(
            normwise(np.concatenate(r[2]), np.concatenate(ref.state)) < LOSS_RTOL
            for r, ref in zip(b.runs, b.refs, strict=True)
        )
        if agrees and same_state:
            return Forward(name, factors, [])
        what = "its final state (hT, cT)" if agrees else "its loss at T=1"
        note = f"its loss fits '{name}' at {b.cases[last].name}, but {what} differs from the reference's"
    else:
        note = (
            f"its loss is {ratios[last]:.6g}x the reference's summed loss on identical weights, which no known "
            "convention explains"
        )
    return Forward(
        f"none fits (ratio {ratios[last]:.6g} to the summed loss)",
        ratios,
        [note + ": the forward (or the layout) differs"],
    )


def check_own_gradients(b: Bench, rng, anchor: str) -> tuple[dict, float]:
    """(tensor -> elementwise error of its gradient vs central differences of its own loss, gradient scale c)."""
    case, run = b.cases[-1], b.runs[-1]
    checked = own_gradcheck(b.model, b.params, case, run[1], rng)
    floor = resolution_floor(run[0])
    return {k: rel_error(a, n, floor) for k, (a, n) in checked.items()}, loss_scale(checked, anchor, floor)


def expected(b: Bench, k: int, factor: float, backward=lstm_backward) -> dict:
    """The reference's gradients for case k in the model's loss convention (fused names, plus h0, c0)."""
    ref = b.refs[k] if backward is lstm_backward else reference(b.fused, b.cases[k], b.loss, backward)
    return {name: v * factor for name, v in ref.grads.items()}


def reference_errors(b: Bench, factors: list) -> tuple[list, list]:
    """Normwise errors against the reference: per case on the fused tensors, and per user tensor over the cases."""
    fused_errors, wants = [], []
    for k in range(len(b.cases)):
        want = expected(b, k, factors[k])
        uf = b.user_fused(k)
        fused_errors.append({n: normwise(uf[n], want[n]) for n in b.compared})
        wants.append({**from_fused(want, b.layout, *b.dims), **{s: want[s] for s in STATE}})
    per_tensor = [
        (name, [normwise(r[1][name], w[name]) for r, w in zip(b.runs, wants, strict=True)])
        for name in (*b.params, *b.returned)
    ]
    return fused_errors, per_tensor


def gate_errors(b: Bench, k: int, factor: float) -> dict:
    """gate -> the worst normwise error over that gate's columns of the fused weight gradients, for case k."""
    H = b.dims[1]
    uf, want = b.user_fused(k), expected(b, k, factor)
    names = [n for n in WEIGHTS if n in b.compared]
    return {
        g: max(normwise(uf[n][..., j * H : (j + 1) * H], want[n][..., j * H : (j + 1) * H]) for n in names)
        for j, g in enumerate(GATES)
    }


def localise(b: Bench, fused_errors: list, factors: list) -> tuple[list, list]:
    """The findings (local_derivatives, bptt_carry, output_layer) and a note for each."""
    weights = [n for n in WEIGHTS if n in b.compared]
    wrong = [{n for n, e in errs.items() if e > REFERENCE_TOL} for errs in fused_errors]
    at_t1, at_long = wrong[1], wrong[2]
    findings, notes = [], []
    if at_t1 & set(weights):
        findings.append("local_derivatives")
        notes.append(
            f"the weight gradients are wrong already at {b.cases[1].name} (gates: "
            f"{_wrong_gates(gate_errors(b, 1, factors[1]))}): a local derivative is wrong"
        )
    else:
        carries = [s for s in b.returned if s in at_t1 | at_long]
        if at_long & set(weights):
            notes.append(
                f"the weight gradients are right at {b.cases[1].name} but wrong at {b.cases[2].name} "
                f"(gates: {_wrong_gates(gate_errors(b, 2, factors[2]))})"
            )
        if carries:
            notes.append(
                f"the returned {' and '.join('dL/d' + s for s in carries)} (what the first step carries "
                f"back) differ{'s' if len(carries) == 1 else ''} from the reference's"
            )
        if at_long & set(weights) or carries:
            findings.append("bptt_carry")
            notes[-1] += ": the BPTT carry is wrong"
    if any(w & set(OUTPUT) for w in wrong):
        findings.append("output_layer")
        notes.append("the output layer's gradients are wrong")
    return findings, notes


def signature(b: Bench, factors: list) -> list[str]:
    """The smallest set of lstm_exp faults whose combined backward gives the model's gradients (to 1e-10)."""

    def reproduces(names) -> bool:
        backward = combined(names)
        for k in (1, 2):  # the non-zero-state cases
            want, uf = expected(b, k, factors[k], backward), b.user_fused(k)
            if any(normwise(uf[n], want[n]) > SIGNATURE_TOL for n in b.compared):
                return False
        return True

    subsets = (c for size in range(1, len(FAULTS) + 1) for c in itertools.combinations(sorted(FAULTS), size))
    return list(next((names for names in subsets if reproduces(names)), ()))


@dataclass
class Diagnosis:
    verdict: str
    findings: list
    matched_faults: list
    loss_convention: str
    tensors: list
    sentence: str
    table: str

    def as_json(self) -> dict:
        keys = ("verdict", "findings", "matched_faults", "loss_convention", "tensors")
        return {k: getattr(self, k) for k in keys}


def diagnose(model, params: dict, layout: Layout, dims: tuple, loss: str, token_ids: bool, seed: int = 0) -> Diagnosis:
    """Compare ``model`` (anything with ``call(params, x, y, h0, c0)`` and a ``label``) with the core.

    Inputs:
    - params: the model's own parameters (its names and shapes), the weights every check uses
    - layout: how they map onto the core's; dims: (D, H, K); loss: mse | xent; token_ids: integer inputs
    """
    rng = np.random.default_rng(seed)
    cases = make_cases(loss, token_ids, dims[0], dims[2], rng)
    fused = to_fused(params, layout, *dims)
    runs = [model.call(params, c.x, c.y, c.h0, c.c0) for c in cases]
    b = Bench(model, params, layout, dims, loss, cases, fused, runs)
    forward = check_forward(b)  # 1.
    own_errors, scale = check_own_gradients(b, rng, layout.output["W"])  # 2.
    findings, notes = (["forward"], list(forward.notes)) if forward.notes else ([], [])
    factors = [f * scale for f in forward.factors]  # compare with the reference in the model's own scale
    if scale != 1.0:
        findings.append("loss_scale")
        meant = None if forward.notes else convention_named(loss, cases[-1].T, dims[2], factors[-1])
        notes.append(
            f"its gradients are {scale:.6g}x the gradient of the loss it returns ({forward.convention})"
            + (f": they are the gradients of the {meant}" if meant else "")
        )
        if meant:  # the convention its gradients follow holds at every T (a factor like T does not)
            factors = [dict(conventions(loss, c.T, dims[2]))[meant] for c in cases]
    fused_errors, per_tensor = reference_errors(b, factors)  # 3.
    matched = []
    if not forward.notes:
        found, more = localise(b, fused_errors, factors)
        findings, notes = findings + found, notes + more
        if {"local_derivatives", "bptt_carry"} & set(found):
            matched = signature(b, factors)  # 4.
    findings = [f for f in FINDINGS if f in findings]
    tensors = [
        {
            "name": name,
            "gradcheck_rel_error": _json(own_errors.get(name, 0.0)),
            "reference_rel_error": _json(max(errs)),
            "passed": bool(own_errors.get(name, 0.0) < TOLERANCE and max(errs) <= REFERENCE_TOL),
        }
        for name, errs in per_tensor
    ]
    verdict = "forward_differs" if forward.notes else "backward_differs" if findings else "correct"
    if verdict == "correct" and not all(t["passed"] for t in tensors):  # a check failed without a named cause
        verdict = "backward_differs"
    gates = (gate_errors(b, 1, factors[1]), gate_errors(b, 2, factors[2]))
    return Diagnosis(
        verdict,
        findings,
        matched,
        forward.convention,
        tensors,
        _sentence(model.label, verdict, notes, matched, forward.convention, per_tensor),
        _table(model.label, layout, dims, per_tensor, own_errors, cases, gates),
    )


def _json(value: float):
    return float(value) if np.isfinite(value) else None


def _wrong_gates(errors: dict) -> str:
    bad = [g for g, e in errors.items() if e > REFERENCE_TOL]
    return ", ".join(bad) if bad else "none"


def _sentence(label, verdict, notes, matched, convention, per_tensor) -> str:
    """One sentence: the verdict, what was found, which fault it is."""
    if verdict == "correct":
        worst = max(max(e) for _, e in per_tensor)
        return (
            f"{label}: correct. Its loss is the reference's ({convention}) and every gradient matches the "
            f"reference (max normwise error {worst:.1e}) and its own central differences."
        )
    parts = list(notes)
    bad = [n for n, e in per_tensor if max(e) > REFERENCE_TOL]
    if bad:
        parts.append(f"tensors off the reference: {', '.join(bad)}")
    if matched:
        seeds = sorted({SEEDS[m] for m in matched})
        parts.append(
            f"its gradients are exactly lstm_exp's fault{'s' if len(matched) > 1 else ''} "
            f"{' + '.join(matched)} (seed {', '.join(seeds)})"
        )
    return f"{label}: {verdict.replace('_', ' ')}. " + "; ".join(parts) + "."


def _table(label, layout, dims, per_tensor, own_errors, cases, gates) -> str:
    """Per tensor: its own check's error and the reference errors in each case; then per gate."""
    D, H, K = dims
    lines = [
        f"{label} with layout={layout.name} (D={D}, H={H}, K={K}, float64). own: central differences of its "
        "own loss (elementwise); ref: against the core on identical weights (normwise)"
    ]
    short = [c.name.replace(", zero state", " zero").replace(", non-zero state", " state") for c in cases]
    lines.append(f"  {'tensor':<10}{'own':>11}" + "".join(f"{'ref ' + s:>15}" for s in short) + "  result")
    for name, errs in per_tensor:
        own = own_errors.get(name, 0.0)
        ok = own < TOLERANCE and max(errs) <= REFERENCE_TOL
        errors = "".join(f"{e:>15.2e}" for e in errs)
        lines.append(f"  {name:<10}{own:>11.2e}{errors}  {'ok' if ok else 'WRONG'}")
    lines.append(
        "  per gate of the fused Wx, Wh, b ("
        + " / ".join(short[1:])
        + "): "
        + ", ".join(f"{g} {gates[0][g]:.0e} / {gates[1][g]:.0e}" for g in GATES)
    )
    return "\n".join(lines)

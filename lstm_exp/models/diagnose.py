"""``mode=diagnose``: is the model's code right, and if not, which term is wrong, in the user's own names?

The model under test (a user's ``model.impl`` through its layout, or the core itself, with or without
``model.fault``) runs on small random problems (``lstm_exp.models.probe``) with *identical* weights beside the core:

1. **forward**: its loss against the reference's summed loss on the same weights and the same h0, c0. The loss
   convention (sum over time, mean over time, 1/2 of the sum, ...) is found by an exact ratio. If none fits, or the
   final state differs, the forward differs; the layouts its code might follow instead are tried
   (``lstm_exp.models.alternatives``).
2. **its own gradient check**: fourth-order central differences of *its own* loss, every perturbed pass from the
   same h0, c0. Gradients that are a constant multiple c != 1 of that loss's: ``loss_scale``.
3. **the loss gradient**: the gradient of the outputs the model used, read back from its output layer's gradients,
   against the reference's. If it differs (``loss_gradient``), the rest is judged from the model's own output
   gradient, so what is only downstream of it is not blamed on the LSTM.
4. **the signature match** (``lstm_exp.models.signature``): the catalogued mistakes, alone and up to three together,
   and gradients overwritten instead of summed over time, that give the model's gradients exactly.
5. **where**, independently of 4: weight gradients wrong at T = 1 from a non-zero state -> ``local_derivatives``;
   right there but wrong on the longer problem, or a returned dL/dh0 (the hidden carry) or dL/dc0 (the cell
   carry) wrong -> ``bptt_carry``; the output layer -> ``output_layer``; and which gates are wrong, read as the
   term upstream of them (i, f, g wrong with o right is a wrong dc).

Each finding stands on its own, so one never hides another.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from lstm_exp.core.faults import FAULTS, Pieces, pieces_of
from lstm_exp.core.gradcheck import TOLERANCE, numerical_gradient, rel_error, resolution_floor
from lstm_exp.models.alternatives import matching_layout
from lstm_exp.models.diagnosis import Diagnosis, Row
from lstm_exp.models.layout import GATES, Layout, to_fused
from lstm_exp.models.probe import HIDDEN, STATE, VOCAB, Probe, make_cases, recover_dout
from lstm_exp.models.signature import best, explain, normwise

__all__ = ["HIDDEN", "VOCAB", "diagnose", "make_cases", "own_gradcheck"]

LOSS_RTOL = 1e-8  # loss conventions are exact ratios, up to round-off
REFERENCE_TOL = 1e-7  # normwise relative error for "matches the reference"
MAX_ENTRIES = 120  # numerically checked entries per tensor (a seeded sample above this)
FINDINGS = (
    "forward",
    "loss_scale",
    "loss_gradient",
    "not_summed_over_time",
    "output_layer",
    "local_derivatives",
    "bptt_carry",
)
REFERENCE_PIECES = Pieces()


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


def own_gradcheck(model, params: dict, case, grads: dict, rng) -> dict:
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


def gradient_scale(checked: dict, anchors: list, floor: float) -> float:
    """c if an anchor's gradient is exactly c x its numerical gradient for one c != 1 (else 1).

    The anchors are the output layer's tensors, its bias first: their gradients are right whenever the loss's is
    (up to the scale looked for), whatever is wrong in the LSTM below them."""
    for name in anchors:
        a, n = checked.get(name, (None, None))
        if a is None or not np.any(n):
            continue
        c = float(a @ n / (n @ n))
        if rel_error(a, c * n, floor) < TOLERANCE:
            return c if abs(c - 1) > 1e-6 else 1.0
    return 1.0


@dataclass
class Bench:
    """Everything the checks share: the model's results and the core's probes on the same cases and weights."""

    model: object
    params: dict
    layout: Layout
    dims: tuple  # (D, H, K)
    loss: str
    cases: list
    fused: dict  # the weights in the core's layout, taken before the model runs (buggy code may write into them)
    runs: list  # the model's (loss, grads, state) per case

    @cached_property
    def probes(self) -> list[Probe]:
        return [Probe(c, self.fused, self.loss, self.layout, self.dims) for c in self.cases]

    @cached_property
    def returned(self) -> list[str]:
        """The state gradients the model returns (dL/dh0, dL/dc0), if any."""
        return [k for k in STATE if k in self.runs[-1][1]]

    @cached_property
    def compared(self) -> list[str]:
        """The model's tensors whose gradients are compared: its parameters and the state gradients it returns."""
        return [*self.params, *self.returned]

    @cached_property
    def output_tensors(self) -> set[str]:
        return {n for n in (self.layout.output["W"], self.layout.output.get("b")) if n in self.params}

    def got_fused(self, k: int) -> dict:
        """The model's gradients of case k in the core's names."""
        return to_fused(self.runs[k][1], self.layout, *self.dims, grads=True)


@dataclass
class Forward:
    convention: str  # its name, or "none fits (...)"
    factors: list  # per case: the factor of the convention on the reference's summed loss
    note: str | None  # why the forward differs, if it does


def check_forward(b: Bench) -> Forward:
    """The loss convention that makes the model's loss the reference's in every case, and the same final state."""
    K, last = b.dims[2], len(b.cases) - 1
    ratios = [r[0] / p.loss if p.loss else np.inf for r, p in zip(b.runs, b.probes, strict=True)]
    name = convention_named(b.loss, b.cases[last].T, K, ratios[last])
    if name is not None:
        factors = [dict(conventions(b.loss, c.T, K))[name] for c in b.cases]
        agrees = all(abs(r - f) <= LOSS_RTOL * f for r, f in zip(ratios, factors, strict=True))
        same_state = all(
            normwise(np.concatenate(r[2]), np.concatenate(p.state)) < LOSS_RTOL
            for r, p in zip(b.runs, b.probes, strict=True)
        )
        if agrees and same_state:
            return Forward(name, factors, None)
        what = "its final state (hT, cT)" if agrees else "its loss at T=1"
        note = f"its loss fits '{name}' at {b.cases[last].name}, but {what} differs from the reference's"
    else:
        note = (
            f"its loss is {ratios[last]:.6g}x the reference's summed loss on identical weights, which no known "
            "convention explains"
        )
    fix = matching_layout(b.params, b.layout, b.dims, lambda fused: _forward_matches(b, fused))
    note += f": your forward matches the core with {fix}" if fix else ": the forward (or the layout) differs"
    return Forward(f"none fits (ratio {ratios[last]:.6g} to the summed loss)", ratios, note)


def _forward_matches(b: Bench, fused: dict) -> bool:
    """Whether the core on ``fused`` gives the model's final state and its loss in a known convention, every case."""
    for case, run in zip(b.cases, b.runs, strict=True):
        probe = Probe(case, fused, b.loss, b.layout, b.dims)
        if normwise(np.concatenate(run[2]), np.concatenate(probe.state)) >= LOSS_RTOL or not probe.loss:
            return False
        if convention_named(b.loss, case.T, b.dims[2], run[0] / probe.loss) is None:
            return False
    return True


def check_own_gradients(b: Bench, rng) -> tuple[dict, float]:
    """(tensor -> elementwise error of its gradient vs c x central differences of its own loss, the scale c)."""
    case, run = b.cases[-1], b.runs[-1]
    checked = own_gradcheck(b.model, b.params, case, run[1], rng)
    floor = resolution_floor(run[0])
    scale = gradient_scale(checked, [b.layout.output.get("b"), b.layout.output["W"]], floor)
    return {k: rel_error(a, scale * n, floor) for k, (a, n) in checked.items()}, scale


def model_douts(b: Bench, ref_douts: list) -> list | None:
    """The output gradient the model used in each case, read back from its output layer (None for a case where it
    cannot be: an output layer whose own backward is wrong), if it differs from the reference's where it can be read
    (its loss gradient is wrong); else None."""
    out_W, out_b = b.layout.output["W"], b.layout.output.get("b")
    if out_W not in b.params:
        return None
    douts = []
    for k, probe in enumerate(b.probes):
        fused = b.got_fused(k)
        douts.append(recover_dout(fused["Wy"], probe.hidden, fused["by"] if out_b in b.params else None))
    differs = any(d is not None and normwise(d, r) > REFERENCE_TOL for d, r in zip(douts, ref_douts, strict=True))
    return douts if differs else None


def errors_against(b: Bench, pieces: Pieces, douts: list) -> list[dict]:
    """Per case: tensor -> normwise error of the model's gradient against ``pieces``' from ``douts`` (NaN, never
    judged wrong, for a case whose output gradient is unknown)."""
    out = []
    for k, probe in enumerate(b.probes):
        if douts[k] is None:
            out.append(dict.fromkeys(b.compared, np.nan))
            continue
        want = probe.answer(pieces, douts[k]).total
        out.append({n: normwise(b.runs[k][1][n], want[n]) for n in b.compared})
    return out


def gate_errors(b: Bench, k: int, dout: np.ndarray) -> tuple[dict, dict]:
    """(gate -> worst normwise error over that gate's columns of the fused Wx, Wh, b; tensor -> its error), case k."""
    H = b.dims[1]
    got, want = b.got_fused(k), b.probes[k].answer(REFERENCE_PIECES, dout).fused
    names = [n for n in ("Wx", "Wh", "b") if np.any(want[n]) or np.any(got[n])]
    gates = {
        g: max(normwise(got[n][..., j * H : (j + 1) * H], want[n][..., j * H : (j + 1) * H]) for n in names)
        for j, g in enumerate(GATES)
    }
    return gates, {n: normwise(got[n], want[n]) for n in names}


def read_gates(gates: dict, tensors: dict) -> str | None:
    """The term upstream of the wrong gates (or weights), if the pattern names one."""
    wrong = {g for g, e in gates.items() if e > REFERENCE_TOL}
    bad = {n for n, e in tensors.items() if e > REFERENCE_TOL}
    if not wrong:
        return None
    if bad == {"Wh"}:
        return "only the recurrent weights' gradient is wrong: the hidden state it is built from (h_{t-1})"
    patterns = {
        frozenset("ifg"): "gates i, f, g wrong and o right: the cell-state gradient dc is wrong, upstream of the "
        "gates that read it (o reads dh, not dc)",
        frozenset("f"): "only the forget gate: its local derivative (f' or the c_{t-1} it multiplies)",
        frozenset("g"): "only the candidate gate: its tanh' or what its weight gradients are built from",
        frozenset("i"): "only the input gate: its sigmoid' or the g it multiplies",
        frozenset("o"): "only the output gate: its sigmoid' or the tanh(c_t) it multiplies",
        frozenset("ifgo"): "all four gates: what reaches h_t (dh), or every gate's local derivative",
    }
    return patterns.get(frozenset(wrong), f"gates {', '.join(g for g in GATES if g in wrong)} wrong")


def mistake_note(b: Bench, name: str, douts: list) -> str:
    """One line naming a matched mistake, the user's tensors it corrupts, and the wrong line beside the right one."""
    m = FAULTS[name]
    hit: dict = {}
    for k in range(1, len(b.probes)):  # where it strikes first: T = 1 for a local mistake, the long case for a carry
        if douts[k] is None:
            continue
        probe = b.probes[k]
        right, wrong = probe.answer(REFERENCE_PIECES, douts[k]), probe.answer(pieces_of([name]), douts[k])
        want, got = probe.blocks(right.total), probe.blocks(wrong.total)
        for param, _, gate in (key for key in want if normwise(got[key], want[key]) > REFERENCE_TOL):
            hit.setdefault(param, set()).add(gate)
        if not hit:
            hit = {s: {None} for s in b.returned if normwise(wrong.total[s], right.total[s]) > REFERENCE_TOL}
        if hit:
            break
    says = m.says.format(tensors=", ".join(_blocks_named(hit, b.probes[-1])) or "no tensor on these problems")
    return f"`{name}` ({m.source}): {says}; wrong: `{m.wrong}`, right: `{m.right}`"


def _blocks_named(hit: dict, probe: Probe) -> list[str]:
    """'Wx (f block)' for a fused tensor of which only some gates are hit, 'Wf' for a tensor hit whole."""
    gates_of: dict = {}
    for param, _, gate in probe.blocks(probe.user(probe.fused)):
        gates_of.setdefault(param, set()).add(gate)
    out = []
    for param, gates in hit.items():
        partial = None not in gates and gates != gates_of.get(param, gates)
        which = "".join(g for g in GATES if g in gates)
        out.append(f"{param} ({which} block{'s' * (len(which) > 1)})" if partial else _named([param])[0])
    return out


def overwritten(one_step: dict) -> list[str]:
    """'weight_ih (its f block, step 0)' or 'Wxf (step 0)' for each tensor with blocks that hold one step alone."""
    out = []
    for name, parts in one_step.items():
        steps = sorted({t for _, _, t in parts})
        gates = sorted({g for _, g, _ in parts if g}, key=GATES.index)
        which = f"its {', '.join(gates)} block{'s' * (len(gates) > 1)}, " if gates and len(parts) < 4 else ""
        out.append(f"{name} ({which}step {', '.join(map(str, steps))})")
    return out


def _named(names) -> list[str]:
    return [f"dL/d{n}" if n in STATE else n for n in names]


def localise(b: Bench, errors: list, one_step: dict) -> tuple[list, list]:
    """Findings and notes from where the model's gradients are wrong (independent of the catalogue)."""
    findings, notes = [], []
    lstm = [n for n in b.params if n not in b.output_tensors and n not in one_step]
    at_t1 = {n for n in lstm if errors[1][n] > REFERENCE_TOL}
    at_long = {n for n in lstm if errors[2][n] > REFERENCE_TOL}
    carries = [s for s in b.returned if any(e[s] > REFERENCE_TOL for e in errors[1:])]
    if at_t1:
        findings.append("local_derivatives")
        notes.append(f"{', '.join(sorted(at_t1))} wrong already at {b.cases[1].name}: a local derivative is wrong")
    elif at_long:
        notes.append(f"{', '.join(sorted(at_long))} right at {b.cases[1].name} but wrong at {b.cases[2].name}")
    if carries:
        named = {"c0": "dL/dc0 (the cell carry out of the first step)", "h0": "dL/dh0 (the hidden carry)"}
        notes.append(f"the returned {' and '.join(named[s] for s in carries)} differ{'s' * (len(carries) == 1)}")
    if carries or (at_long and not at_t1):
        findings.append("bptt_carry")
    if any(errors[k][n] > REFERENCE_TOL for k in (1, 2) for n in b.output_tensors - set(one_step)):
        findings.append("output_layer")
        notes.append("the output layer's gradients are wrong")
    return findings, notes


def diagnose(model, params: dict, layout: Layout, dims: tuple, loss: str, token_ids: bool, seed: int = 0) -> Diagnosis:
    """Compare ``model`` (anything with ``call(params, x, y, h0, c0)`` and a ``label``) with the core.

    Inputs:
    - params: the model's own parameters (its names and shapes), the weights every check uses
    - layout: how they map onto the core's; dims: (D, H, K); loss: mse | xent; token_ids: integer inputs
    """
    rng = np.random.default_rng(seed)
    cases = make_cases(loss, token_ids, dims[0], dims[2], rng)
    fused = to_fused(params, layout, *dims)  # before the model runs
    runs = [model.call(params, c.x, c.y, c.h0, c.c0) for c in cases]
    b = Bench(model, params, layout, dims, loss, cases, fused, runs)
    forward = check_forward(b)  # 1.
    own_errors, scale = check_own_gradients(b, rng)  # 2.
    if forward.note:
        return _diagnosis(
            b, "forward_differs", ["forward"], [], forward.convention, own_errors, None, None, [forward.note]
        )
    findings, notes, factors = read_scale(b, forward, scale)
    ref_douts = [p.dout * f for p, f in zip(b.probes, factors, strict=True)]
    found, douts, use_own = explained(b, ref_douts)  # 3. and 4.
    if use_own:
        findings.append("loss_gradient")
        notes[:0] = loss_gradient_notes(cases, douts)
    one_step = found.one_step if found is not None else {}
    if one_step:
        findings.append("not_summed_over_time")
        notes.append(FAULTS["not_summed_over_time"].says.format(tensors=", ".join(overwritten(one_step))))
    truth = errors_against(b, REFERENCE_PIECES, ref_douts)
    errors = errors_against(b, REFERENCE_PIECES, douts) if use_own else truth  # 5.
    found_where, where_notes = localise(b, errors, one_step)
    matched = found.names if found is not None else []
    # a full explanation says where every wrong gradient comes from (a carry wrong only because the gates' are is
    # not a second bug); without one, where the gradients are wrong is what can be said
    findings += [FAULTS[m].finding for m in matched] if found is not None else found_where
    notes += [mistake_note(b, m, douts) for m in matched if m != "not_summed_over_time"]
    if found is None:
        notes += where_notes
    if "local_derivatives" in findings or "bptt_carry" in findings:
        notes += gate_pattern(b, douts, 1 if "local_derivatives" in found_where else 2)
    findings = [f for f in FINDINGS if f in findings]
    verdict = "backward_differs" if findings else "correct"
    own_view = errors if use_own else None
    return _diagnosis(b, verdict, findings, matched, forward.convention, own_errors, truth, own_view, notes, one_step)


def read_scale(b: Bench, forward, scale: float) -> tuple[list, list, list]:
    """What the ratio of the model's gradients to its own loss's says: (findings, notes, and the factor per case
    that puts the reference's gradients in the model's own scale)."""
    findings, notes = [], []
    factors = [f * scale for f in forward.factors]
    if scale < 0:  # the gradient of the opposite loss: a sign error in the loss gradient, not a convention
        findings.append("loss_gradient")
        notes.append(
            f"its gradients are {scale:.6g}x the gradient of the loss it returns: the loss gradient's sign is "
            "flipped (look for `target - pred` where `pred - target` is meant; fix this first)"
        )
    elif scale != 1.0:
        findings.append("loss_scale")
        meant = convention_named(b.loss, b.cases[-1].T, b.dims[2], factors[-1])
        notes.append(
            f"its gradients are {scale:.6g}x the gradient of the loss it returns ({forward.convention})"
            + (f": they are the gradients of the {meant}" if meant else "")
        )
        if meant:  # the convention its gradients follow holds at every T (a factor like T does not)
            factors = [dict(conventions(b.loss, c.T, b.dims[2]))[meant] for c in b.cases]
    return findings, notes, factors


def explained(b: Bench, ref_douts: list):
    """The best explanation of the model's gradients by catalogued mistakes — judged from the reference's output
    gradients and, where they can be read back, from the model's own — as (found or None, the output gradients
    that judge the rest, whether they are the model's own)."""
    own_douts = model_douts(b, ref_douts)
    got = [r[1] for r in b.runs]
    explanations = explain(b.probes[1:], ref_douts[1:], got[1:], b.returned, False)
    if own_douts is not None and all(d is not None for d in own_douts):
        explanations += explain(b.probes[1:], own_douts[1:], got[1:], b.returned, True)
    found = best(explanations)
    use_own = found.own_dout if found is not None else own_douts is not None
    return found, (own_douts if use_own else ref_douts), use_own


def loss_gradient_notes(cases, douts) -> list[str]:
    """What to say when the model's output gradient is not its loss's."""
    notes = [
        "the gradient of the loss with respect to the outputs is wrong (fix this first): the output layer's "
        "gradients are not those of the loss it returns; what is downstream of it is judged from its own"
    ]
    unknown = [c.name for c, d in zip(cases, douts, strict=True) if d is None]
    if unknown:
        notes.append(
            f"at {', '.join(unknown)} its output gradient cannot be read back (the output layer's weight "
            "gradient is not a sum over the steps either), so what lies below it is not judged there"
        )
    return notes


def gate_pattern(b: Bench, douts: list, k: int) -> list[str]:
    """Which gate blocks are wrong at case ``k``, read as a sentence (none when no pattern is clear)."""
    pattern = read_gates(*gate_errors(b, k, douts[k]))
    return [f"at {b.cases[k].name}: {pattern}"] if pattern else []


def _diagnosis(b, verdict, findings, matched, convention, own_errors, truth, own_view, notes, one_step=None):
    """The Diagnosis: a row per tensor against the reference (``truth``), each marked with what explains it
    (``own_view``: the errors judged from the model's own output gradient, when its loss gradient is wrong)."""
    rows = []
    for name in b.compared:
        ref = [e[name] for e in truth] if truth else [np.nan] * len(b.cases)
        own = own_errors.get(name, 0.0)
        if truth and max(ref) <= REFERENCE_TOL and own < TOLERANCE:
            result = "ok"
        elif one_step and name in one_step:
            result = "overwritten: " + overwritten({name: one_step[name]})[0].partition(" ")[2]
        elif own_view and max(e[name] for e in own_view[1:]) <= REFERENCE_TOL:
            result = "downstream of the loss gradient"
        else:
            result = "WRONG"
        rows.append(Row(name, own, ref, result))
    D, H, K = b.dims
    header = (
        f"{b.model.label} with layout={b.layout.name} (D={D}, H={H}, K={K}, float64). own: central differences of "
        "its own loss (elementwise); ref: against the core on identical weights (normwise)"
    )
    short = [c.name.replace(", zero state", " zero").replace(", non-zero state", " state") for c in b.cases]
    return Diagnosis(b.model.label, verdict, findings, matched, convention, rows, notes, header, short)

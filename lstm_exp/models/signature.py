"""The signature match: which catalogued mistakes, written together, give exactly the model's gradients?

Every combination of up to ``MAX_MISTAKES`` mistakes of ``lstm_exp.core.faults`` that can be written together is
run on the non-zero-state problems, from the reference's output gradient and — when the model's own output
gradient differs and can be read back (``loss_gradient``) — from the model's. The model's gradients are compared
block by block (one gate's part of a parameter, the output layer, dL/dh0, dL/dc0): a block is explained when it
equals the combination's gradient summed over time, or one step's contribution alone (``not_summed_over_time``:
a gradient overwritten at every step, be it a whole tensor or one gate's block of a fused one). The simplest full
explanation wins: fewest mistakes plus overwritten tensors plus a wrong loss gradient, named mistakes before
overwritten tensors. A correct model is explained by the empty combination.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from lstm_exp.core.faults import PIECEWISE, compatible, pieces_of

MAX_MISTAKES = 3
SIGNATURE_TOL = 1e-10  # "reproduces the gradients exactly" (normwise, round-off only)


def normwise(a, ref) -> float:
    """max |a - ref| / max |ref| (0 when both are zero, inf when only ref is): robust to summation order."""
    a, ref = np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if ref.size == 0:
        return 0.0
    scale, diff = float(np.max(np.abs(ref))), float(np.max(np.abs(a - ref)))
    if scale == 0.0:
        return 0.0 if diff == 0.0 else np.inf
    return diff / scale


@dataclass(frozen=True)
class Explanation:
    mistakes: tuple  # catalogued mistakes, in catalogue order
    one_step: dict = field(default_factory=dict)  # tensor -> [(piece, gate, step)]: blocks holding one step alone
    own_dout: bool = False  # the model's own (wrong) output gradient drives it: loss_gradient

    @property
    def cost(self) -> tuple:
        size = len(self.mistakes) + len(self.one_step) + self.own_dout
        return size, len(self.one_step), self.own_dout

    @property
    def names(self) -> list[str]:
        """The catalogue's names for everything it explains (``not_summed_over_time`` once, for any tensors)."""
        return [*self.mistakes, *(["not_summed_over_time"] if self.one_step else [])]


def combinations() -> list[tuple]:
    """Every set of up to MAX_MISTAKES catalogued mistakes that can be written together, smallest first."""
    return [c for size in range(MAX_MISTAKES + 1) for c in itertools.combinations(PIECEWISE, size) if compatible(c)]


def explain(probes: list, douts: list, got: list, returned: list, own_dout: bool) -> list[Explanation]:
    """Every combination that reproduces the model's gradients ``got`` (per probe, user names; ``returned``: the
    state gradients it gives) on the probes driven by ``douts`` (per probe)."""
    mine = [{**p.blocks(g), **{(s, s, None): g[s] for s in returned}} for p, g in zip(probes, got, strict=True)]
    found = []
    for names in combinations():
        pieces = pieces_of(names)
        one_step: dict = {}
        for probe, dout, have in zip(probes, douts, mine, strict=True):
            answer = probe.answer(pieces, dout)
            want = {**probe.blocks(answer.total), **{(s, s, None): answer.total[s] for s in returned}}
            off = [key for key, block in have.items() if normwise(block, want[key]) > SIGNATURE_TOL]
            if off and probe.case.T > 1 and not any(key[0] in returned for key in off):
                steps = [probe.blocks(step) for step in probe.answer(pieces, dout, steps=True).steps]
                for key in list(off):
                    t = next((t for t, s in enumerate(steps) if normwise(have[key], s[key]) <= SIGNATURE_TOL), None)
                    if t is not None:
                        one_step.setdefault(key[0], []).append((key[1], key[2], t))
                        off.remove(key)
            if off:
                break
        else:
            found.append(Explanation(names, one_step, own_dout))
    return found


def best(explanations: list[Explanation]) -> Explanation | None:
    """The simplest explanation (see the module docstring), or None."""
    return min(explanations, key=lambda e: e.cost, default=None)

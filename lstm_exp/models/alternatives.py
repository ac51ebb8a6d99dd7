"""When a model's forward differs from the core's: the layout its code actually follows, if one fits.

The usual cause is not the maths but the map: gates stacked in another order, the concatenation the other way
round, a matrix used transposed, or one gate's parameters read as another's. Every such variant of the user's
layout that fits the parameters' shapes is tried on the same weights; the first whose forward matches the model's
(loss, in some known convention, and final state) is named beside what the layout says.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from lstm_exp.models.layout import GATES, Layout, LayoutError, check_fits, to_fused

ORIENTATIONS = {"right": "left", "left": "right"}


def _gate_orders(layout: Layout) -> Iterator[tuple[str, Layout]]:
    """Other orders of the gate blocks inside shared parameters."""
    shared = len({g.get(f) for g in layout.gates.values() for f in ("W", "Wx")}) < len(GATES)
    if not shared:
        return
    for order in itertools.permutations(GATES):
        order = "".join(order)
        if order != layout.gate_order:
            yield f"gate_order {order}; your layout says {layout.gate_order}", replace(layout, gate_order=order)


def _gate_assignments(layout: Layout) -> Iterator[tuple[str, Layout]]:
    """Each gate's own parameters read as another gate's (per-gate layouts)."""
    names = [layout.gates[g].get("W") or layout.gates[g].get("Wx") for g in GATES]
    if len(set(names)) < len(GATES):
        return
    for perm in itertools.permutations(GATES):
        if perm == tuple(GATES):
            continue
        gates = {g: layout.gates[p] for g, p in zip(GATES, perm, strict=True)}
        moved = ", ".join(f"{g}: {names[GATES.index(p)]}" for g, p in zip(GATES, perm, strict=True) if g != p)
        said = ", ".join(f"{g}: {names[GATES.index(g)]}" for g, p in zip(GATES, perm, strict=True) if g != p)
        yield f"the gates {moved}; your layout says {said}", replace(layout, gates=gates)


def _concats(layout: Layout) -> Iterator[tuple[str, Layout]]:
    if layout.concat == "separate":
        return
    for order in itertools.permutations(layout.concat):
        order = "".join(order)
        if order != layout.concat:
            yield f"concat {order}; your layout says {layout.concat}", replace(layout, concat=order)


def _orientations(layout: Layout) -> Iterator[tuple[str, Layout]]:
    flipped = ORIENTATIONS[layout.orientation]
    yield f"orientation {flipped}; your layout says {layout.orientation}", replace(layout, orientation=flipped)


VARIANTS: tuple[Callable, ...] = (_gate_orders, _gate_assignments, _concats, _orientations)


def candidates(layout: Layout) -> Iterator[tuple[str, Layout]]:
    """Every single change of the layout, then every pair of changes of different kinds."""
    singles = [list(v(layout)) for v in VARIANTS]
    yield from itertools.chain.from_iterable(singles)
    for (_, first), (j, second) in itertools.combinations(enumerate(singles), 2):
        for (what_a, a), (what_b, _) in itertools.product(first, second):
            yield f"{what_a}, and {what_b}", next(v for w, v in VARIANTS[j](a) if w == what_b)


def matching_layout(params: dict, layout: Layout, dims: tuple, matches: Callable[[dict], bool]) -> str | None:
    """What to change in ``layout`` for the core on ``params`` to give the model's forward (``matches(fused)``)."""
    for what, alternative in candidates(layout):
        try:
            check_fits(params, alternative, *dims)
        except LayoutError:
            continue
        with np.errstate(all="ignore"):
            if matches(to_fused(params, alternative, *dims)):
                return what
    return None

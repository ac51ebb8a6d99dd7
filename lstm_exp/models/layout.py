"""Layouts: how a user's own LSTM parameters map onto the core's fused ``Wx, Wh, b, Wy, by``.

A hand-written LSTM names and shapes its weights its own way: four gate matrices over the concatenation
``[x, h]`` used as ``W.T @ g`` (seed 000), separate input and recurrent matrices used as ``W @ x`` with
column biases (seed 001), one fused block in another gate order, and so on. A ``Layout`` says, per gate
(i, f, g, o), which parameter holds its input weights, recurrent weights and bias, plus the output layer,
and how every parameter is shaped:

- ``concat``: ``separate`` (``Wx`` and ``Wh`` per gate), or the order of the rows of one matrix over the
  concatenation: ``xh`` (``[x, h]``, x first), ``hx`` (``[h, x]``), and with a ``b`` where the matrix keeps the bias
  as the row of a constant 1 (karpathy's ``WLSTM`` over ``[1, x, h]``: ``bxh``; ``xhb``, ``bhx``, ``hxb``);
- ``orientation``: ``right`` for ``z @ W`` (W of shape (in, out)), ``left`` for ``W @ z`` (W of shape (out, in));
- ``bias``: ``flat`` (n,), ``column`` (n, 1), ``row`` (1, n) or ``none`` (the model has no biases); a gate may
  name a second bias ``b2`` added to ``b`` (PyTorch's ``bias_ih`` and ``bias_hh``): both get the same gradient,
  and the core's ``b`` is their sum;
- ``gate_order``: when several gates name the same parameter, their blocks are stacked along its output
  axis in this order (``ifgo`` for the core and PyTorch, ``ifco`` for Keras-style names).

The map is a rearrangement (slices and transposes, and a sum for two biases), so gradients map like parameters:
``to_fused(grads, ..., grads=True)`` of the user's gradients is the gradient of the fused parameters. Everything
here is NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from lstm_exp.common.errors import UserError
from lstm_exp.core.network import param_shapes

GATES = "ifgo"  # the core's gate order
GATE_ALIASES = {
    "i": "i",
    "input": "i",
    "f": "f",
    "forget": "f",
    "g": "g",
    "c": "g",
    "candidate": "g",
    "cell": "g",
    "o": "o",
    "output": "o",
}
CONCATS = ("separate", "xh", "hx", "bxh", "xhb", "bhx", "hxb", "xbh", "hbx")
ORIENTATIONS = ("right", "left")
BIAS_SHAPES = ("flat", "column", "row", "none")


class LayoutError(UserError):
    """The layout does not describe these parameters (a missing name, a wrong shape, an unmapped tensor)."""


@dataclass(frozen=True)
class Layout:
    name: str
    gates: dict  # gate (i, f, g, o) -> {"W" | "Wx", "Wh", "b", "b2": parameter name or None}
    output: dict  # {"W": name, "b": name or None}
    concat: str = "separate"
    orientation: str = "right"
    bias: str = "flat"
    gate_order: str = GATES
    output_orientation: str | None = None  # None: as the gates
    output_bias: str | None = None


class Piece(NamedTuple):
    """One rectangle copied between a user parameter and a fused one, both in canonical (in, out) form."""

    param: str  # the user's parameter
    fused: str  # Wx, Wh, b, Wy or by
    rows: slice  # rows of the user's canonical matrix
    cols: slice
    fused_rows: slice
    fused_cols: slice
    second: bool = False  # a second bias (b2): added into the fused bias, and given the same gradient


class Spec(NamedTuple):
    """How one user parameter is shaped: its canonical (in, out) shape, its kind and its native form."""

    canonical: tuple
    kind: str  # matrix or bias
    orientation: str
    bias: str


FUSED = Layout("fused", gates={g: {"Wx": "Wx", "Wh": "Wh", "b": "b"} for g in GATES}, output={"W": "Wy", "b": "by"})


def _name(value) -> str:
    """An enum member's name, or the string itself."""
    return getattr(value, "name", value)


def from_config(node) -> Layout:
    """A Layout from the ``layout`` config section (enums or strings; gate keys may be aliases)."""
    gates = {gate_of(k): {f: getattr(v, f, None) for f in ("W", "Wx", "Wh", "b", "b2")} for k, v in node.gates.items()}
    out = node.output
    return Layout(
        name=node.name,
        gates=gates,
        output={"W": out.W, "b": out.b},
        concat=_name(node.concat),
        orientation=_name(node.orientation),
        bias=_name(node.bias),
        gate_order=resolve_gate_order(node.gate_order),
        output_orientation=_name(out.orientation) if out.orientation is not None else None,
        output_bias=_name(out.bias) if out.bias is not None else None,
    )


def gate_of(key) -> str:
    """The core's gate letter for a layout's gate key (``c``, ``C``, ``candidate``, ``forget``, ...), else ``?``."""
    return GATE_ALIASES.get(str(key).lower(), "?")


def resolve_gate_order(order: str) -> str:
    """A gate order with aliases resolved (``ifco`` -> ``ifgo``); raises LayoutError unless it names each gate once."""
    resolved = "".join(gate_of(ch) for ch in order)
    if sorted(resolved) != sorted(GATES):
        raise LayoutError(f"layout gate_order={order!r}: must name each of i, f, g (or c), o exactly once")
    return resolved


def _sharing(layout: Layout, field_name: str) -> dict:
    """param name -> the gates that store their ``field_name`` block in it, in the layout's gate order."""
    shared: dict[str, list[str]] = {}
    for gate in layout.gate_order:
        name = layout.gates[gate].get(field_name)
        if name is not None:
            shared.setdefault(name, []).append(gate)
    return shared


def concat_rows(concat: str, D: int, H: int) -> dict:
    """Where x, h and the bias row ("b") sit among the rows of one matrix over the concatenation ``concat``."""
    sizes = {"x": D, "h": H, "b": 1}
    rows, start = {}, 0
    for part in concat:
        rows[part] = slice(start, start + sizes[part])
        start += sizes[part]
    return rows


def pieces(layout: Layout, D: int, H: int, K: int) -> tuple[dict, list]:
    """Every user parameter's Spec and every Piece of the map, for D inputs, H hidden units and K outputs."""
    specs: dict[str, Spec] = {}
    out: list[Piece] = []
    all_rows = slice(None)

    def fused_cols(gate: str) -> slice:
        k = GATES.index(gate)
        return slice(k * H, (k + 1) * H)

    if layout.concat == "separate":
        weight_fields = [("Wx", D, [("Wx", slice(0, D))]), ("Wh", H, [("Wh", slice(0, H))])]
    else:
        rows = concat_rows(layout.concat, D, H)
        targets = [(fused, rows[part]) for part, fused in (("x", "Wx"), ("h", "Wh"), ("b", "b")) if part in rows]
        weight_fields = [("W", sum(r.stop - r.start for r in rows.values()), targets)]
    for field_name, fan_in, targets in weight_fields:
        for name, gates in _sharing(layout, field_name).items():
            specs[name] = Spec((fan_in, len(gates) * H), "matrix", layout.orientation, layout.bias)
            for j, gate in enumerate(gates):
                cols = slice(j * H, (j + 1) * H)
                out += [Piece(name, fused, rows, cols, all_rows, fused_cols(gate)) for fused, rows in targets]
    if layout.bias != "none" and "b" not in layout.concat:
        for field_name in ("b", "b2"):
            for name, gates in _sharing(layout, field_name).items():
                specs[name] = Spec((1, len(gates) * H), "bias", layout.orientation, layout.bias)
                out += [
                    Piece(
                        name, "b", all_rows, slice(j * H, (j + 1) * H), all_rows, fused_cols(gate), field_name == "b2"
                    )
                    for j, gate in enumerate(gates)
                ]
    orientation = layout.output_orientation or layout.orientation
    bias = layout.output_bias or layout.bias
    specs[layout.output["W"]] = Spec((H, K), "matrix", orientation, bias)
    out.append(Piece(layout.output["W"], "Wy", all_rows, all_rows, all_rows, all_rows))
    if layout.output.get("b") is not None and bias != "none":
        specs[layout.output["b"]] = Spec((1, K), "bias", orientation, bias)
        out.append(Piece(layout.output["b"], "by", all_rows, all_rows, all_rows, all_rows))
    return specs, out


def has_gate_bias(layout: Layout) -> bool:
    """Whether the user's model has the gates' bias at all (in its own parameters or as a row of its matrix)."""
    return "b" in layout.concat or (layout.bias != "none" and any(g.get("b") for g in layout.gates.values()))


def native_shape(spec: Spec) -> tuple:
    """The shape the user's code holds a parameter in."""
    rows, cols = spec.canonical
    if spec.kind == "matrix":
        return (rows, cols) if spec.orientation == "right" else (cols, rows)
    return {"flat": (cols,), "column": (cols, 1), "row": (1, cols)}[spec.bias]


def _canonical(arr: np.ndarray, spec: Spec) -> np.ndarray:
    """The user's array as an (in, out) matrix (a bias as one row)."""
    if spec.kind == "bias":
        return arr.reshape(1, -1)
    return arr if spec.orientation == "right" else arr.T


def _native(canon: np.ndarray, spec: Spec) -> np.ndarray:
    """Inverse of _canonical."""
    if spec.kind == "bias":
        return canon.reshape(native_shape(spec))
    return canon if spec.orientation == "right" else canon.T


def expected_shapes(layout: Layout, D: int, H: int, K: int) -> dict:
    """name -> the shape the layout expects every user parameter to have."""
    return {name: native_shape(spec) for name, spec in pieces(layout, D, H, K)[0].items()}


def check_fits(arrays: dict, layout: Layout, D: int, H: int, K: int, what: str = "params") -> None:
    """Raise LayoutError naming the first parameter that is missing, unmapped or of the wrong shape."""
    expected = expected_shapes(layout, D, H, K)
    where = f"layout={layout.name} (D={D}, H={H}, K={K}; docs/own_lstm.md#layouts)"
    for name, shape in expected.items():
        if name not in arrays:
            have = ", ".join(sorted(map(str, arrays))) or "none"
            raise LayoutError(f"{where}: parameter '{name}' is missing from the {what} (they have: {have})")
        actual = tuple(np.shape(arrays[name]))
        if actual != shape:
            raise LayoutError(f"{where}: parameter '{name}' has shape {actual}, the layout expects {shape}")
    extra = sorted(set(map(str, arrays)) - set(expected) - {"h0", "c0"})
    if extra:
        raise LayoutError(f"{where}: {what} {', '.join(extra)} are not described by the layout")


def to_fused(arrays: dict, layout: Layout, D: int, H: int, K: int, grads: bool = False) -> dict:
    """The user's parameters (or, with ``grads``, gradients) as the core's ``Wx, Wh, b, Wy, by``.

    Absent biases are zero; two biases per gate (``b2``) add up as parameters, and as gradients the first one's is
    the fused bias's (the second's is the same, if the code is right). ``h0`` and ``c0`` entries (gradients of the
    initial state) pass through unchanged.
    """
    specs, plan = pieces(layout, D, H, K)
    dtype = np.result_type(*(np.asarray(arrays[n]).dtype for n in specs))
    fused = {k: np.zeros(s, dtype=dtype) for k, s in param_shapes(D, H, K).items()}
    rows_of = {k: v.reshape(-1, v.shape[-1]) for k, v in fused.items()}  # b, by as one row (views)
    for p in plan:
        if p.second and grads:
            continue
        block = _canonical(np.asarray(arrays[p.param]), specs[p.param])[p.rows, p.cols]
        if p.second:
            rows_of[p.fused][p.fused_rows, p.fused_cols] += block
        else:
            rows_of[p.fused][p.fused_rows, p.fused_cols] = block
    fused.update({k: arrays[k] for k in ("h0", "c0") if k in arrays})
    return fused


def blocks(arrays: dict, layout: Layout, D: int, H: int, K: int) -> dict:
    """Each user parameter cut into the pieces the layout maps (one gate's block of the input weights, its
    recurrent weights, its bias, the output layer): (param, what, gate) -> array, ``what`` the core's name of the
    piece (Wx, Wh, b, Wy, by) and ``gate`` its gate (None for the output layer)."""
    specs, plan = pieces(layout, D, H, K)
    out = {}
    for p in plan:
        gate = GATES[p.fused_cols.start // H] if p.fused in ("Wx", "Wh", "b") else None
        out[(p.param, p.fused, gate)] = _canonical(np.asarray(arrays[p.param]), specs[p.param])[p.rows, p.cols]
    return out


def from_fused(fused: dict, layout: Layout, D: int, H: int, K: int, grads: bool = False) -> dict:
    """The core's parameters (or, with ``grads``, gradients) in the user's names and shapes (biases the layout lacks
    are dropped). Two biases per gate share the fused bias as parameters (half each) and both get its gradient."""
    specs, plan = pieces(layout, D, H, K)
    split = 0.5 if not grads and any(p.second for p in plan) else 1.0
    canon = {name: np.zeros(spec.canonical, dtype=fused["Wx"].dtype) for name, spec in specs.items()}
    for p in plan:
        source = fused[p.fused].reshape(-1, fused[p.fused].shape[-1])[p.fused_rows, p.fused_cols]
        canon[p.param][p.rows, p.cols] = source * split if p.fused == "b" else source
    return {name: np.ascontiguousarray(_native(c, specs[name])) for name, c in canon.items()}

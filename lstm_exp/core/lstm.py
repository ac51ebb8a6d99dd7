"""The LSTM core: a batched, batch-first forward pass and its hand-written BPTT backward.

One layer, fused gates, gate order **i, f, g, o** — the order of ``torch.nn.LSTM``, so
``Wx = weight_ih_l0.T``, ``Wh = weight_hh_l0.T`` and ``b = bias_ih_l0 + bias_hh_l0`` map 1:1:

    a_t = x_t Wx + h_{t-1} Wh + b                       (B, 4H), split into a_i, a_f, a_g, a_o
    i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o)
    g = tanh(a_g)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

Design notes (why the code looks the way it does):
- The input projection of all timesteps is one matmul before the recurrence, and the weight gradients
  are one matmul each after it; only ``h_{t-1} Wh`` (forward) and ``da_t Wh^T`` (backward) stay in the loop.
- Internally everything is time-major ``(T, B, ...)`` so each step touches contiguous memory; the public
  arrays are batch-first views.
- The four gate nonlinearities cost more than the matmuls (NumPy's float64 ``tanh`` is ~3x slower than
  its ``exp``), so all four come from one ``exp`` over the (B, 4H) block: with the pre-activations
  pre-scaled by -1 (i, f, o) and -2 (g) — folded into the weights once per call —
  ``1 / (1 + exp(.))`` is sigmoid(z) on i, f, o and sigmoid(2z) on g, and tanh(z) = 2 sigmoid(2z) - 1.
  ``exp`` overflows to inf for very negative z, where 1 / (1 + inf) = 0 is the exact limit: no NaN
  and, with the overflow flag silenced, no warning, even at |z| = 1000.
- The backward precomputes every local derivative that does not depend on the incoming gradient with
  whole-sequence (vectorised) operations, so the loop does only what the recurrence forces on it.
- dtype follows the parameters (float64 or float32); inputs are cast to it.
- A *population*: S independent LSTMs trained as one computation (many seeds of a tiny model, where a step's time
  is Python's, not arithmetic's). Every array then has a leading member axis: ``Wx (S, D, 4H)``, ``x (S, B, T, D)``,
  ``h0 (S, B, H)``, and internally ``(T, S, B, ...)``. The functions are the same; NumPy's stacked ``matmul`` runs
  the S members' products, each the very BLAS call a member alone makes, and every GEMM that spans time (the input
  projection, the weight gradients) runs on member-major copies ``(S, T*B, ...)`` so that each member's is the
  shape it has alone: a member's numbers are bit for bit its numbers trained alone (``tests/test_population.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lstm_exp.core.members import batch_first, member_dims, member_major, time_major

PARAM_NAMES = ("Wx", "Wh", "b")


class LSTMCache(NamedTuple):
    """What the backward pass needs from the forward pass (time-major arrays)."""

    x: np.ndarray  # (*M, T, B, D) float inputs, or (*M, T, B) int token ids; M: the member axis, if any
    gates: np.ndarray  # (T, B, 4H) activated gates i, f, g, o
    cs: np.ndarray  # (T+1, B, H) cell states, cs[0] = c0
    hs: np.ndarray  # (T+1, B, H) hidden states, hs[0] = h0
    tanh_cs: np.ndarray  # (T, B, H) tanh(c_t)
    Wh: np.ndarray  # (H, 4H) recurrent weights, for da_t Wh^T
    input_dim: int  # D (vocabulary size for token ids)


def _exp_scale(H: int, dtype) -> np.ndarray:
    """Per-column factor applied to the pre-activations before exp: -1 on i, f, o and -2 on g."""
    scale = np.full(4 * H, -1.0, dtype=dtype)
    scale[2 * H : 3 * H] = -2.0
    return scale


def init_state(batch: int, hidden: int, dtype=np.float64, members: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Zero (h0, c0) of shape (B, H) each; (S, B, H) for a population of ``members``."""
    shape = (batch, hidden) if members is None else (members, batch, hidden)
    return np.zeros(shape, dtype=dtype), np.zeros(shape, dtype=dtype)


def _input_projection(params: dict, x: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x Wx + b) * scale for every timestep at once -> (member-major x ``(*M, T, B, D)``, ``(T, *M, B, 4H)``).

    The per-column scale is folded into the small (D, 4H) weights rather than applied to the result.
    """
    Wx, b = params["Wx"], params["b"]
    k = member_dims(params)
    if np.issubdtype(x.dtype, np.integer):
        ids = np.ascontiguousarray(np.swapaxes(x, -1, -2))  # (*M, T, B) token ids: a one-hot row gather, no matmul
        table = (Wx + b[..., None, :]) * scale
        if k == 0:
            return ids, np.take(table, ids, axis=0)
        gathered = table[np.arange(len(ids))[:, None, None], ids]  # (S, T, B, 4H)
        return ids, np.ascontiguousarray(np.moveaxis(gathered, 1, 0))
    xt = np.ascontiguousarray(np.swapaxes(x, -2, -3), dtype=Wx.dtype)  # (*M, T, B, D)
    T, B, D = xt.shape[-3:]
    xw = xt.reshape(*xt.shape[:k], T * B, D) @ (Wx * scale)  # one GEMM per member, as alone
    xw += (b * scale)[..., None, :]
    xw = xw.reshape(*xt.shape[:k], T, B, -1)
    return xt, xw if k == 0 else np.ascontiguousarray(np.moveaxis(xw, k, 0))


def lstm_forward(params: dict, x: np.ndarray, h0: np.ndarray, c0: np.ndarray):
    """Run an LSTM layer over a whole sequence.

    Inputs:
    - params: dict with Wx of shape (D, 4H), Wh of shape (H, 4H), b of shape (4H,); gate order i, f, g, o
    - x: inputs of shape (B, T, D), or integer token ids of shape (B, T) meaning one-hot inputs over D = V
    - h0, c0: initial hidden and cell state, each of shape (B, H)
    (a population: every one of these with a leading member axis S)

    Returns a tuple of:
    - hs: hidden states of shape (B, T, H) (a batch-first view)
    - (hT, cT): final state, each of shape (B, H): carry it into the next chunk for truncated BPTT
    - cache: LSTMCache for lstm_backward
    """
    Wh = params["Wh"]
    H = Wh.shape[-2]
    dtype = Wh.dtype
    scale = _exp_scale(H, dtype)
    xt, xw = _input_projection(params, x, scale)
    Wh_scaled = Wh * scale
    T, step = xw.shape[0], xw.shape[1:-1]  # step: (*M, B)

    gates = np.empty((T, *step, 4 * H), dtype=dtype)
    cs = np.empty((T + 1, *step, H), dtype=dtype)
    hs = np.empty((T + 1, *step, H), dtype=dtype)
    tanh_cs = np.empty((T, *step, H), dtype=dtype)
    ig = np.empty((*step, H), dtype=dtype)
    cs[0], hs[0] = c0, h0
    with np.errstate(over="ignore"):  # exp(-z) -> inf is the right limit for z << 0
        for t in range(T):
            a = gates[t]
            np.matmul(hs[t], Wh_scaled, out=a)  # recurrent projection (pre-scaled)
            a += xw[t]  # plus the hoisted input projection
            np.exp(a, out=a)  # exp(-z) on i, f, o; exp(-2z) on g
            a += 1
            np.reciprocal(a, out=a)  # sigmoid(z) = 1 / (1 + exp(-z))
            i, f, g, o = a[..., :H], a[..., H : 2 * H], a[..., 2 * H : 3 * H], a[..., 3 * H :]
            g *= 2
            g -= 1  # tanh(z) = 2 sigmoid(2z) - 1
            np.multiply(f, cs[t], out=cs[t + 1])  # c_t = f * c_{t-1} ...
            np.multiply(i, g, out=ig)
            cs[t + 1] += ig  # ... + i * g
            np.tanh(cs[t + 1], out=tanh_cs[t])
            np.multiply(o, tanh_cs[t], out=hs[t + 1])  # h_t = o * tanh(c_t)

    cache = LSTMCache(xt, gates, cs, hs, tanh_cs, Wh, params["Wx"].shape[-2])
    return batch_first(hs[1:], member_dims(params)), (hs[T], cs[T]), cache


def lstm_backward(dhs: np.ndarray, cache: LSTMCache, dhT=None, dcT=None, state_clip: float | None = None, stats=None):
    """Backpropagation through time for lstm_forward.

    Inputs:
    - dhs: upstream gradient of the hidden states, of shape (B, T, H)
    - cache: from lstm_forward
    - dhT, dcT: optional upstream gradients of the final state (hT, cT), each of shape (B, H)
    - state_clip: if a positive number, clamp the BPTT carries dh and dc to [-state_clip, state_clip]
      at every timestep (the fix of seed 000; changes the gradient, so off for gradient checks)
    - stats: a dict that gets ``"clamped"``, the fraction of carry entries the clamp changed (with state_clip)

    Returns a tuple of:
    - grads: dict with dWx (D, 4H), dWh (H, 4H), db (4H,) under the keys of params
    - dh0, dc0: gradients of the initial state, each of shape (B, H)
    """
    P, dc_dh = local_derivatives(cache)
    WhT = np.swapaxes(cache.Wh, -1, -2)
    dA, _, dh0, dc0 = backprop_through_time(dhs, cache, P, dc_dh, WhT, dhT, dcT, state_clip, stats=stats)
    return weight_gradients(cache, dA), dh0, dc0


def activations(gates: np.ndarray) -> np.ndarray:
    """The values the gates' derivatives are evaluated at: the activations i, f, g, o themselves."""
    return gates


def previous_cells(cache: LSTMCache) -> np.ndarray:
    """The cell state the forget gate multiplies at each step: c_{t-1}, of shape (T, B, H)."""
    return cache.cs[:-1]


def tanh_of_cells(cache: LSTMCache) -> np.ndarray:
    """tanh(c_t), of shape (T, B, H), whose slope 1 - tanh(c_t)^2 carries dh_t into c_t."""
    return cache.tanh_cs


def local_derivatives(cache: LSTMCache, evaluated_at=activations, forget_cell=previous_cells, tanh_c=tanh_of_cells):
    """Everything in da_t that does not depend on the incoming gradient, for all t at once.

    Returns (P, dc_dh): P of shape (T, B, 4H) with da = [dc*P_i, dc*P_f, dc*P_g, dh*P_o], and
    dc_dh = o * (1 - tanh(c)^2) of shape (T, B, H), the path from h_t into c_t.
    ``evaluated_at``, ``forget_cell`` and ``tanh_c`` name the three values these derivatives read (the defaults are
    the right ones; ``lstm_exp.core.faults`` swaps them for the mistakes people make).
    """
    G, tc = cache.gates, cache.tanh_cs
    H = tc.shape[-1]
    i, g, o = G[..., :H], G[..., 2 * H : 3 * H], G[..., 3 * H :]
    s = evaluated_at(G)
    si, sf, sg, so = s[..., :H], s[..., H : 2 * H], s[..., 2 * H : 3 * H], s[..., 3 * H :]
    P = np.empty_like(G)
    P[..., :H] = g * si * (1 - si)  # dc -> a_i through i * g, sigmoid'
    P[..., H : 2 * H] = forget_cell(cache) * sf * (1 - sf)  # dc -> a_f through f * c_{t-1}
    P[..., 2 * H : 3 * H] = i * (1 - sg * sg)  # dc -> a_g through i * g, tanh'
    P[..., 3 * H :] = tc * so * (1 - so)  # dh -> a_o through o * tanh(c)
    z = tanh_c(cache)
    return P, o * (1 - z * z)


def backprop_through_time(
    dhs, cache: LSTMCache, P, dc_dh, WhT, dhT=None, dcT=None, state_clip=None, forget=None, stats=None
):
    """The recurrence of the backward pass, from t = T-1 down to 0.

    Inputs:
    - dhs: upstream gradient of the hidden states (B, T, H); cache: from lstm_forward
    - P, dc_dh: from local_derivatives
    - WhT: the (4H, H) matrix that carries da_t back into h_{t-1} (Wh^T)
    - dhT, dcT, state_clip: as in lstm_backward
    - forget: the (T, B, H) factor that carries dc_t back into c_{t-1}; None: the forget gates themselves
    - stats: with state_clip, a dict that gets ``"clamped"``: the fraction of the carries' entries clamped
    (a population: one per member; its ``state_clip`` may be one value per member, shape (S, 1, 1))

    Returns (dA, dcs, dh0, dc0): gate pre-activation gradients (T, B, 4H), the total cell-state
    gradients (T, B, H), and the gradients of h0 and c0.
    """
    T, step, H4 = cache.gates.shape[0], cache.gates.shape[1:-1], cache.gates.shape[-1]
    H = H4 // 4
    dtype = cache.gates.dtype
    f_gates = cache.gates[..., H : 2 * H] if forget is None else forget
    dhs_t = time_major(dhs)  # (T, *M, B, H) view
    WhT = np.ascontiguousarray(WhT, dtype=dtype)

    dA = np.empty_like(cache.gates)
    dcs = np.empty((T, *step, H), dtype=dtype)
    dh_next = np.zeros((*step, H), dtype=dtype) if dhT is None else np.array(dhT, dtype=dtype)
    dc_next = np.zeros((*step, H), dtype=dtype) if dcT is None else np.array(dcT, dtype=dtype)
    dh = np.empty((*step, H), dtype=dtype)
    clip = state_clip is not None and np.all(np.asarray(state_clip) > 0)
    clamped = 0
    each = (-2, -1)  # count a member's entries (all of them, for one LSTM)
    for t in range(T - 1, -1, -1):
        dc = dcs[t]
        np.add(dhs_t[t], dh_next, out=dh)  # dh = upstream + carry from t+1
        if clip:
            clamped += np.count_nonzero(np.abs(dh) > state_clip, axis=each)
            np.clip(dh, -state_clip, state_clip, out=dh)
        np.multiply(dh, dc_dh[t], out=dc)  # backprop h = o * tanh(c) into c ...
        dc += dc_next  # ... plus the carry from c_{t+1}
        if clip:
            clamped += np.count_nonzero(np.abs(dc) > state_clip, axis=each)
            np.clip(dc, -state_clip, state_clip, out=dc)
        da, p = dA[t].reshape(*step, 4, H), P[t].reshape(*step, 4, H)
        np.multiply(p[..., :3, :], dc[..., None, :], out=da[..., :3, :])  # into a_i, a_f, a_g
        np.multiply(p[..., 3, :], dh, out=da[..., 3, :])  # into a_o
        np.matmul(dA[t], WhT, out=dh_next)  # backprop into h_{t-1}: all four gates
        np.multiply(dc, f_gates[t], out=dc_next)  # backprop into c_{t-1}
    if clip and stats is not None:
        fraction = clamped / (2 * T * step[-1] * H)
        stats["clamped"] = float(fraction) if np.ndim(fraction) == 0 else fraction
    return dA, dcs, dh_next, dc_next


def weight_gradients(cache: LSTMCache, dA: np.ndarray, h_in=None) -> dict:
    """dWx, dWh, db from the gate gradients of all timesteps: one GEMM each (or a scatter for ids).

    ``h_in``: the (T, B, H) hidden states dWh is built from; None: h_{t-1}, the ones the forward multiplied by Wh.
    """
    k = dA.ndim - 3
    dA2 = member_major(dA, k)  # (*M, T*B, 4H)
    h_in = member_major(cache.hs[:-1] if h_in is None else h_in, k)
    return {
        "Wx": _input_weight_grad(cache, dA2),
        "Wh": np.swapaxes(h_in, -1, -2) @ dA2,
        "b": dA2.sum(axis=-2),
    }


ONE_HOT_BLOCK = 1 << 22  # entries of one-hot matrix built at a time for the token-id dWx


def _input_weight_grad(cache: LSTMCache, dA2: np.ndarray) -> np.ndarray:
    """dWx from the gate gradients (T*B, 4H): x^T dA, one GEMM; for token ids, a one-hot GEMM in blocks.

    The one-hot GEMM sums each token's rows ~5x faster than ``np.add.at``; the blocks bound its memory
    for large vocabularies.
    """
    x = cache.x
    if not np.issubdtype(x.dtype, np.integer):
        xs = x.reshape(*dA2.shape[:-1], x.shape[-1])  # (*M, T*B, D)
        return np.swapaxes(xs, -1, -2) @ dA2
    if x.ndim == 3:  # a population: each member's one-hot GEMMs, as alone
        return np.stack([_one_hot_grad(ids.ravel(), cache.input_dim, d) for ids, d in zip(x, dA2, strict=True)])
    return _one_hot_grad(x.ravel(), cache.input_dim, dA2)


def _one_hot_grad(ids: np.ndarray, V: int, dA2: np.ndarray) -> np.ndarray:
    """sum over rows of onehot(ids)^T dA2: (V, 4H)."""
    dWx = np.zeros((V, dA2.shape[1]), dtype=dA2.dtype)
    rows = max(1, ONE_HOT_BLOCK // V)
    for start in range(0, len(ids), rows):
        block = ids[start : start + rows]
        one_hot = np.zeros((len(block), V), dtype=dA2.dtype)
        one_hot[np.arange(len(block)), block] = 1.0
        dWx += one_hot.T @ dA2[start : start + rows]  # sum the gradients of each token id
    return dWx

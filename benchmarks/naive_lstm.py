"""A naive LSTM training step, written the way hand-written blog and Q&A LSTMs usually are.

It is the speed baseline for ``bench_core.py`` and must compute exactly what
``lstm_exp.core.network.loss_and_grads`` computes (``reduction="mean"``), only slowly:

- batch 1: a batch of B sequences is a Python loop over the sequences;
- column-vector convention with **four separate gate matrices** ``W_i, W_f, W_g, W_o`` of shape (H, H + D),
  each applied to the concatenation ``z_t = [h_{t-1}; x_t]`` -> four matvecs per timestep;
- character input is a one-hot vector of size V built per timestep and multiplied like any other input;
- a per-timestep head ``y_t = W_y h_t + b_y`` with its softmax cross-entropy or squared error;
- the backward walks the timesteps in reverse and accumulates every weight gradient with ``np.outer``.

The naive parameters are the core's in another layout (``to_naive`` / ``to_core`` convert, gate order
i, f, g, o): ``W_gate = [Wh[:, gate].T, Wx[:, gate].T]``, ``b_gate = b[gate]``, ``W_y = Wy.T``.
"""

from __future__ import annotations

import numpy as np

GATES = ("i", "f", "g", "o")


def to_naive(params: dict) -> dict:
    """Split the core's fused (D, 4H) / (H, 4H) parameters into four (H, H + D) gate matrices."""
    H = params["Wh"].shape[0]
    naive = {"Wy": params["Wy"].T.copy(), "by": params["by"].copy()}
    for k, gate in enumerate(GATES):
        cols = slice(k * H, (k + 1) * H)
        naive["W" + gate] = np.concatenate([params["Wh"][:, cols].T, params["Wx"][:, cols].T], axis=1)
        naive["b" + gate] = params["b"][cols].copy()
    return naive


def to_core(naive: dict) -> dict:
    """Inverse of ``to_naive``: fuse the gate matrices back into Wx (D, 4H), Wh (H, 4H), b (4H,)."""
    H = naive["Wi"].shape[0]
    fused = np.concatenate([naive["W" + gate] for gate in GATES], axis=0)  # (4H, H + D)
    return {
        "Wx": fused[:, H:].T.copy(),
        "Wh": fused[:, :H].T.copy(),
        "b": np.concatenate([naive["b" + gate] for gate in GATES]),
        "Wy": naive["Wy"].T.copy(),
        "by": naive["by"].copy(),
    }


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The textbook logistic function (stable enough for the benchmark's small weights)."""
    return 1.0 / (1.0 + np.exp(-z))


def one_hot(index: int, size: int, dtype) -> np.ndarray:
    """A one-hot column vector, as the hand-written char models build it every timestep."""
    vec = np.zeros(size, dtype=dtype)
    vec[index] = 1.0
    return vec


def input_vector(x_seq: np.ndarray, t: int, input_dim: int, dtype) -> np.ndarray:
    """x_t of one sequence: a one-hot vector for token ids, the feature vector otherwise."""
    if np.issubdtype(x_seq.dtype, np.integer):
        return one_hot(int(x_seq[t]), input_dim, dtype)
    return x_seq[t].astype(dtype)


def head_loss(y: np.ndarray, target, loss: str, n: int) -> tuple[float, np.ndarray]:
    """Loss of one timestep's output and its gradient, both divided by the batch normaliser n."""
    if loss == "xent":
        p = np.exp(y - np.max(y))
        p /= np.sum(p)
        dy = p.copy()
        dy[int(target)] -= 1.0
        return -float(np.log(p[int(target)])) / n, dy / n
    diff = y - target
    return float(np.sum(diff * diff)) / n, 2.0 * diff / n


def forward_sequence(p: dict, x_seq, y_seq, h0, c0, loss: str, n: int) -> tuple[float, list]:
    """Forward one sequence timestep by timestep; returns its loss share and the per-step caches."""
    input_dim = p["Wi"].shape[1] - p["Wi"].shape[0]
    h, c = h0, c0
    total, steps = 0.0, []
    for t in range(len(x_seq)):
        z = np.concatenate([h, input_vector(x_seq, t, input_dim, h.dtype)])
        i = sigmoid(np.dot(p["Wi"], z) + p["bi"])
        f = sigmoid(np.dot(p["Wf"], z) + p["bf"])
        g = np.tanh(np.dot(p["Wg"], z) + p["bg"])
        o = sigmoid(np.dot(p["Wo"], z) + p["bo"])
        c_prev = c
        c = f * c_prev + i * g
        tanh_c = np.tanh(c)
        h = o * tanh_c
        y = np.dot(p["Wy"], h) + p["by"]
        step_loss, dy = head_loss(y, y_seq[t], loss, n)
        total += step_loss
        steps.append((z, i, f, g, o, c_prev, tanh_c, h, dy))
    return total, steps


def backward_sequence(p: dict, steps: list, grads: dict) -> None:
    """BPTT over one sequence's caches, accumulating into ``grads`` with np.outer step by step."""
    H = p["Wi"].shape[0]
    dh_next = np.zeros(H, dtype=p["Wi"].dtype)
    dc_next = np.zeros(H, dtype=p["Wi"].dtype)
    for z, i, f, g, o, c_prev, tanh_c, h, dy in reversed(steps):
        grads["Wy"] += np.outer(dy, h)
        grads["by"] += dy
        dh = np.dot(p["Wy"].T, dy) + dh_next
        dc = dc_next + dh * o * (1.0 - tanh_c**2)
        da = {
            "i": dc * g * i * (1.0 - i),
            "f": dc * c_prev * f * (1.0 - f),
            "g": dc * i * (1.0 - g**2),
            "o": dh * tanh_c * o * (1.0 - o),
        }
        dz = np.zeros_like(z)
        for gate in GATES:
            grads["W" + gate] += np.outer(da[gate], z)
            grads["b" + gate] += da[gate]
            dz += np.dot(p["W" + gate].T, da[gate])
        dh_next = dz[:H]
        dc_next = f * dc


def naive_loss_and_grads(params: dict, x: np.ndarray, y: np.ndarray, loss: str = "mse"):
    """One training step of the naive LSTM on a batch, looping over its sequences.

    Inputs: the core's ``params`` (float64 or float32), x (B, T, D) floats or (B, T) token ids,
    y (B, T, K) for ``mse`` or (B, T) ids for ``xent``; zero initial state, ``reduction="mean"``.

    Returns (loss, grads) with grads in the core's layout (keys Wx, Wh, b, Wy, by).
    """
    p = to_naive(params)
    B, T = x.shape[:2]
    K = p["Wy"].shape[0]
    n = B * T * K if loss == "mse" else B * T  # what reduction="mean" divides by
    H = p["Wi"].shape[0]
    zeros = np.zeros(H, dtype=p["Wi"].dtype)
    grads = {name: np.zeros_like(value) for name, value in p.items()}
    total = 0.0
    for seq in range(B):
        seq_loss, steps = forward_sequence(p, x[seq], y[seq], zeros, zeros, loss, n)
        total += seq_loss
        backward_sequence(p, steps, grads)
    return total, to_core(grads)

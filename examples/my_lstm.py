"""A from-scratch LSTM in a layout of its own, written against the model contract: ``layout=my_lstm``.

Per-gate parameters and row vectors (one timestep is a (1, D) row):

    a_i = x_t @ Wx_i + h_{t-1} @ Wh_i + b_i          Wx_* (D, H), Wh_* (H, H), b_* (1, H)
    i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o);  g = tanh(a_g)
    c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)
    out_t = h_t @ W_out + b_out                       W_out (H, K), b_out (1, K)

It serves both kinds of task, chosen by the input's dtype:

- float inputs ``x`` (T, D), float targets (T, K): ``loss = mean over t and k of (out - target) ** 2``;
- integer token ids ``x`` (T,) (one-hot over D = V) and ids ``y`` (T,): softmax cross-entropy with a stable
  log-softmax, ``loss = mean over t of -log p_t[y_t]``.

``loss_and_grads`` returns the gradients of exactly that loss, plus ``"h0"`` and ``"c0"``.

``MyLSTMBuggy`` is the same model with one injected bug: the forget gate's gradient takes ``c_t`` where it needs
``c_{t-1}`` (``df = dc * c_t``), the swap seed 002 wondered about (``# ERROR FIXED: ??? c_old -> c?``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

GATES = ("i", "f", "g", "o")


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), without overflow


class Step(NamedTuple):
    """What one timestep's backward needs from its forward (all (1, H) rows except x)."""

    x: np.ndarray  # (1, D) input row (one-hot for token ids)
    h_prev: np.ndarray
    c_prev: np.ndarray
    i: np.ndarray
    f: np.ndarray
    g: np.ndarray
    o: np.ndarray
    c: np.ndarray
    tanh_c: np.ndarray


class MyLSTM:
    """One LSTM layer and an affine head, unbatched and time-major, with a hand-written BPTT."""

    def init_params(self, rng, input_dim, hidden, output_dim):
        """Xavier-uniform weights, zero biases except the forget gate's (1.0, so the cell remembers by default)."""

        def xavier(fan_in, fan_out):
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-limit, limit, size=(fan_in, fan_out))

        params = {}
        for gate in GATES:
            params[f"Wx_{gate}"] = xavier(input_dim, hidden)
            params[f"Wh_{gate}"] = xavier(hidden, hidden)
            params[f"b_{gate}"] = np.full((1, hidden), 1.0 if gate == "f" else 0.0)
        params["W_out"] = xavier(hidden, output_dim)
        params["b_out"] = np.zeros((1, output_dim))
        return params

    def forget_gate_cell(self, step: Step) -> np.ndarray:
        """The cell state the forget gate multiplies: c_{t-1}, since c_t = f * c_{t-1} + i * g."""
        return step.c_prev

    def loss_and_grads(self, params, x, y, h0, c0):
        """Forward the sequence, score it, backpropagate through time.

        Inputs:
        - params: dict of Wx_*, Wh_*, b_* (gates i, f, g, o), W_out, b_out
        - x: float inputs of shape (T, D), or integer token ids of shape (T,)
        - y: float targets of shape (T, K), or integer token ids of shape (T,)
        - h0, c0: initial state, each of shape (H,)

        Returns a tuple of:
        - loss: mean squared error (float inputs) or mean cross-entropy (token ids), a float
        - grads: dict with the keys of params, plus "h0" and "c0" of shape (H,)
        - (hT, cT): final state, each of shape (H,)
        """
        W_out, b_out = params["W_out"], params["b_out"]
        dtype = params["Wx_i"].dtype
        tokens = np.issubdtype(np.asarray(x).dtype, np.integer)
        if tokens:
            xs = np.eye(params["Wx_i"].shape[0], dtype=dtype)[x]  # token ids -> one-hot rows (T, V)
        else:
            xs = np.asarray(x, dtype=dtype)
        T, H = xs.shape[0], params["Wh_i"].shape[0]

        # forward, one step at a time
        h, c = np.reshape(h0, (1, H)), np.reshape(c0, (1, H))
        steps, outs = [], []
        for t in range(T):
            x_t = xs[t : t + 1]
            a = {k: x_t @ params[f"Wx_{k}"] + h @ params[f"Wh_{k}"] + params[f"b_{k}"] for k in GATES}
            i, f, o = sigmoid(a["i"]), sigmoid(a["f"]), sigmoid(a["o"])
            g = np.tanh(a["g"])
            c_next = f * c + i * g
            tanh_c = np.tanh(c_next)
            steps.append(Step(x_t, h, c, i, f, g, o, c_next, tanh_c))
            h, c = o * tanh_c, c_next
            outs.append(h @ W_out + b_out)
        out = np.concatenate(outs)  # (T, K)

        # loss and its gradient with respect to the head's outputs
        if tokens:
            z = out - out.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # stable log-softmax
            loss = -logp[np.arange(T), y].mean()
            dout = np.exp(logp)  # softmax probabilities
            dout[np.arange(T), y] -= 1.0  # d(-log p_y)/dz = p - onehot(y)
            dout /= T  # mean over time
        else:
            diff = out - y
            loss = np.mean(diff**2)
            dout = 2.0 * diff / diff.size  # d mean((out - y)^2) / d out

        # backward through time
        grads = {k: np.zeros_like(v) for k, v in params.items()}
        dh_next, dc_next = np.zeros((1, H)), np.zeros((1, H))  # nothing flows in after the last step
        for t in reversed(range(T)):
            s = steps[t]
            h_t = s.o * s.tanh_c
            dout_t = dout[t : t + 1]
            grads["W_out"] += h_t.T @ dout_t  # head weights
            grads["b_out"] += dout_t  # head bias
            dh = dout_t @ W_out.T + dh_next  # into h_t: from the head and from step t + 1
            do = dh * s.tanh_c  # h = o * tanh(c)
            dc = dc_next + dh * s.o * (1.0 - s.tanh_c**2)  # into c_t: through tanh(c_t) and from step t + 1
            di = dc * s.g  # c = f * c_prev + i * g
            df = dc * self.forget_gate_cell(s)  # ... the f term
            dg = dc * s.i  # ... the g term
            da = {
                "i": di * s.i * (1.0 - s.i),  # through sigmoid
                "f": df * s.f * (1.0 - s.f),  # through sigmoid
                "g": dg * (1.0 - s.g**2),  # through tanh
                "o": do * s.o * (1.0 - s.o),  # through sigmoid
            }
            dh_next = np.zeros((1, H))
            for k in GATES:
                grads[f"Wx_{k}"] += s.x.T @ da[k]  # input weights
                grads[f"Wh_{k}"] += s.h_prev.T @ da[k]  # recurrent weights
                grads[f"b_{k}"] += da[k]  # bias
                dh_next += da[k] @ params[f"Wh_{k}"].T  # into h_{t-1}, summed over the four gates
            dc_next = dc * s.f  # into c_{t-1}

        grads["h0"], grads["c0"] = dh_next.ravel(), dc_next.ravel()
        return float(loss), grads, (h.ravel(), c.ravel())


class MyLSTMBuggy(MyLSTM):
    """MyLSTM with one injected bug: the forget-gate derivative takes c_t instead of c_{t-1}."""

    def forget_gate_cell(self, step: Step) -> np.ndarray:
        return step.c  # BUG (on purpose): should be step.c_prev

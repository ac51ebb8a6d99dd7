"""An LSTM in the style of the CS231n RNN assignment: step functions plus a loop over time.

Minibatch-of-rows convention: ``x`` is (N, D), ``prev_h``/``prev_c`` are (N, H); here N = 1. The fused
activation vector ``a = x Wx + prev_h Wh + b`` (N, 4H) holds the gates in CS231n's order **i, f, o, g**.

Parameters: ``Wx`` (D, 4H), ``Wh`` (H, 4H), ``b`` (4H,); the temporal affine output ``W_out`` (H, K), ``b_out`` (K,).

Loss convention:

- token ids: softmax cross-entropy summed over the T steps (``temporal_softmax_loss`` divided by N = 1);
- floats: half the sum of squared errors, ``0.5 * sum_{t,k} (scores - y)**2``.

``lstm_step_backward`` takes the mistakes as an optional keyword (the assignment's signature is kept for the
first three arguments). ``recurrent_not_transposed`` is not supported (``Wh`` is fused): ``ValueError``.
"""

from __future__ import annotations

import numpy as np

ALL_MISTAKES = {
    "sigmoid_of_activation",
    "candidate_from_dc",
    "dh_prev_one_gate",
    "forget_from_c_t",
    "c_carry_without_forget",
    "no_c_carry",
    "no_h_carry",
    "tanh_prime_from_h",
    "tanh_prime_missing",
    "dWh_from_h_t",
    "output_weight_last_step",
    "not_summed_over_time",
    "loss_gradient",
}


def sigmoid(x):
    """A numerically stable version of the logistic sigmoid function."""
    pos_mask = x >= 0
    neg_mask = x < 0
    z = np.zeros_like(x)
    z[pos_mask] = np.exp(-x[pos_mask])
    z[neg_mask] = np.exp(x[neg_mask])
    top = np.ones_like(x)
    top[neg_mask] = z[neg_mask]
    return top / (1 + z)


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """Forward pass for a single timestep of an LSTM.

    Inputs:
    - x: Input data, of shape (N, D)
    - prev_h: Previous hidden state, of shape (N, H)
    - prev_c: previous cell state, of shape (N, H)
    - Wx: Input-to-hidden weights, of shape (D, 4H)
    - Wh: Hidden-to-hidden weights, of shape (H, 4H)
    - b: Biases, of shape (4H,)

    Returns a tuple of:
    - next_h: Next hidden state, of shape (N, H)
    - next_c: Next cell state, of shape (N, H)
    - cache: Tuple of values needed for backward pass.
    """
    H = prev_h.shape[1]
    a = x.dot(Wx) + prev_h.dot(Wh) + b
    i = sigmoid(a[:, 0:H])
    f = sigmoid(a[:, H : 2 * H])
    o = sigmoid(a[:, 2 * H : 3 * H])
    g = np.tanh(a[:, 3 * H : 4 * H])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    cache = (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c, next_h)
    return next_h, next_c, cache


def lstm_step_backward(dnext_h, dnext_c, cache, mistakes=frozenset()):
    """Backward pass for a single timestep of an LSTM.

    Inputs:
    - dnext_h: Gradients of next hidden state, of shape (N, H)
    - dnext_c: Gradients of next cell state, of shape (N, H)
    - cache: Values from the forward pass
    - mistakes: names of backward mistakes to inject (default: none)

    Returns a tuple of:
    - dx: Gradient of input data, of shape (N, D)
    - dprev_h: Gradient of previous hidden state, of shape (N, H)
    - dprev_c: Gradient of previous cell state, of shape (N, H)
    - dWx: Gradient of input-to-hidden weights, of shape (D, 4H)
    - dWh: Gradient of hidden-to-hidden weights, of shape (H, 4H)
    - db: Gradient of biases, of shape (4H,)
    """
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c, next_h = cache
    H = prev_h.shape[1]

    tanh_next_c = np.tanh(next_c)
    if "tanh_prime_missing" in mistakes:
        dc_from_h = dnext_h * o
    elif "tanh_prime_from_h" in mistakes:
        dc_from_h = dnext_h * o * (1 - next_h**2)
    else:
        dc_from_h = dnext_h * o * (1 - tanh_next_c**2)
    if "no_c_carry" in mistakes:
        dc = dc_from_h
    else:
        dc = dnext_c + dc_from_h

    di = dc * g
    if "forget_from_c_t" in mistakes:
        df = dc * next_c
    else:
        df = dc * prev_c
    do = dnext_h * tanh_next_c
    dg = dc * i
    if "c_carry_without_forget" in mistakes:
        dprev_c = dc
    else:
        dprev_c = dc * f

    if "sigmoid_of_activation" in mistakes:
        dai = di * sigmoid(i) * (1 - sigmoid(i))
        daf = df * sigmoid(f) * (1 - sigmoid(f))
        dao = do * sigmoid(o) * (1 - sigmoid(o))
        dag = dg * (1 - np.tanh(g) ** 2)
    else:
        dai = di * i * (1 - i)
        daf = df * f * (1 - f)
        dao = do * o * (1 - o)
        dag = dg * (1 - g**2)
    da = np.hstack((dai, daf, dao, dag))

    da_for_weights = da
    if "candidate_from_dc" in mistakes:
        da_for_weights = np.hstack((dai, daf, dao, dc))

    dx = da.dot(Wx.T)
    if "dh_prev_one_gate" in mistakes:
        dprev_h = dai.dot(Wh[:, 0:H].T)
    else:
        dprev_h = da.dot(Wh.T)
    dWx = x.T.dot(da_for_weights)
    if "dWh_from_h_t" in mistakes:
        dWh = next_h.T.dot(da_for_weights)
    else:
        dWh = prev_h.T.dot(da_for_weights)
    db = np.sum(da_for_weights, axis=0)
    return dx, dprev_h, dprev_c, dWx, dWh, db


class StepFunctionsLSTM:
    """Loops ``lstm_step_forward`` / ``lstm_step_backward`` over time, with an affine output at every step."""

    def __init__(self, mistakes=()):
        self.mistakes = frozenset(mistakes)
        if "recurrent_not_transposed" in self.mistakes:
            raise ValueError("recurrent_not_transposed is not expressible with a fused Wh (H, 4H)")
        if not self.mistakes <= ALL_MISTAKES:
            raise ValueError(f"unknown mistakes {sorted(self.mistakes - ALL_MISTAKES)}")

    def init_params(self, rng, input_dim, hidden, output_dim):
        params = {}
        params["Wx"] = 0.3 * rng.standard_normal((input_dim, 4 * hidden))
        params["Wh"] = 0.3 * rng.standard_normal((hidden, 4 * hidden))
        params["b"] = 0.3 * rng.standard_normal(4 * hidden)
        params["W_out"] = 0.3 * rng.standard_normal((hidden, output_dim))
        params["b_out"] = 0.3 * rng.standard_normal(output_dim)
        return params

    def loss_and_grads(self, params, x, y, h0, c0):
        Wx, Wh, b = params["Wx"], params["Wh"], params["b"]
        W_out, b_out = params["W_out"], params["b_out"]
        D, H = Wx.shape[0], Wh.shape[0]
        x = np.asarray(x)
        captions = x.dtype.kind in "iu"
        T = x.shape[0]

        # forward
        h = np.asarray(h0, dtype=np.float64).reshape(1, H)
        c = np.asarray(c0, dtype=np.float64).reshape(1, H)
        caches, hs = [], []
        for t in range(T):
            if captions:
                x_t = np.zeros((1, D))
                x_t[0, x[t]] = 1.0
            else:
                x_t = x[t].reshape(1, D).astype(np.float64)
            h, c, cache = lstm_step_forward(x_t, h, c, Wx, Wh, b)
            caches.append(cache)
            hs.append(h)
        h_all = np.vstack(hs)  # (T, H)
        scores = h_all.dot(W_out) + b_out  # (T, K)

        # loss
        if captions:
            probs = np.exp(scores - np.max(scores, axis=1, keepdims=True))
            probs /= np.sum(probs, axis=1, keepdims=True)
            loss = -np.sum(np.log(probs[np.arange(T), y]))
            dscores = probs.copy()
            if "loss_gradient" in self.mistakes:
                dscores[np.arange(T), x] -= 1
            else:
                dscores[np.arange(T), y] -= 1
        else:
            diff = scores - y
            loss = 0.5 * np.sum(diff * diff)
            dscores = -diff if "loss_gradient" in self.mistakes else diff

        # temporal affine backward
        if "output_weight_last_step" in self.mistakes:
            dW_out = h_all[T - 1 : T].T.dot(dscores[T - 1 : T])
        else:
            dW_out = h_all.T.dot(dscores)
        db_out = dscores.sum(axis=0)
        dh_all = dscores.dot(W_out.T)  # (T, H)

        # lstm backward
        dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)
        dprev_h = np.zeros((1, H))
        dprev_c = np.zeros((1, H))
        for t in reversed(range(T)):
            if "no_h_carry" in self.mistakes:
                dh = dh_all[t : t + 1]
            else:
                dh = dh_all[t : t + 1] + dprev_h
            _, dprev_h, dprev_c, dWx_t, dWh_t, db_t = lstm_step_backward(dh, dprev_c, caches[t], self.mistakes)
            if "not_summed_over_time" in self.mistakes:
                dWx[:, H : 2 * H] = dWx_t[:, H : 2 * H]
                dWx[:, :H] += dWx_t[:, :H]
                dWx[:, 2 * H :] += dWx_t[:, 2 * H :]
            else:
                dWx += dWx_t
            dWh += dWh_t
            db += db_t

        grads = {"Wx": dWx, "Wh": dWh, "b": db, "W_out": dW_out, "b_out": db_out}
        grads["h0"] = dprev_h.reshape(H)
        grads["c0"] = dprev_c.reshape(H)
        return float(loss), grads, (h.reshape(H), c.reshape(H))

"""NumPy re-implementation of a Keras ``LSTM(units, return_sequences=True)`` + ``Dense(K)`` stack.

Weights are named and shaped the way ``layer.get_weights()`` returns them, gate blocks in Keras's i, f, c, o
order along the last axis:

    kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H,)     z = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias
    dense_kernel (H, K), dense_bias (K,)                      y_t = h_t @ dense_kernel + dense_bias

The input projection ``inputs @ kernel + bias`` is done once for the whole sequence (as Keras's fused kernels
do); the backward collects the pre-activation gradients of all steps into ``dz_all`` (T, 4H) and forms the
weight gradients with one matmul each after the loop.

Loss convention (Keras's per-timestep losses, summed over the sequence):

- token ids: ``sparse_categorical_crossentropy(from_logits=True)`` summed over the T steps;
- floats: ``mean_squared_error`` (mean over the K outputs) summed over the T steps.

``recurrent_not_transposed`` is not supported (``recurrent_kernel`` is one fused matrix): ``ValueError``.
"""

from __future__ import annotations

import numpy as np

_KNOWN = (
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
)


def hard_to_overflow_sigmoid(v):
    out = np.empty_like(v)
    pos = v >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-v[pos]))
    e = np.exp(v[~pos])
    out[~pos] = e / (1.0 + e)
    return out


class KerasNamesLSTM:
    """Keras-named LSTM + Dense; see the module docstring for the loss and the mistakes."""

    def __init__(self, mistakes=()):
        self.mistakes = set(mistakes)
        for m in self.mistakes:
            if m == "recurrent_not_transposed":
                raise ValueError("recurrent_not_transposed needs separate per-gate recurrent matrices")
            if m not in _KNOWN:
                raise ValueError(f"unknown mistake {m!r}")

    def init_params(self, rng, input_dim, hidden, output_dim):
        units = hidden
        bias = rng.normal(0.0, 0.3, size=4 * units)
        bias[units : 2 * units] += 1.0  # unit_forget_bias=True
        return {
            "kernel": rng.normal(0.0, 0.3, size=(input_dim, 4 * units)),
            "recurrent_kernel": rng.normal(0.0, 0.3, size=(units, 4 * units)),
            "bias": bias,
            "dense_kernel": rng.normal(0.0, 0.3, size=(units, output_dim)),
            "dense_bias": rng.normal(0.0, 0.3, size=output_dim),
        }

    def loss_and_grads(self, params, x, y, h0, c0):
        m = self.mistakes
        kernel = params["kernel"]
        recurrent_kernel = params["recurrent_kernel"]
        dense_kernel = params["dense_kernel"]
        units = recurrent_kernel.shape[0]
        sparse = np.asarray(x).dtype.kind in "iu"
        X = np.eye(kernel.shape[0])[np.asarray(x)] if sparse else np.asarray(x, dtype=float)
        steps = X.shape[0]
        I, F, C, O = (slice(k * units, (k + 1) * units) for k in range(4))  # noqa: E741

        # forward: whole-sequence input projection, then the recurrence
        x_proj = X @ kernel + params["bias"]  # (T, 4H)
        h_seq = np.zeros((steps + 1, units))  # h_seq[t + 1] = h_t, h_seq[0] = h0
        c_seq = np.zeros((steps + 1, units))
        h_seq[0] = np.ravel(h0)
        c_seq[0] = np.ravel(c0)
        act = np.zeros((steps, 4 * units))  # activated gates i, f, c, o
        for t in range(steps):
            z = x_proj[t] + h_seq[t] @ recurrent_kernel
            act[t, I] = hard_to_overflow_sigmoid(z[I])
            act[t, F] = hard_to_overflow_sigmoid(z[F])
            act[t, C] = np.tanh(z[C])
            act[t, O] = hard_to_overflow_sigmoid(z[O])
            c_seq[t + 1] = act[t, F] * c_seq[t] + act[t, I] * act[t, C]
            h_seq[t + 1] = act[t, O] * np.tanh(c_seq[t + 1])
        outputs = h_seq[1:] @ dense_kernel + params["dense_bias"]  # (T, K)

        # loss and d loss / d outputs
        if sparse:
            y = np.asarray(y)
            shifted = outputs - outputs.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(shifted).sum(axis=1))
            loss = np.sum(log_norm - shifted[np.arange(steps), y])
            d_outputs = np.exp(shifted - log_norm[:, None])
            wrong_class = np.asarray(x) if "loss_gradient" in m else y
            d_outputs[np.arange(steps), wrong_class] -= 1.0
        else:
            n_out = outputs.shape[1]
            loss = np.sum(np.mean((outputs - y) ** 2, axis=1))
            if "loss_gradient" in m:
                d_outputs = (2.0 / n_out) * (y - outputs)
            else:
                d_outputs = (2.0 / n_out) * (outputs - y)

        grads = {}
        if "output_weight_last_step" in m:
            grads["dense_kernel"] = np.outer(h_seq[steps], d_outputs[-1])
        else:
            grads["dense_kernel"] = h_seq[1:].T @ d_outputs
        grads["dense_bias"] = d_outputs.sum(axis=0)

        # backward through time
        dh_from_top = d_outputs @ dense_kernel.T  # (T, H)
        dz_all = np.zeros((steps, 4 * units))  # pre-activation gradients, for dx / dh
        dz_w = np.zeros((steps, 4 * units))  # what the weight gradients are built from
        dkernel_f_overwritten = None
        dh_carry = np.zeros(units)
        dc_carry = np.zeros(units)
        for t in reversed(range(steps)):
            i_t, f_t, g_t, o_t = act[t, I], act[t, F], act[t, C], act[t, O]
            c_prev, c_t, h_t = c_seq[t], c_seq[t + 1], h_seq[t + 1]
            dh = dh_from_top[t] if "no_h_carry" in m else dh_from_top[t] + dh_carry
            tanh_c = np.tanh(c_t)
            if "tanh_prime_missing" in m:
                dc = dh * o_t
            elif "tanh_prime_from_h" in m:
                dc = dh * o_t * (1 - h_t * h_t)
            else:
                dc = dh * o_t * (1 - tanh_c * tanh_c)
            if "no_c_carry" not in m:
                dc += dc_carry

            if "sigmoid_of_activation" in m:
                sig = hard_to_overflow_sigmoid
                ds_i, ds_f, ds_o = sig(i_t) * (1 - sig(i_t)), sig(f_t) * (1 - sig(f_t)), sig(o_t) * (1 - sig(o_t))
                dtanh_g = 1 - np.tanh(g_t) ** 2
            else:
                ds_i, ds_f, ds_o = i_t * (1 - i_t), f_t * (1 - f_t), o_t * (1 - o_t)
                dtanh_g = 1 - g_t * g_t

            forget_cell = c_t if "forget_from_c_t" in m else c_prev
            dz_all[t, I] = dc * g_t * ds_i
            dz_all[t, F] = dc * forget_cell * ds_f
            dz_all[t, C] = dc * i_t * dtanh_g
            dz_all[t, O] = dh * tanh_c * ds_o
            dz_w[t] = dz_all[t]
            if "candidate_from_dc" in m:
                dz_w[t, C] = dc
            if "not_summed_over_time" in m:
                dkernel_f_overwritten = np.outer(X[t], dz_w[t, F])

            if "dh_prev_one_gate" in m:
                dh_carry = dz_all[t, I] @ recurrent_kernel[:, I].T
            else:
                dh_carry = dz_all[t] @ recurrent_kernel.T
            dc_carry = dc if "c_carry_without_forget" in m else dc * f_t

        grads["kernel"] = X.T @ dz_w
        if dkernel_f_overwritten is not None:
            grads["kernel"][:, F] = dkernel_f_overwritten
        h_for_recurrent = h_seq[1:] if "dWh_from_h_t" in m else h_seq[:-1]
        grads["recurrent_kernel"] = h_for_recurrent.T @ dz_w
        grads["bias"] = dz_w.sum(axis=0)
        grads["h0"] = dh_carry
        grads["c0"] = dc_carry
        hT, cT = h_seq[steps].copy(), c_seq[steps].copy()
        return float(loss), grads, (hT, cT)

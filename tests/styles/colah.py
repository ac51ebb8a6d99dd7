"""An LSTM written straight from colah's "Understanding LSTM Networks" equations.

Every gate looks at the concatenation ``[h_{t-1}, x_t]`` (h first), with its own (H, H + D) matrix:

    f_t = sigma(W_f . [h_{t-1}, x_t] + b_f)
    i_t = sigma(W_i . [h_{t-1}, x_t] + b_i)
    C~_t = tanh(W_C . [h_{t-1}, x_t] + b_C)
    C_t = f_t * C_{t-1} + i_t * C~_t
    o_t = sigma(W_o . [h_{t-1}, x_t] + b_o)
    h_t = o_t * tanh(C_t)
    y_t = W_y . h_t + b_y                      W_y (K, H), b_y (K,)

Biases are flat (H,). Loss convention:

- token ids: cross-entropy averaged over the T steps;
- floats: ``(1 / T) * sum_t 0.5 * ||y_t - target_t||^2`` (half the squared error, summed over outputs,
  averaged over time).

``recurrent_not_transposed`` is not supported: the recurrent part of each ``W`` is a slice of an (H, H + D)
matrix, not a separate square matrix; asking for it raises ``ValueError``.
"""

from __future__ import annotations

import numpy as np

MISTAKE_NAMES = [
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
]


def sigma(v):
    return np.exp(-np.logaddexp(0.0, -v))


class ColahLSTM:
    def __init__(self, mistakes=()):
        wanted = list(mistakes)
        bad = [m for m in wanted if m not in MISTAKE_NAMES]
        if bad:
            raise ValueError(f"ColahLSTM does not support the mistake(s) {bad}")
        self.mistakes = set(wanted)

    def init_params(self, rng, input_dim, hidden, output_dim):
        n_z = hidden + input_dim
        p = {}
        for gate in ("f", "i", "C", "o"):
            p[f"W_{gate}"] = rng.normal(scale=0.3, size=(hidden, n_z))
            p[f"b_{gate}"] = rng.normal(scale=0.3, size=hidden)
        p["b_f"] = p["b_f"] + 0.5
        p["W_y"] = rng.normal(scale=0.3, size=(output_dim, hidden))
        p["b_y"] = rng.normal(scale=0.3, size=output_dim)
        return p

    def loss_and_grads(self, params, x, y, h0, c0):
        W_f, W_i, W_C, W_o, W_y = (params[k] for k in ("W_f", "W_i", "W_C", "W_o", "W_y"))
        b_f, b_i, b_C, b_o, b_y = (params[k] for k in ("b_f", "b_i", "b_C", "b_o", "b_y"))
        H = W_f.shape[0]
        D = W_f.shape[1] - H
        x = np.asarray(x)
        categorical = np.issubdtype(x.dtype, np.integer)
        T = len(x)
        buggy = self.mistakes

        def x_at(t):
            if categorical:
                e = np.zeros(D)
                e[x[t]] = 1.0
                return e
            return np.asarray(x[t], dtype=float)

        # ---- forward: lists of per-step values ----
        h_prev = np.asarray(h0, dtype=float).ravel()
        C_prev = np.asarray(c0, dtype=float).ravel()
        hs, Cs, zs = [h_prev], [C_prev], []
        f_s, i_s, Ct_s, o_s, ys = [], [], [], [], []
        for t in range(T):
            z = np.concatenate([hs[-1], x_at(t)])
            f_t = sigma(W_f @ z + b_f)
            i_t = sigma(W_i @ z + b_i)
            C_tilde = np.tanh(W_C @ z + b_C)
            C_t = f_t * Cs[-1] + i_t * C_tilde
            o_t = sigma(W_o @ z + b_o)
            h_t = o_t * np.tanh(C_t)
            y_t = W_y @ h_t + b_y
            zs.append(z)
            f_s.append(f_t)
            i_s.append(i_t)
            Ct_s.append(C_tilde)
            o_s.append(o_t)
            hs.append(h_t)
            Cs.append(C_t)
            ys.append(y_t)

        # ---- loss, and dL/dy_t for every t ----
        dys = []
        loss = 0.0
        for t in range(T):
            if categorical:
                shifted = ys[t] - np.max(ys[t])
                p = np.exp(shifted) / np.sum(np.exp(shifted))
                loss += -np.log(p[y[t]]) / T
                dy = p.copy()
                dy[x[t] if "loss_gradient" in buggy else y[t]] -= 1.0
                dys.append(dy / T)
            else:
                r = ys[t] - y[t]
                loss += 0.5 * np.dot(r, r) / T
                dys.append((-r if "loss_gradient" in buggy else r) / T)

        # ---- backward ----
        g = {k: np.zeros_like(v) for k, v in params.items()}
        dh_next = np.zeros(H)
        dC_next = np.zeros(H)
        for t in reversed(range(T)):
            z, f_t, i_t, C_tilde, o_t = zs[t], f_s[t], i_s[t], Ct_s[t], o_s[t]
            h_t, C_t, C_prev = hs[t + 1], Cs[t + 1], Cs[t]

            if "output_weight_last_step" in buggy:
                if t == T - 1:
                    g["W_y"] = np.outer(dys[t], h_t)
            else:
                g["W_y"] += np.outer(dys[t], h_t)
            g["b_y"] += dys[t]

            dh = W_y.T @ dys[t]
            if "no_h_carry" not in buggy:
                dh += dh_next

            # h_t = o_t * tanh(C_t)
            do = dh * np.tanh(C_t)
            if "tanh_prime_missing" in buggy:
                dC = dh * o_t
            elif "tanh_prime_from_h" in buggy:
                dC = dh * o_t * (1.0 - h_t**2)
            else:
                dC = dh * o_t * (1.0 - np.tanh(C_t) ** 2)
            if "no_c_carry" not in buggy:
                dC += dC_next

            # C_t = f_t * C_{t-1} + i_t * C~_t
            df = dC * (C_t if "forget_from_c_t" in buggy else C_prev)
            di = dC * C_tilde
            dC_tilde = dC * i_t

            # through the nonlinearities, to the pre-activations
            if "sigmoid_of_activation" in buggy:
                da_f = df * sigma(f_t) * (1 - sigma(f_t))
                da_i = di * sigma(i_t) * (1 - sigma(i_t))
                da_o = do * sigma(o_t) * (1 - sigma(o_t))
                da_C = dC_tilde * (1 - np.tanh(C_tilde) ** 2)
            else:
                da_f = df * f_t * (1 - f_t)
                da_i = di * i_t * (1 - i_t)
                da_o = do * o_t * (1 - o_t)
                da_C = dC_tilde * (1 - C_tilde**2)

            # weights and biases
            z_w = z
            if "dWh_from_h_t" in buggy:
                z_w = np.concatenate([h_t, z[H:]])
            if "not_summed_over_time" in buggy:
                g["W_f"][:, :H] += np.outer(da_f, z_w[:H])
                g["W_f"][:, H:] = np.outer(da_f, z_w[H:])
            else:
                g["W_f"] += np.outer(da_f, z_w)
            g["W_i"] += np.outer(da_i, z_w)
            g["W_o"] += np.outer(da_o, z_w)
            g["b_f"] += da_f
            g["b_i"] += da_i
            g["b_o"] += da_o
            if "candidate_from_dc" in buggy:
                g["W_C"] += np.outer(dC, z_w)
                g["b_C"] += dC
            else:
                g["W_C"] += np.outer(da_C, z_w)
                g["b_C"] += da_C

            # into [h_{t-1}, x_t]
            if "dh_prev_one_gate" in buggy:
                dz = W_i.T @ da_i
            else:
                dz = W_f.T @ da_f + W_i.T @ da_i + W_C.T @ da_C + W_o.T @ da_o
            dh_next = dz[:H]
            dC_next = dC if "c_carry_without_forget" in buggy else dC * f_t

        g["h0"] = dh_next
        g["c0"] = dC_next
        return float(loss), g, (hs[-1], Cs[-1])

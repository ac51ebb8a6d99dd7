"""A minibatched LSTM, batch dimension first, the way a vectorised training loop would write it.

Shapes: ``x`` (B, T, D) floats or (B, T) token ids, ``y`` (B, T, K) floats or (B, T) class ids, ``h0``/``c0``
(B, H). Fused parameters, gate blocks i, f, g, o along the last axis:

    Wx (D, 4H), Wh (H, 4H), b (4H,)        A_t = X_t @ Wx + H_{t-1} @ Wh + b      (B, 4H)
    Wy (H, K), by (K,)                     Z_t = H_t @ Wy + by                    (B, K)

Loss convention: each sequence's loss is a mean over its time steps (cross-entropy), or over its time steps
and outputs (squared error, ``mean((Z - Y)**2)``); the returned loss is the mean of those over the B
sequences. All gradients are those of that batch-mean loss, so ``grads["h0"]`` (B, H) has as its row b the
gradient of sequence b's own loss divided by B.

``recurrent_not_transposed`` is not supported (``Wh`` is fused): ``ValueError``.
"""

from __future__ import annotations

import numpy as np

_MISTAKES = frozenset(
    [
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
)


def _sig(a):
    return 0.5 * np.tanh(0.5 * a) + 0.5


class BatchedLSTM:
    batched = True

    def __init__(self, mistakes=()):
        self.mistakes = frozenset(mistakes)
        if "recurrent_not_transposed" in self.mistakes:
            raise ValueError("BatchedLSTM: recurrent_not_transposed needs separate per-gate Wh (here one fused Wh)")
        if not self.mistakes <= _MISTAKES:
            raise ValueError(f"BatchedLSTM: unknown mistakes {sorted(self.mistakes - _MISTAKES)}")

    def init_params(self, rng, input_dim, hidden, output_dim):
        D, H, K = input_dim, hidden, output_dim
        b = rng.normal(0.0, 0.3, 4 * H)
        b[H : 2 * H] += 1.0
        return dict(
            Wx=rng.normal(0.0, 0.3, (D, 4 * H)),
            Wh=rng.normal(0.0, 0.3, (H, 4 * H)),
            b=b,
            Wy=rng.normal(0.0, 0.3, (H, K)),
            by=rng.normal(0.0, 0.3, K),
        )

    def loss_and_grads(self, params, x, y, h0, c0):
        has = self.mistakes.__contains__
        Wx, Wh, b, Wy, by = params["Wx"], params["Wh"], params["b"], params["Wy"], params["by"]
        H = Wh.shape[0]
        x = np.asarray(x)
        tokens = np.issubdtype(x.dtype, np.integer)
        X = np.eye(Wx.shape[0])[x] if tokens else x.astype(np.float64)  # (B, T, D)
        B, T, _ = X.shape
        gi, gf, gg, go = (slice(k * H, (k + 1) * H) for k in range(4))

        # forward: states stored with a leading slot for the initial state
        Hs = np.empty((B, T + 1, H))
        Cs = np.empty((B, T + 1, H))
        Hs[:, 0] = np.asarray(h0, dtype=np.float64).reshape(B, H)
        Cs[:, 0] = np.asarray(c0, dtype=np.float64).reshape(B, H)
        G = np.empty((B, T, 4 * H))  # activated gates
        for t in range(T):
            A = X[:, t] @ Wx + Hs[:, t] @ Wh + b
            G[:, t, gi] = _sig(A[:, gi])
            G[:, t, gf] = _sig(A[:, gf])
            G[:, t, gg] = np.tanh(A[:, gg])
            G[:, t, go] = _sig(A[:, go])
            Cs[:, t + 1] = G[:, t, gf] * Cs[:, t] + G[:, t, gi] * G[:, t, gg]
            Hs[:, t + 1] = G[:, t, go] * np.tanh(Cs[:, t + 1])
        Z = Hs[:, 1:] @ Wy + by  # (B, T, K)

        # loss (mean over the batch of per-sequence means) and dL/dZ
        if tokens:
            y = np.asarray(y)
            Zs = Z - Z.max(axis=-1, keepdims=True)
            logZ = np.log(np.exp(Zs).sum(axis=-1))
            bb, tt = np.meshgrid(np.arange(B), np.arange(T), indexing="ij")
            nll = logZ - Zs[bb, tt, y]  # (B, T)
            loss = nll.mean()
            dZ = np.exp(Zs - logZ[..., None])
            if has("loss_gradient"):
                dZ[bb, tt, x] -= 1.0
            else:
                dZ[bb, tt, y] -= 1.0
            dZ /= B * T
        else:
            R = Z - y
            loss = np.mean(R**2)  # = mean over b of mean over (t, k)
            dZ = (2.0 / R.size) * (-R if has("loss_gradient") else R)

        grads = {k: np.zeros_like(v) for k, v in params.items()}
        if has("output_weight_last_step"):
            grads["Wy"] = Hs[:, T].T @ dZ[:, T - 1]
        else:
            grads["Wy"] = np.einsum("bth,btk->hk", Hs[:, 1:], dZ)
        grads["by"] = dZ.sum(axis=(0, 1))
        dH_out = dZ @ Wy.T  # (B, T, H)

        dH_next = np.zeros((B, H))
        dC_next = np.zeros((B, H))
        for t in range(T - 1, -1, -1):
            Ig, Fg, Gg, Og = G[:, t, gi], G[:, t, gf], G[:, t, gg], G[:, t, go]
            C_prev, C_t, H_prev, H_t = Cs[:, t], Cs[:, t + 1], Hs[:, t], Hs[:, t + 1]
            tC = np.tanh(C_t)

            dH = dH_out[:, t] if has("no_h_carry") else dH_out[:, t] + dH_next
            if has("tanh_prime_missing"):
                dC = dH * Og
            elif has("tanh_prime_from_h"):
                dC = dH * Og * (1.0 - H_t**2)
            else:
                dC = dH * Og * (1.0 - tC**2)
            if not has("no_c_carry"):
                dC = dC + dC_next

            if has("sigmoid_of_activation"):
                sI, sF, sO = _sig(Ig), _sig(Fg), _sig(Og)
                dI, dF, dO, dG = sI * (1 - sI), sF * (1 - sF), sO * (1 - sO), 1 - np.tanh(Gg) ** 2
            else:
                dI, dF, dO, dG = Ig * (1 - Ig), Fg * (1 - Fg), Og * (1 - Og), 1 - Gg**2

            dA = np.empty((B, 4 * H))
            dA[:, gi] = dC * Gg * dI
            dA[:, gf] = dC * (C_t if has("forget_from_c_t") else C_prev) * dF
            dA[:, gg] = dC * Ig * dG
            dA[:, go] = dH * tC * dO

            dA_w = dA
            if has("candidate_from_dc"):
                dA_w = dA.copy()
                dA_w[:, gg] = dC
            dWx_t = X[:, t].T @ dA_w
            if has("not_summed_over_time"):
                grads["Wx"][:, gf] = dWx_t[:, gf]
                grads["Wx"][:, gi] += dWx_t[:, gi]
                grads["Wx"][:, gg] += dWx_t[:, gg]
                grads["Wx"][:, go] += dWx_t[:, go]
            else:
                grads["Wx"] += dWx_t
            grads["Wh"] += (H_t if has("dWh_from_h_t") else H_prev).T @ dA_w
            grads["b"] += dA_w.sum(axis=0)

            if has("dh_prev_one_gate"):
                dH_next = dA[:, gi] @ Wh[:, gi].T
            else:
                dH_next = dA @ Wh.T
            dC_next = dC if has("c_carry_without_forget") else dC * Fg

        grads["h0"] = dH_next
        grads["c0"] = dC_next
        return float(loss), grads, (Hs[:, T].copy(), Cs[:, T].copy())

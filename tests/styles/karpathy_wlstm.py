"""An LSTM in the style of karpathy's ``lstm.py`` gist: one weight matrix, caches in arrays indexed by t.

``WLSTM`` has shape (1 + D + H, 4H): the input row at step t is ``Hin[t] = [1, x_t, h_{t-1}]``, so row 0 of
``WLSTM`` is the bias, rows 1..D multiply the input and the last H rows the previous hidden state. The columns
hold the gates in the order **i, f, o, g** (three sigmoids first, then the tanh candidate). Unbatched here: one
sequence, so ``Hin`` is (T, 1 + D + H), ``IFOG``/``IFOGf`` (T, 4H), ``C``/``Ct``/``Hout`` (T, H).

The output layer ``Y = Hout.dot(Wy) + by``, ``Wy`` (H, K), ``by`` (K,).

Loss convention:

- token ids: softmax cross-entropy summed over the T steps;
- floats: the plain sum of squared errors over all T steps and K outputs (no 1/2, no mean).

``recurrent_not_transposed`` is not supported (the recurrent weights are rows of the fused ``WLSTM``).
"""

from __future__ import annotations

import numpy as np

SUPPORTED_MISTAKES = (
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


class KarpathyLSTM:
    def __init__(self, mistakes=()):
        for name in mistakes:
            if name not in SUPPORTED_MISTAKES:
                raise ValueError(f"KarpathyLSTM cannot inject {name!r}")
        self.bugs = frozenset(mistakes)

    @staticmethod
    def init(input_size, hidden_size, rng):
        """Initialize the LSTM matrix: random weights, scaled; biases in row 0."""
        WLSTM = rng.standard_normal((input_size + hidden_size + 1, 4 * hidden_size)) * 0.3
        WLSTM[0, :] = 0.1 + 0.3 * rng.standard_normal(4 * hidden_size)  # biases, non-zero
        WLSTM[0, hidden_size : 2 * hidden_size] += 1.0  # a forget bias, to remember at the start
        return WLSTM

    def init_params(self, rng, input_dim, hidden, output_dim):
        return {
            "WLSTM": self.init(input_dim, hidden, rng),
            "Wy": rng.standard_normal((hidden, output_dim)) * 0.3,
            "by": 0.3 * rng.standard_normal(output_dim) + 0.05,
        }

    def forward(self, X, WLSTM, c0, h0):
        """X is (n, input_size). Returns Hout (n, d), the final C and h, and a cache for backward."""
        n, input_size = X.shape
        d = WLSTM.shape[1] // 4
        Hin = np.zeros((n, WLSTM.shape[0]))
        Hout = np.zeros((n, d))
        IFOG = np.zeros((n, d * 4))
        IFOGf = np.zeros((n, d * 4))
        C = np.zeros((n, d))
        Ct = np.zeros((n, d))
        for t in range(n):
            prevh = Hout[t - 1] if t > 0 else h0
            Hin[t, 0] = 1
            Hin[t, 1 : input_size + 1] = X[t]
            Hin[t, input_size + 1 :] = prevh
            IFOG[t] = Hin[t].dot(WLSTM)
            IFOGf[t, : 3 * d] = 1.0 / (1.0 + np.exp(-IFOG[t, : 3 * d]))
            IFOGf[t, 3 * d :] = np.tanh(IFOG[t, 3 * d :])
            prevc = C[t - 1] if t > 0 else c0
            C[t] = IFOGf[t, :d] * IFOGf[t, 3 * d :] + IFOGf[t, d : 2 * d] * prevc
            Ct[t] = np.tanh(C[t])
            Hout[t] = IFOGf[t, 2 * d : 3 * d] * Ct[t]
        cache = {"WLSTM": WLSTM, "Hout": Hout, "IFOGf": IFOGf, "IFOG": IFOG, "C": C, "Ct": Ct, "Hin": Hin}
        cache["c0"], cache["h0"] = c0, h0
        return Hout, C[n - 1], Hout[n - 1], cache

    def backward(self, dHout_in, cache):
        """dHout_in (n, d): gradient arriving from the output layer. Returns dX, dWLSTM, dc0, dh0."""
        bug = self.bugs
        WLSTM, Hout, IFOGf, C, Ct, Hin = (cache[k] for k in ("WLSTM", "Hout", "IFOGf", "C", "Ct", "Hin"))
        c0 = cache["c0"]
        n, d = Hout.shape
        input_size = WLSTM.shape[0] - d - 1
        dIFOG = np.zeros(IFOGf.shape)
        dIFOGf = np.zeros(IFOGf.shape)
        dWLSTM = np.zeros_like(WLSTM)
        dHin = np.zeros(Hin.shape)
        dC = np.zeros(C.shape)
        dX = np.zeros((n, input_size))
        dh0 = np.zeros(d)
        dc0 = np.zeros(d)
        dHout = dHout_in.copy()  # carries from t + 1 are added into dHout[t] and dC[t]
        x_rows = slice(1, input_size + 1)
        h_rows = slice(input_size + 1, None)
        for t in reversed(range(n)):
            tanhCt = Ct[t]
            dIFOGf[t, 2 * d : 3 * d] = tanhCt * dHout[t]
            # backprop tanh non-linearity first then continue backprop
            if "tanh_prime_missing" in bug:
                dC[t] += IFOGf[t, 2 * d : 3 * d] * dHout[t]
            elif "tanh_prime_from_h" in bug:
                dC[t] += (1 - Hout[t] ** 2) * (IFOGf[t, 2 * d : 3 * d] * dHout[t])
            else:
                dC[t] += (1 - tanhCt**2) * (IFOGf[t, 2 * d : 3 * d] * dHout[t])

            prevc = C[t - 1] if t > 0 else c0
            dIFOGf[t, d : 2 * d] = (C[t] if "forget_from_c_t" in bug else prevc) * dC[t]
            carry_c = dC[t] if "c_carry_without_forget" in bug else IFOGf[t, d : 2 * d] * dC[t]
            if t > 0:
                if "no_c_carry" not in bug:
                    dC[t - 1] += carry_c
            else:
                dc0 = carry_c
            dIFOGf[t, :d] = IFOGf[t, 3 * d :] * dC[t]
            dIFOGf[t, 3 * d :] = IFOGf[t, :d] * dC[t]

            # backprop activation functions
            if "sigmoid_of_activation" in bug:
                z = IFOGf[t, : 3 * d]
                y = 1.0 / (1.0 + np.exp(-z))
                dIFOG[t, 3 * d :] = (1 - np.tanh(IFOGf[t, 3 * d :]) ** 2) * dIFOGf[t, 3 * d :]
            else:
                y = IFOGf[t, : 3 * d]
                dIFOG[t, 3 * d :] = (1 - IFOGf[t, 3 * d :] ** 2) * dIFOGf[t, 3 * d :]
            dIFOG[t, : 3 * d] = (y * (1.0 - y)) * dIFOGf[t, : 3 * d]

            # backprop matrix multiply
            dIFOG_w = dIFOG[t]
            if "candidate_from_dc" in bug:
                dIFOG_w = dIFOG[t].copy()
                dIFOG_w[3 * d :] = dC[t]
            Hin_w = Hin[t]
            if "dWh_from_h_t" in bug:
                Hin_w = Hin[t].copy()
                Hin_w[h_rows] = Hout[t]
            step_dW = np.outer(Hin_w, dIFOG_w)
            dWLSTM += step_dW
            if "not_summed_over_time" in bug:
                dWLSTM[x_rows, d : 2 * d] = step_dW[x_rows, d : 2 * d]  # '=' where '+=' was meant
            dHin[t] = dIFOG[t].dot(WLSTM.transpose())
            if "dh_prev_one_gate" in bug:
                dHin[t, h_rows] = dIFOG[t, :d].dot(WLSTM[h_rows, :d].transpose())

            # backprop the identity transforms into Hin
            dX[t] = dHin[t, x_rows]
            if t > 0:
                if "no_h_carry" not in bug:
                    dHout[t - 1, :] += dHin[t, h_rows]
            else:
                dh0 += dHin[t, h_rows]
        return dX, dWLSTM, dc0, dh0

    def loss_and_grads(self, params, x, y, h0, c0):
        WLSTM, Wy, by = params["WLSTM"], params["Wy"], params["by"]
        d = WLSTM.shape[1] // 4
        input_size = WLSTM.shape[0] - d - 1
        x = np.asarray(x)
        onehot = x.dtype.kind in "iu"
        if onehot:
            X = np.zeros((x.shape[0], input_size))
            X[np.arange(x.shape[0]), x] = 1
        else:
            X = np.array(x, dtype=np.float64)
        h0 = np.asarray(h0, dtype=np.float64).reshape(d)
        c0 = np.asarray(c0, dtype=np.float64).reshape(d)
        n = X.shape[0]

        Hout, cn, hn, cache = self.forward(X, WLSTM, c0, h0)
        Y = Hout.dot(Wy) + by

        if onehot:
            Ys = np.exp(Y - Y.max(axis=1, keepdims=True))
            P = Ys / Ys.sum(axis=1, keepdims=True)
            loss = -np.sum(np.log(P[np.arange(n), y]))
            dY = P.copy()
            dY[np.arange(n), x if "loss_gradient" in self.bugs else y] -= 1
        else:
            loss = np.sum((Y - y) ** 2)
            dY = 2 * (y - Y) if "loss_gradient" in self.bugs else 2 * (Y - y)

        if "output_weight_last_step" in self.bugs:
            dWy = np.outer(Hout[n - 1], dY[n - 1])
        else:
            dWy = Hout.T.dot(dY)
        dby = dY.sum(axis=0)
        dHout = dY.dot(Wy.T)
        _, dWLSTM, dc0, dh0 = self.backward(dHout, cache)
        grads = {"WLSTM": dWLSTM, "Wy": dWy, "by": dby, "h0": dh0, "c0": dc0}
        return float(loss), grads, (hn.copy(), cn.copy())

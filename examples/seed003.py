"""Seed 003: "LSTM backprop gradient check problem" (LSTM backprop梯度检查的问题), question and answer.

Source: seed 003 (a question whose gradient check fails, and its answer). Layout: ``layout=seed003``.
Token-id input (a WildML-style char/word model):
``Ui, Uf, Uo, Ug`` (H, V) read as columns ``U[:, x[t]]``, ``Wi, Wf, Wo, Wg`` (H, H) used as
``W @ h[t-1]``, ``V`` (V, H) with ``y[t] = softmax(V @ h[t])``; no biases. Loss: ``sum_t -log y[t, target_t]``.

The seed shows only ``backward_propagation``. The forward here is the standard one its names imply
(``i, f, o`` sigmoid gates, ``g`` the tanh candidate, ``c[t] = f[t] * c[t-1] + i[t] * g[t]``,
``ct[t] = tanh(c[t])``, ``h[t] = o[t] * ct[t]``), with the states stored WildML-style in arrays of T + 1 rows
whose *last* row (index -1) holds the initial state: the seed's ``h[t-1]`` and ``c[t-1]`` at t = 0 then read
``h[-1] = h0`` and ``c[-1] = c0``, so its backward needs no special case for the first step. ``hT, cT`` are
``h[T-1], c[T-1]``.

``Seed003Answer`` is the accepted answer's ``backward_propagation``, line by line: one loop over t,
``dhtmp = V.T.dot(dy[t]) + dh_prev``, ``dh_prev = Wi.T @ diga[t] + Wf.T @ dfga[t] + Wo.T @ doga[t] +
Wg.T @ dgga[t]``, ``dctmp = dctmp * f[t]``. It is a correct BPTT.

``Seed003Question`` is the question's version, line by line, with its bugs:

- ``for bptt_step in np.arange(0, t+1)[::-1]:``: an extra inner loop re-walks all earlier steps for every
  output, starting each walk from ``dhtmp = self.V.T.dot(dy[t])`` with no recurrent carry from step t + 1;
- ``dhtmp = np.dot(self.Wi, diga[bptt_step])``: the carry into h[t-1] goes through the input gate only, and
  through ``Wi`` instead of ``Wi.T`` (the other three gates are commented out in the seed);
- ``dctmp`` is never reset between outputs, so each walk starts from the cell carry the previous one left.

At T = 1 both walk one step from zero carries and agree (right for any h0, c0); from T = 2 the question's
gradients are wrong. The two classes share the forward and the driver; only ``backward_propagation`` differs.
``self.V``, ``self.Wi``, ... of the seed are the passed-in ``params``; the seed's
``cache = self.forward_propagation(x)`` at the top of the backward is dropped (the driver already has it).
The seed computes no gradient of the initial state, so none is returned.
"""

from __future__ import annotations

import numpy as np

PARAM_NAMES = ("V", "Wi", "Wf", "Wo", "Wg", "Ui", "Uf", "Uo", "Ug")


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def softmax(z):
    e = np.exp(z - np.max(z))
    return e / np.sum(e)


class _Seed003LSTM:
    """Forward pass and driver shared by the question and the answer; subclasses add ``backward_propagation``."""

    def loss_and_grads(self, params, x, y, h0, c0):
        """Forward token ids ``x`` (T,) from ``h0, c0``, score against ``y`` (T,), run the seed's backward.

        Returns ``(loss, grads, (hT, cT))`` with ``loss = sum_t -log y[t, target_t]`` and the 9 gradients.
        """
        cache = self.forward_propagation(params, x, h0, c0)
        T = len(y)
        loss = -float(np.sum(np.log(cache["y"][np.arange(T), y])))
        dV, dWi, dWf, dWo, dWg, dUi, dUf, dUo, dUg = self.backward_propagation(params, x, y, cache)
        grads = dict(V=dV, Wi=dWi, Wf=dWf, Wo=dWo, Wg=dWg, Ui=dUi, Uf=dUf, Uo=dUo, Ug=dUg)
        return loss, grads, (cache["h"][T - 1].copy(), cache["c"][T - 1].copy())

    def forward_propagation(self, params, x, h0, c0):
        """The forward the seed's backward reads: per-step arrays of T rows, states of T + 1 rows (-1: initial)."""
        Ui, Uf, Uo, Ug = params["Ui"], params["Uf"], params["Uo"], params["Ug"]
        Wi, Wf, Wo, Wg, V = params["Wi"], params["Wf"], params["Wo"], params["Wg"], params["V"]
        T = len(x)
        hidden_dim = Wi.shape[0]
        # h[-1], c[-1] hold the initial state, so h[t-1], c[t-1] at t = 0 are h0, c0
        h = np.zeros((T + 1, hidden_dim))
        c = np.zeros((T + 1, hidden_dim))
        h[-1], c[-1] = h0, c0
        i, f, o, g, ct = (np.zeros((T, hidden_dim)) for _ in range(5))
        y = np.zeros((T, V.shape[0]))
        for t in np.arange(T):
            i[t] = sigmoid(Ui[:, x[t]] + Wi.dot(h[t - 1]))
            f[t] = sigmoid(Uf[:, x[t]] + Wf.dot(h[t - 1]))
            o[t] = sigmoid(Uo[:, x[t]] + Wo.dot(h[t - 1]))
            g[t] = np.tanh(Ug[:, x[t]] + Wg.dot(h[t - 1]))
            c[t] = f[t] * c[t - 1] + i[t] * g[t]
            ct[t] = np.tanh(c[t])
            h[t] = o[t] * ct[t]
            y[t] = softmax(V.dot(h[t]))
        return {"y": y, "h": h, "c": c, "ct": ct, "i": i, "f": f, "o": o, "g": g}

    # what the seed's "# ..." sets up before its loop
    def _zero_grads(self, params):
        """Zero gradients in the order the seed returns them: dV, dWi, dWf, dWo, dWg, dUi, dUf, dUo, dUg."""
        return [np.zeros_like(params[name]) for name in PARAM_NAMES]

    def _step_deltas(self, params, T):
        """Zero per-step deltas do, dct, di, df, dg, diga, dfga, doga, dgga, each of shape (T, H)."""
        return [np.zeros((T, params["Wi"].shape[0])) for _ in range(9)]

    def backward_propagation(self, params, x, y, cache):
        raise NotImplementedError


class Seed003Answer(_Seed003LSTM):
    """The answer's ``backward_propagation`` (a correct BPTT)."""

    def backward_propagation(self, params, x, y, cache):
        V, Wi, Wf, Wo, Wg = params["V"], params["Wi"], params["Wf"], params["Wo"], params["Wg"]
        h, c, ct, i, f, o, g = (cache[k] for k in ("h", "c", "ct", "i", "f", "o", "g"))
        # T - the length of the sequence
        T = len(y)
        dV, dWi, dWf, dWo, dWg, dUi, dUf, dUo, dUg = self._zero_grads(params)
        do, dct, di, df, dg, diga, dfga, doga, dgga = self._step_deltas(params, T)
        hidden_dim = Wi.shape[0]

        # delta for output layer
        dy = cache["y"].copy()
        dy[np.arange(len(y)), y] -= 1.0  # softmax loss gradient
        dhtmp = np.zeros((1, hidden_dim))
        dh_prev = np.zeros((1, hidden_dim))
        dctmp = np.zeros((1, hidden_dim))

        for t in np.arange(T)[::-1]:
            dV += np.outer(dy[t], h[t].T)
            dhtmp = V.T.dot(dy[t]) + dh_prev

            # add to gradients at each previous step
            do[t] = dhtmp * ct[t]
            dct[t] = dhtmp * o[t]

            dctmp += dct[t] * (1.0 - ct[t] ** 2)

            di[t] = dctmp * g[t]
            df[t] = dctmp * c[t - 1]
            dg[t] = dctmp * i[t]

            # backprop activation functions
            diga[t] = di[t] * i[t] * (1.0 - i[t])
            dfga[t] = df[t] * f[t] * (1.0 - f[t])
            doga[t] = do[t] * o[t] * (1.0 - o[t])
            dgga[t] = dg[t] * (1.0 - g[t] ** 2)

            # backprop matrix multiply
            dWi += np.outer(diga[t], h[t - 1])
            dWf += np.outer(dfga[t], h[t - 1])
            dWo += np.outer(doga[t], h[t - 1])
            dWg += np.outer(dgga[t], h[t - 1])

            dUi[:, x[t]] += diga[t]
            dUf[:, x[t]] += dfga[t]
            dUo[:, x[t]] += doga[t]
            dUg[:, x[t]] += dgga[t]

            # update deltas for next step
            # here dh is accumulated as shared variable
            dh_prev = np.dot(Wi.T, diga[t])
            dh_prev += np.dot(Wf.T, dfga[t])
            dh_prev += np.dot(Wo.T, doga[t])
            dh_prev += np.dot(Wg.T, dgga[t])
            dctmp = dctmp * f[t]

        return [dV, dWi, dWf, dWo, dWg, dUi, dUf, dUo, dUg]


class Seed003Question(_Seed003LSTM):
    """The question's ``backward_propagation``, bugs included (wrong from T = 2 on)."""

    def backward_propagation(self, params, x, y, cache):
        V, Wi = params["V"], params["Wi"]
        h, c, ct, i, f, o, g = (cache[k] for k in ("h", "c", "ct", "i", "f", "o", "g"))
        # T - the length of the sequence
        T = len(y)
        dV, dWi, dWf, dWo, dWg, dUi, dUf, dUo, dUg = self._zero_grads(params)
        do, dct, di, df, dg, diga, dfga, doga, dgga = self._step_deltas(params, T)
        hidden_dim = Wi.shape[0]

        # delta for output layer
        dy = cache["y"].copy()
        dy[np.arange(len(y)), y] -= 1.0  # softmax loss gradient
        dhtmp = np.zeros((1, hidden_dim))
        dctmp = np.zeros((1, hidden_dim))  # BUG (seed): never reset for the next t

        for t in np.arange(T)[::-1]:
            dV += np.outer(dy[t], h[t].T)
            dhtmp = V.T.dot(dy[t])

            for bptt_step in np.arange(0, t + 1)[::-1]:  # BUG (seed): the extra inner loop
                # add to gradients at each previous step
                do[bptt_step] = dhtmp * ct[bptt_step]
                dct[bptt_step] = dhtmp * o[bptt_step]

                dctmp += dct[bptt_step] * (1.0 - ct[bptt_step] ** 2)

                di[bptt_step] = dctmp * g[bptt_step]
                df[bptt_step] = dctmp * c[bptt_step - 1]
                dg[bptt_step] = dctmp * i[bptt_step]

                # backprop activation functions
                diga[bptt_step] = di[bptt_step] * i[bptt_step] * (1.0 - i[bptt_step])
                dfga[bptt_step] = df[bptt_step] * f[bptt_step] * (1.0 - f[bptt_step])
                doga[bptt_step] = do[bptt_step] * o[bptt_step] * (1.0 - o[bptt_step])
                dgga[bptt_step] = dg[bptt_step] * (1.0 - g[bptt_step] ** 2)

                # backprop matrix multiply
                dWi += np.outer(diga[bptt_step], h[bptt_step - 1])
                dWf += np.outer(dfga[bptt_step], h[bptt_step - 1])
                dWo += np.outer(doga[bptt_step], h[bptt_step - 1])
                dWg += np.outer(dgga[bptt_step], h[bptt_step - 1])

                dUi[:, x[bptt_step]] += diga[bptt_step]
                dUf[:, x[bptt_step]] += dfga[bptt_step]
                dUo[:, x[bptt_step]] += doga[bptt_step]
                dUg[:, x[bptt_step]] += dgga[bptt_step]

                # update deltas for next step
                # here dh is accumulated as shared variable
                dhtmp = np.dot(Wi, diga[bptt_step])  # BUG (seed): input gate only, and Wi instead of Wi.T
                # dhtmp += np.dot(self.Wf, dfga[bptt_step]) <- is it needed to accumulate other dhtmp's?
                # dhtmp += np.dot(self.Wo, doga[bptt_step])
                # dhtmp += np.dot(self.Wg, dgga[bptt_step])
                dctmp = dctmp * f[bptt_step]

        return [dV, dWi, dWf, dWo, dWg, dUi, dUf, dUo, dUg]

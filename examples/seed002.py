"""Seed 002: "my LSTM's gradient check fails (1e-1 to 1e-2), and it depends heavily on the random seed".

Source: seed 002 (a question whose gradient check fails), its ``lstm``, ``dlstm``, ``lstm_loss`` and ``dlstm_loss``
(a sine learner). Layout: ``layout=seed002``. Dense input; 1-D vectors used as ``np.dot(xh, W) + b``.

Faithful, line by line (the seed's names): ``xh = np.concatenate([inp, h_old])`` over the gate matrices
``Wf, Wi, Wg, Wo`` (x_n + h_n, h_n), ``y = np.dot(h, Wy) + by``; ``dlstm`` with every line in its order; the loss
of ``lstm_loss``, ``sum_t np.mean((y - target) ** 2)``; and ``dlstm_loss``'s reversed loop with
``dy = 2 * (out - target)``. ``init_params`` reproduces the seed's setup (N(0, 1) weights scaled by
``sqrt(2 / (fan_in + fan_out))``, biases N(0, 1) * 0.1) with the given generator, in the seed's draw order.

The cell maths is right, including the line the author doubted:
``df = c_old * dc * f_sigm * (1 - f_sigm)  # ERROR FIXED: ??? c_old -> c?, c->c_old?`` (``c_old`` is correct).
One real mismatch is kept on purpose:

- ``dy = 2 * (out - target)`` is the gradient of ``np.sum((y - target) ** 2)``, but ``lstm_loss`` takes
  ``np.mean`` over the outputs: with o_n = K outputs the returned gradients are K times the gradient of the
  returned loss (exact for K = 1, the seed's own setting).

The driver was already right (state threaded through ``lstm``, gradients summed over the steps, ``dh``, ``dc``
starting at zero after the last step) and is used as it is; ``dlstm_loss`` now also returns the ``dh``, ``dc``
left after its loop, the gradients of the initial state, as ``"h0"`` and ``"c0"``. The seed's failure was its
gradient *check*: ``check_grad`` overwrote ``h, c`` with the final state of the unperturbed pass
(``y, outputs, loss, h, c, caches = f(params, h, c, inputs, targets)``) and then started every perturbed pass
``f(params, h, c, In, Target)`` from that state, not from the zeros the analytic gradient was computed from.
"""

from __future__ import annotations

import numpy as np

PARAM_NAMES = ("Wf", "Wi", "Wg", "Wo", "Wy", "bf", "bi", "bg", "bo", "by")


def lstm(params, inp, h_old, c_old):
    Wf, Wi, Wg, Wo, Wy = params["Wf"], params["Wi"], params["Wg"], params["Wo"], params["Wy"]
    bf, bi, bg, bo, by = params["bf"], params["bi"], params["bg"], params["bo"], params["by"]

    xh = np.concatenate([inp, h_old])
    f = np.dot(xh, Wf) + bf
    f_sigm = 1 / (1 + np.exp(-f))

    i = np.dot(xh, Wi) + bi
    i_sigm = 1 / (1 + np.exp(-i))

    g = np.dot(xh, Wg) + bg  # C-tilde or C-bar in the literature
    g_tanh = np.tanh(g)

    o = np.dot(xh, Wo) + bo
    o_sigm = 1 / (1 + np.exp(-o))

    c = f_sigm * c_old + i_sigm * g_tanh

    c_tanh = np.tanh(c)
    h = o_sigm * c_tanh

    y = np.dot(h, Wy) + by  # NOTE: this is a dense layer bolted on after a normal LSTM

    cache = (xh, f, f_sigm, i, i_sigm, g, g_tanh, o, o_sigm, c, c_tanh, c_old, h)
    return y, h, c, cache


def dlstm(params, dy, dh_next, dc_next, cache):
    Wf, Wi, Wg, Wo, Wy = params["Wf"], params["Wi"], params["Wg"], params["Wo"], params["Wy"]
    xh, f, f_sigm, i, i_sigm, g, g_tanh, o, o_sigm, c, c_tanh, c_old, h = cache

    dby = dy.copy()
    dWy = np.outer(h, dy)
    dh = np.dot(dy, Wy.T) + dh_next.copy()
    do = c_tanh * dh * o_sigm * (1 - o_sigm)
    dc = dc_next.copy() + o_sigm * dh * (1 - c_tanh**2)  # TODO: copy?
    dg = i_sigm * dc * (1 - g_tanh**2)
    di = g_tanh * dc * i_sigm * (1 - i_sigm)
    df = c_old * dc * f_sigm * (1 - f_sigm)  # ERROR FIXED: ??? c_old -> c?, c->c_old?

    dWo = np.outer(xh, do)
    dbo = do
    dXo = np.dot(do, Wo.T)
    dWg = np.outer(xh, dg)
    dbg = dg
    dXg = np.dot(dg, Wg.T)
    dWi = np.outer(xh, di)
    dbi = di
    dXi = np.dot(di, Wi.T)
    dWf = np.outer(xh, df)
    dbf = df
    dXf = np.dot(df, Wf.T)

    dX = dXo + dXg + dXi + dXf
    dh_next = dX[-h.size :]
    dc_next = f_sigm * dc

    dparams = dict(Wf=dWf, Wi=dWi, Wg=dWg, Wo=dWo, Wy=dWy, bf=dbf, bi=dbi, bg=dbg, bo=dbo, by=dby)
    return dparams, dh_next, dc_next


def lstm_loss(params, h, c, inputs, targets):
    loss = 0
    outputs = []
    caches = []
    for inp, target in zip(inputs, targets, strict=True):
        y, h, c, cache = lstm(params, inp, h, c)
        loss += np.mean((y - target) ** 2)
        outputs.append(y)
        caches.append(cache)
    loss = loss  # / inputs.shape[0]
    return y, outputs, loss, h, c, caches


def dlstm_loss(params, inputs, targets, outputs, caches):
    """The seed's ``dlstm_loss``; also returns the final ``dh, dc`` (the seed returned ``dparams`` only)."""
    h_shape = caches[0][-1].shape
    dparams = {k: np.zeros_like(v) for k, v in params.items()}
    dh = np.zeros(h_shape)
    dc = np.zeros(h_shape)
    for _inp, out, target, cache in reversed(list(zip(inputs, outputs, targets, caches, strict=True))):
        dy = 2 * (out - target)  # gradient of the sum over outputs; lstm_loss takes their mean
        dps, dh, dc = dlstm(params, dy, dh, dc, cache)
        for dpk, dpv in dps.items():
            dparams[dpk] += dpv
    return dparams, dh, dc


class Seed002LSTM:
    """Seed 002's ``lstm_loss`` / ``dlstm_loss`` behind the model contract (dense inputs, summed MSE)."""

    def init_params(self, rng, input_dim, hidden, output_dim):
        """The seed's setup: N(0, 1) weights, Xavier-scaled in place; biases N(0, 1) * 0.1."""
        x_n, h_n, o_n = input_dim, hidden, output_dim
        params = dict(
            Wf=rng.normal(size=(x_n + h_n, h_n)),
            Wi=rng.normal(size=(x_n + h_n, h_n)),
            Wg=rng.normal(size=(x_n + h_n, h_n)),
            Wo=rng.normal(size=(x_n + h_n, h_n)),
            Wy=rng.normal(size=(h_n, o_n)),
            bf=np.zeros(h_n) + rng.normal(size=h_n) * 0.1,
            bi=np.zeros(h_n) + rng.normal(size=h_n) * 0.1,
            bg=np.zeros(h_n) + rng.normal(size=h_n) * 0.1,
            bo=np.zeros(h_n) + rng.normal(size=h_n) * 0.1,
            by=np.zeros(o_n) + rng.normal(size=o_n) * 0.1,
        )
        for name in ["Wf", "Wi", "Wg", "Wo", "Wy"]:
            W = params[name]
            W *= np.sqrt(2 / (W.shape[0] + W.shape[1]))  # Xavier initialization
        for name in params:
            params[name] = params[name].astype("float64")
        return params

    def loss_and_grads(self, params, x, y, h0, c0):
        """Forward ``x`` (T, D) from ``h0, c0``, score it against ``y`` (T, K), backpropagate through time.

        Returns ``(loss, grads, (hT, cT))``: the seed's ``sum_t mean_k`` squared error, its gradients (those of
        ``sum_t sum_k``) plus ``"h0"`` and ``"c0"``, and the final state.
        """
        _, outputs, loss, h, c, caches = lstm_loss(params, h0, c0, x, y)
        dparams, dh, dc = dlstm_loss(params, x, y, outputs, caches)
        grads = {name: dparams[name] for name in PARAM_NAMES}
        grads["h0"], grads["c0"] = dh, dc
        return float(loss), grads, (h, c)

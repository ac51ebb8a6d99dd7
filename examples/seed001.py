"""Seed 001: the LSTM of the blog post "基于NumPy构建LSTM模块并进行实例应用" (fitting y = x^2).

Source: seed 001 (a blog post fitting y = x^2), its ``HiddenLayer`` and ``OutputLayer`` maths.
Layout: ``layout=seed001``. Dense input; column vectors.

Faithful, formula by formula (the blog's names):

- ``HiddenLayer.forward``: ``Fgate = sigmoid(w_f @ x + v_f @ h_pre + b_f)``, likewise ``Igate``, ``Ogate``,
  ``Ggate = tanh(w_g @ x + v_g @ h_pre + b_g)``, ``c_cur = Fgate * c_pre + Igate * Ggate``,
  ``h_cur = Ogate * tanh(c_cur)``; ``OutputLayer.forward``: ``y = w_h @ h_cur + b_h`` (no softmax);
- the loss of section 3.1, ``E = 0.5 * (y - y_train) ** 2``, summed over outputs and timesteps;
- ``OutputLayer.backward``: ``delta = y - train_data``, ``grad_wh = delta @ h_cur.T``,
  ``grad_hcur = w_h.T @ delta``, ``grad_bh = delta``;
- ``HiddenLayer.backward``: every formula verbatim, including its known-wrong carry (below).

The known bug of the maths, kept:

- ``grad_hpre = grad_ccur * (v_f.T @ (c_pre*Fgate*(1-Fgate)) + v_g.T @ (Igate*(1-Ggate*Ggate))
  + v_i.T @ (Ggate*Igate*(1-Igate)))``: the gradient sent to h_{t-1} multiplies ``grad_ccur`` elementwise
  with a sum of ``v.T @ (local derivative)`` instead of taking ``v.T @ (grad_ccur * local derivative)``, and it
  has no output-gate path (``v_o.T @ (grad_hcur * tanh(c_cur) * Ogate * (1 - Ogate))`` is missing). Every
  weight gradient of one step is right given correct ``grad_hcur`` and ``grad_cnext``, so at T = 1 all
  parameter gradients are right (with any h0, c0) and only ``"h0"`` is wrong; from T = 2 on the wrong carry
  corrupts everything before the last step.

What the driver (``loss_and_grads``) does differently from the blog's training loop:

- the blog runs the last two timesteps outside its loop and seeds ``gradc_data[T]`` with
  ``(1 - c_data[T] * c_data[T])``, i.e. 1 - c^2 instead of 1 - tanh(c)^2, and never runs
  ``HiddenLayer.backward`` for the last step; here every step goes through ``HiddenLayer.backward``;
- the blog passes ``gradh_data[t + 1]`` as ``grad_hcur``: the carry ``grad_hpre`` from step t + 1, or (at
  t = T - 2) the output layer's ``w_h.T @ delta``, never their sum; here ``grad_hcur = w_h.T @ delta_t +
  grad_hpre(t + 1)``, with ``grad_hpre``, ``grad_cnext`` and ``Fgate_next`` zero after the last step;
- the blog's ``backward`` methods assign ``self.grad_* = ...``, so ``step()`` only ever sees one timestep's
  gradients; here they are summed over all timesteps.

``grad_hpre`` of step 0 is the blog's gradient of the initial hidden state and is returned as ``"h0"``; the
blog computes no gradient of c0, so none is returned. No ``init_params``: the tool initialises the weights.
"""

from __future__ import annotations

import numpy as np

GATE_PARAMS = ("w_f", "w_i", "w_g", "w_o", "v_f", "v_i", "v_g", "v_o", "b_f", "b_i", "b_g", "b_o")


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


class BlogLSTM:
    """The blog's hidden and output layers behind the model contract (dense inputs, 0.5 * squared error)."""

    def loss_and_grads(self, params, x, y, h0, c0):
        """Forward ``x`` (T, D), score it against ``y`` (T, K), backpropagate through time.

        Returns ``(E, grads, (hT, cT))`` with ``E = sum_t 0.5 * sum_k (y_t - target_t) ** 2``, the blog's
        gradients summed over timesteps (plus ``"h0"``), and the final state as (H,) arrays.
        """
        T = len(x)
        H = params["v_f"].shape[0]
        xs = [np.reshape(x_t, (-1, 1)) for x_t in x]
        targets = [np.reshape(y_t, (-1, 1)) for y_t in y]
        # index t + 1 holds the state after step t, index 0 the initial state (the blog's h_data, c_data)
        h_data = [np.reshape(h0, (H, 1))]
        c_data = [np.reshape(c0, (H, 1))]
        gates, ys = [], []
        for t in range(T):
            h_cur, c_cur, gate = self.hidden_forward(params, xs[t], h_data[t], c_data[t])
            h_data.append(h_cur)
            c_data.append(c_cur)
            gates.append(gate)
            ys.append(self.output_forward(params, h_cur))
        E = sum(0.5 * float(np.sum((ys[t] - targets[t]) ** 2)) for t in range(T))

        grads = {name: np.zeros_like(params[name]) for name in (*GATE_PARAMS, "w_h", "b_h")}
        grad_hnext = np.zeros((H, 1))  # grad_hpre handed back by step t + 1 (nothing after the last step)
        grad_cnext = np.zeros((H, 1))  # grad_ccur of step t + 1
        Fgate_next = np.zeros((H, 1))  # Fgate of step t + 1
        for t in reversed(range(T)):
            grad_wh, grad_hout, grad_bh = self.output_backward(params, ys[t], h_data[t + 1], targets[t])
            grads["w_h"] += grad_wh
            grads["b_h"] += grad_bh
            grad_hcur = grad_hout + grad_hnext  # the blog passes only one of the two
            grad_ccur, grad_hpre, step_grads = self.hidden_backward(
                params, *gates[t], xs[t], grad_cnext, Fgate_next, grad_hcur, c_data[t + 1], c_data[t], h_data[t]
            )
            for name, value in step_grads.items():
                grads[name] += value
            grad_hnext, grad_cnext, Fgate_next = grad_hpre, grad_ccur, gates[t][0]

        grads["h0"] = grad_hnext.ravel()
        return E, grads, (h_data[T].ravel(), c_data[T].ravel())

    # --- the blog's layers, with the parameters passed in instead of held on self ----------------------------

    def hidden_forward(self, params, x, h_pre, c_pre):  # h_pre为h_t-1, c_pre为c_t-1
        """``HiddenLayer.forward``: returns ``h_cur, c_cur`` and the gates ``(Fgate, Igate, Ggate, Ogate)``."""
        p = params
        Fgate = sigmoid(np.dot(p["w_f"], x) + np.dot(p["v_f"], h_pre) + p["b_f"])
        Igate = sigmoid(np.dot(p["w_i"], x) + np.dot(p["v_i"], h_pre) + p["b_i"])
        Ggate = np.tanh(np.dot(p["w_g"], x) + np.dot(p["v_g"], h_pre) + p["b_g"])
        Ogate = sigmoid(np.dot(p["w_o"], x) + np.dot(p["v_o"], h_pre) + p["b_o"])
        c_cur = Fgate * c_pre + Igate * Ggate  # c_cur为c_t
        h_cur = Ogate * np.tanh(c_cur)
        return h_cur, c_cur, (Fgate, Igate, Ggate, Ogate)

    def output_forward(self, params, h_cur):  # h_cur为 h_t
        """``OutputLayer.forward``."""
        return np.dot(params["w_h"], h_cur) + params["b_h"]

    def output_backward(self, params, y, h_cur, train_data):
        """``OutputLayer.backward``: returns ``grad_wh, grad_hcur, grad_bh``."""
        delta = y - train_data
        grad_wh = np.dot(delta, h_cur.T)
        grad_hcur = np.dot(params["w_h"].T, delta)
        grad_bh = delta
        return grad_wh, grad_hcur, grad_bh

    def hidden_backward(
        self, params, Fgate, Igate, Ggate, Ogate, x, grad_cnext, Fgate_next, grad_hcur, c_cur, c_pre, h_pre
    ):
        """``HiddenLayer.backward``, formula by formula: returns ``grad_ccur, grad_hpre`` and the step's gradients."""
        v_f, v_i, v_g = params["v_f"], params["v_i"], params["v_g"]
        grad_ccur = grad_cnext * Fgate_next + grad_hcur * Ogate * (1 - np.tanh(c_cur) * np.tanh(c_cur))
        # BUG (blog): grad_hpre = grad_ccur*(v_f.T @ (c_pre*F*(1-F)) + v_g.T @ (I*(1-G*G)) + v_i.T @ (G*I*(1-I)))
        # -- grad_ccur multiplied outside the matrix products, and no output-gate path
        grad_hpre = grad_ccur * (
            np.dot(v_f.T, c_pre * Fgate * (1 - Fgate))
            + np.dot(v_g.T, Igate * (1 - Ggate * Ggate))
            + np.dot(v_i.T, Ggate * Igate * (1 - Igate))
        )
        grads = {
            "w_f": np.dot(grad_ccur * c_pre * Fgate * (1 - Fgate), x.T),  # 这里要注意矩阵的转置!!!
            "w_i": np.dot(grad_ccur * Ggate * Igate * (1 - Igate), x.T),
            "w_g": np.dot(grad_ccur * Igate * (1 - Ggate * Ggate), x.T),
            "w_o": np.dot(grad_hcur * np.tanh(c_cur) * Ogate * (1 - Ogate), x.T),
            "v_f": np.dot(grad_ccur * c_pre * Fgate * (1 - Fgate), h_pre.T),
            "v_i": np.dot(grad_ccur * Ggate * Igate * (1 - Igate), h_pre.T),
            "v_g": np.dot(grad_ccur * Igate * (1 - Ggate * Ggate), h_pre.T),
            "v_o": np.dot(grad_hcur * np.tanh(c_cur) * Ogate * (1 - Ogate), h_pre.T),
            "b_f": grad_ccur * c_pre * Fgate * (1 - Fgate),
            "b_i": grad_ccur * Ggate * Igate * (1 - Igate),
            "b_g": grad_ccur * Igate * (1 - Ggate * Ggate),
            "b_o": grad_hcur * np.tanh(c_cur) * Ogate * (1 - Ogate),
        }
        return grad_ccur, grad_hpre, grads

"""min-char-rnn, grown an LSTM cell: dicts keyed by t, column vectors, one big lossFun-like method.

Parameters (column-vector convention, ``W @ v``):

    Wxi, Wxf, Wxc, Wxo (H, D)       input weights of the input, forget, candidate (c) and output gates
    Whi, Whf, Whc, Who (H, H)       recurrent weights
    bi, bf, bc, bo (H, 1)           biases
    Why (K, H), by (K, 1)           output layer: ys[t] = Why @ hs[t] + by

Loss convention (as in min-char-rnn, summed over the sequence):

- token ids: ``loss = sum_t -log ps[t][targets[t]]``;
- floats: ``loss = sum_t 0.5 * sum((ys[t] - targets[t])**2)``.

Every mistake in the catalogue can be injected, including ``recurrent_not_transposed`` (the four recurrent
matrices are separate and square).
"""

from __future__ import annotations

import numpy as np

MISTAKES = {
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
    "recurrent_not_transposed",
    "output_weight_last_step",
    "not_summed_over_time",
    "loss_gradient",
}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def dsigmoid(y):
    """derivative of the sigmoid, given its output y = sigmoid(x)"""
    return y * (1.0 - y)


def dtanh(y):
    """derivative of tanh, given its output y = tanh(x)"""
    return 1.0 - y * y


class MinCharLSTM:
    def __init__(self, mistakes=()):
        unknown = set(mistakes) - MISTAKES
        if unknown:
            raise ValueError("unknown mistakes: %s" % sorted(unknown))  # noqa: UP031
        self.mistakes = set(mistakes)

    def init_params(self, rng, input_dim, hidden, output_dim):
        vocab_size, hidden_size = input_dim, hidden
        p = {}
        for k in "ifco":
            p["Wx" + k] = rng.normal(0, 0.3, (hidden_size, vocab_size))
            p["Wh" + k] = rng.normal(0, 0.3, (hidden_size, hidden_size))
            p["b" + k] = rng.normal(0.1, 0.3, (hidden_size, 1))
        p["Why"] = rng.normal(0, 0.3, (output_dim, hidden_size))
        p["by"] = rng.normal(0.1, 0.3, (output_dim, 1))
        return p

    def loss_and_grads(self, params, x, y, h0, c0):
        """inputs, targets are both sequences; hprev, cprev are the initial state (H,)."""
        bad = self.mistakes
        Wxi, Wxf, Wxc, Wxo = params["Wxi"], params["Wxf"], params["Wxc"], params["Wxo"]
        Whi, Whf, Whc, Who = params["Whi"], params["Whf"], params["Whc"], params["Who"]
        bi, bf, bc, bo = params["bi"], params["bf"], params["bc"], params["bo"]
        Why, by = params["Why"], params["by"]
        hidden_size, vocab_size = Wxi.shape
        inputs, targets = x, y
        chars = np.asarray(inputs).dtype.kind in "iu"

        xs, hs, cs, ps = {}, {}, {}, {}
        ig, fg, cg, og, ys = {}, {}, {}, {}, {}
        hs[-1] = np.array(h0, dtype=np.float64).reshape(hidden_size, 1)
        cs[-1] = np.array(c0, dtype=np.float64).reshape(hidden_size, 1)
        loss = 0.0
        # forward pass
        for t in range(len(inputs)):
            if chars:
                xs[t] = np.zeros((vocab_size, 1))  # encode in 1-of-k representation
                xs[t][inputs[t]] = 1
            else:
                xs[t] = np.array(inputs[t], dtype=np.float64).reshape(vocab_size, 1)
            ig[t] = sigmoid(np.dot(Wxi, xs[t]) + np.dot(Whi, hs[t - 1]) + bi)
            fg[t] = sigmoid(np.dot(Wxf, xs[t]) + np.dot(Whf, hs[t - 1]) + bf)
            cg[t] = np.tanh(np.dot(Wxc, xs[t]) + np.dot(Whc, hs[t - 1]) + bc)
            og[t] = sigmoid(np.dot(Wxo, xs[t]) + np.dot(Who, hs[t - 1]) + bo)
            cs[t] = fg[t] * cs[t - 1] + ig[t] * cg[t]
            hs[t] = og[t] * np.tanh(cs[t])
            ys[t] = np.dot(Why, hs[t]) + by  # unnormalized log probabilities / predictions
            if chars:
                ps[t] = np.exp(ys[t] - np.max(ys[t])) / np.sum(np.exp(ys[t] - np.max(ys[t])))  # probabilities
                loss += -np.log(ps[t][targets[t], 0])  # softmax (cross-entropy loss)
            else:
                target = np.reshape(targets[t], (-1, 1))
                loss += 0.5 * np.sum((ys[t] - target) ** 2)
        # backward pass: compute gradients going backwards
        dWxi, dWxf, dWxc, dWxo = (np.zeros_like(w) for w in (Wxi, Wxf, Wxc, Wxo))
        dWhi, dWhf, dWhc, dWho = (np.zeros_like(w) for w in (Whi, Whf, Whc, Who))
        dbi, dbf, dbc, dbo = (np.zeros_like(v) for v in (bi, bf, bc, bo))
        dWhy, dby = np.zeros_like(Why), np.zeros_like(by)
        dhnext = np.zeros_like(hs[0])
        dcnext = np.zeros_like(cs[0])
        last = len(inputs) - 1
        for t in reversed(range(len(inputs))):
            if chars:
                dy = np.copy(ps[t])
                if "loss_gradient" in bad:
                    dy[inputs[t]] -= 1  # backprop into y (to the input char: wrong)
                else:
                    dy[targets[t]] -= 1  # backprop into y
            else:
                dy = ys[t] - np.reshape(targets[t], (-1, 1))
                if "loss_gradient" in bad:
                    dy = -dy
            if "output_weight_last_step" in bad:
                if t == last:
                    dWhy = np.dot(dy, hs[t].T)
            else:
                dWhy += np.dot(dy, hs[t].T)
            dby += dy
            dh = np.dot(Why.T, dy)
            if "no_h_carry" not in bad:
                dh = dh + dhnext  # backprop into h
            do = dh * np.tanh(cs[t])
            if "tanh_prime_missing" in bad:
                dc = dh * og[t]
            elif "tanh_prime_from_h" in bad:
                dc = dh * og[t] * (1 - hs[t] ** 2)
            else:
                dc = dh * og[t] * (1 - np.tanh(cs[t]) ** 2)
            if "no_c_carry" not in bad:
                dc = dc + dcnext  # backprop into c
            di = dc * cg[t]
            df = dc * (cs[t] if "forget_from_c_t" in bad else cs[t - 1])
            dcc = dc * ig[t]
            if "sigmoid_of_activation" in bad:
                diraw = dsigmoid(sigmoid(ig[t])) * di
                dfraw = dsigmoid(sigmoid(fg[t])) * df
                doraw = dsigmoid(sigmoid(og[t])) * do
                dcraw = dtanh(np.tanh(cg[t])) * dcc
            else:
                diraw = dsigmoid(ig[t]) * di
                dfraw = dsigmoid(fg[t]) * df
                doraw = dsigmoid(og[t]) * do
                dcraw = dtanh(cg[t]) * dcc
            h_for_dWh = hs[t] if "dWh_from_h_t" in bad else hs[t - 1]
            dcraw_w = dc if "candidate_from_dc" in bad else dcraw
            dWxi += np.dot(diraw, xs[t].T)
            if "not_summed_over_time" in bad:
                dWxf = np.dot(dfraw, xs[t].T)
            else:
                dWxf += np.dot(dfraw, xs[t].T)
            dWxc += np.dot(dcraw_w, xs[t].T)
            dWxo += np.dot(doraw, xs[t].T)
            dWhi += np.dot(diraw, h_for_dWh.T)
            dWhf += np.dot(dfraw, h_for_dWh.T)
            dWhc += np.dot(dcraw_w, h_for_dWh.T)
            dWho += np.dot(doraw, h_for_dWh.T)
            dbi += diraw
            dbf += dfraw
            dbc += dcraw_w
            dbo += doraw
            if "recurrent_not_transposed" in bad:
                if "dh_prev_one_gate" in bad:
                    dhnext = np.dot(Whi, diraw)
                else:
                    dhnext = np.dot(Whi, diraw) + np.dot(Whf, dfraw) + np.dot(Whc, dcraw) + np.dot(Who, doraw)
            elif "dh_prev_one_gate" in bad:
                dhnext = np.dot(Whi.T, diraw)
            else:
                dhnext = np.dot(Whi.T, diraw) + np.dot(Whf.T, dfraw) + np.dot(Whc.T, dcraw) + np.dot(Who.T, doraw)
            dcnext = dc if "c_carry_without_forget" in bad else fg[t] * dc
        grads = dict(
            Wxi=dWxi, Wxf=dWxf, Wxc=dWxc, Wxo=dWxo,
            Whi=dWhi, Whf=dWhf, Whc=dWhc, Who=dWho,
            bi=dbi, bf=dbf, bc=dbc, bo=dbo,
            Why=dWhy, by=dby,
        )  # fmt: skip
        grads["h0"] = dhnext
        grads["c0"] = dcnext
        last_t = len(inputs) - 1
        return float(loss), grads, (hs[last_t].ravel(), cs[last_t].ravel())

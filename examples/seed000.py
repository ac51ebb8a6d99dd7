"""Seed 000: the ``Cell`` of "LSTM NumPy, loss, cell state, gradients, weights going NaN after ~250 iterations".

Source: seed 000 (a question: weights going NaN after ~250 iterations), the question's own ``Cell.feedforward`` and
``Cell.backpropagate`` (not the wiseodd blog code it quotes as "their" code). Layout: ``layout=seed000``.

Faithful, line by line (the seed's variable names, its ``from scipy.special import expit as sigmoid``, its
``dsigmoid``, ``dtanh``, ``softmax`` and ``cross_ent``):

- the forward: one-hot ``x`` of size n, ``g = concat((x, h_))`` (x first), ``it = sigmoid(dot(Wi.T, g) + bi)``
  and likewise ``ft``, ``ot``, ``ct = tanh(dot(Wc.T, g) + bc)``, ``c = ft * c_ + it * ct``, ``ht = ot * tanh(c)``,
  ``yt = dot(Wy.T, ht) + by``, ``p = softmax(yt)`` with column vectors throughout;
- the backward, ``backpropagate(y, ht1, ct1)`` with every line of the seed in its order, gradients added into
  the accumulators with ``+=`` as the seed does into ``self.rnn.dW*``;
- the loss: the seed's ``BPTT`` returns ``avg_loss``, the sum of ``cross_ent`` over the chunk divided by its
  length, and so does ``loss_and_grads``. Its gradients are those of the *sum* (nothing divides them by T), so
  they are T times the gradient of the loss it reports: a real finding of the seed, kept on purpose.

The known bugs of the cell, kept (each is marked ``# BUG`` where it happens):

- ``do = dsigmoid(ot) * do``, ``df = dsigmoid(ft) * df``, ``di = dsigmoid(it) * di``: ``dsigmoid(z)`` is
  ``sigmoid(z) * (1 - sigmoid(z))``, applied to the already-activated gates (should be ``ot * (1 - ot)``);
- ``dct = dtanh(ct) * dct``: ``dtanh(z) = 1 - tanh(z) ** 2`` on the already-activated candidate ``ct``
  (should be ``1 - ct ** 2``); the other ``dtanh(c)``, in ``dc = ot * dh * dtanh(c)``, is right (``c`` is the
  raw cell state);
- ``dWc += dot(g, dc.T)`` and ``dbc += dc``: the candidate's weight and bias gradients are built from ``dc``,
  the gradient of the cell state, instead of ``dct``, the gradient of the candidate's pre-activation (the seed
  itself uses ``dct`` one line later, in ``dxc = dot(Wc, dct)``);
- ``softmax(z) = exp(z) / sum(exp(z))``: not shifted by ``max(z)``, so it overflows to inf / inf = NaN once a
  logit passes ~709. Not a gradient bug, but the NaN the author saw.

What the driver (``loss_and_grads``) does differently from the seed's ``RNN.FeedForward`` / ``RNN.BPTT``:

- the seed feeds ``zip(Cells, range(len(inputs)))``, i.e. the positions 0, 1, 2, ... instead of the input
  characters; here every step gets its own token id ``x[t]``;
- the seed calls ``cell.feedforward(x, ht_, ct_)`` against the signature ``feedforward(self, x, c_, h_)``, so
  h and c trade places at every step; here they go in the signature's order;
- the seed starts each chunk's ``BPTT`` from the ``ht1, ct1`` the previous chunk's ``BPTT`` returned (the
  gradients of *that* chunk's initial state); here the carries start at zero after the last step;
- the seed's ``BPTT`` walks all ``RL`` cells even when the last chunk is shorter (indexing past its targets);
  here T is the input's length.

``dht1`` and ``dct1`` out of step 0 are the gradients of the initial state and are returned as ``"h0"`` and
``"c0"``.

Variants for the bench, each a small subclass overriding only the pieces it repairs (no second copy of the
maths): the base class routes the softmax, the two derivative pieces and the candidate's gradient source through
the methods ``softmax``, ``gate_derivative``, ``candidate_derivative`` and ``candidate_delta``.

- ``Seed000StableSoftmax`` (overrides ``softmax``): only the softmax repaired (shifted by its max); the
  derivative bugs stay.
- ``Seed000FixedDerivatives`` (overrides ``gate_derivative`` and ``candidate_derivative``): only the two
  derivative pieces repaired (``ot * (1 - ot)`` etc. for the gates, ``1 - ct ** 2`` for the candidate);
  ``dWc``/``dbc`` from ``dc`` (the ``candidate_from_dc`` bug) and the naive softmax stay.
- ``Seed000Repaired`` (a ``Seed000FixedDerivatives`` that also overrides ``candidate_delta``): the derivatives
  repaired and ``dWc += dot(g, dct.T)``, ``dbc += dct``; the author's softmax kept. Its gradients are exact for
  the summed cross-entropy; the loss it returns is that sum divided by T, as the seed's.
"""

from __future__ import annotations

import numpy as np

# Import logistic function that doesn't explode outside a 64 bit float
from scipy.special import expit as sigmoid

PARAM_NAMES = ("Wi", "Wf", "Wo", "Wc", "Wy", "bi", "bf", "bo", "bc", "by")


# derivative of sigmoid function
def dsigmoid(z):
    return sigmoid(z) * (1 - sigmoid(z))


# derivative of hyperbolic tangent
def dtanh(z):
    return 1 - np.tanh(z) ** 2


# probability function
def softmax(z):
    return np.exp(z) / np.sum(np.exp(z))  # BUG (seed): no shift by max(z); exp overflows, inf / inf = NaN


# cross entropy loss
def cross_ent(p, y):
    return -np.log(p[y])


class Seed000Cell:
    """The question's ``Cell``, bugs included, behind the model contract (token ids in, cross-entropy out)."""

    # --- the pieces the variants override -------------------------------------------------------------------

    def softmax(self, z):
        """The seed's ``softmax``: ``exp(z) / sum(exp(z))``, no shift."""
        return softmax(z)

    def gate_derivative(self, s):
        """sigma' as the seed takes it for a gate it holds *after* the sigmoid: ``dsigmoid(s)`` (BUG)."""
        return dsigmoid(s)

    def candidate_derivative(self, ct):
        """tanh' as the seed takes it for the candidate it holds *after* the tanh: ``dtanh(ct)`` (BUG)."""
        return dtanh(ct)

    def candidate_delta(self, dc, dct):
        """The vector the seed builds ``dWc`` and ``dbc`` from: ``dc`` (BUG; the candidate's own is ``dct``)."""
        return dc

    # --- the contract ---------------------------------------------------------------------------------------

    def init_params(self, rng, input_dim, hidden, output_dim):
        """The seed's ``RNN.__init__``: ``randn(z, d) / sqrt(z / 2)``, ``randn(d, n) / sqrt(d / 2)``, randn biases."""
        n, d = input_dim, hidden
        z = n + d
        params = {name: rng.standard_normal((z, d)) / np.sqrt(z / 2) for name in ("Wi", "Wf", "Wo", "Wc")}
        params["Wy"] = rng.standard_normal((d, output_dim)) / np.sqrt(d / 2)
        for name in ("bi", "bf", "bo", "bc"):
            params[name] = rng.standard_normal((d, 1))
        params["by"] = rng.standard_normal((output_dim, 1))
        return params

    def loss_and_grads(self, params, x, y, h0, c0):
        """Forward the chunk of token ids ``x`` (T,), score it against ``y`` (T,), backpropagate through time.

        Returns ``(avg_loss, grads, (hT, cT))``: the seed's mean cross-entropy over the chunk, the gradients of
        the *summed* cross-entropy (the seed's own convention) for the 10 parameters plus ``h0`` and ``c0``,
        and the final state as (H,) arrays.
        """
        d = params["Wi"].shape[1]
        ht_, ct_ = np.reshape(h0, (d, 1)), np.reshape(c0, (d, 1))
        steps = []
        for x_t in x:  # the seed: zip(Cells, range(len(inputs))) and feedforward(x, ht_, ct_), h and c swapped
            ht_, ct_, step = self.feedforward(params, x_t, ct_, ht_)
            steps.append(step)

        grads = {name: np.zeros_like(params[name]) for name in PARAM_NAMES}
        ht1, ct1 = np.zeros((d, 1)), np.zeros((d, 1))  # nothing flows in from after the last step
        avg_loss = 0
        for step, y_t in zip(reversed(steps), reversed(y), strict=True):
            loss, ht1, ct1 = self.backpropagate(params, grads, step, y_t, ht1, ct1)
            avg_loss += loss
        avg_loss /= len(steps)

        grads["h0"], grads["c0"] = ht1.ravel(), ct1.ravel()
        return float(np.squeeze(avg_loss)), grads, (ht_.ravel(), ct_.ravel())

    # --- the seed's cell ------------------------------------------------------------------------------------

    def feedforward(self, params, x, c_, h_):
        """Pass an input of size n, the previous hidden state(ht), and the previous cell state(c)

        Returns ``ht, c`` as the seed does, plus what the seed keeps on ``self`` for the backward.
        """
        Wi, Wf, Wo, Wc, Wy = params["Wi"], params["Wf"], params["Wo"], params["Wc"], params["Wy"]
        bi, bf, bo, bc, by = params["bi"], params["bf"], params["bo"], params["bc"], params["by"]
        d = h_.shape[0]
        n = Wi.shape[0] - d

        index = x  # one hot encoding
        x = np.zeros((n, 1))
        x[index] = 1
        g = np.concatenate((x, h_))  # input g is input x + previous hidden state

        it = sigmoid(np.dot(Wi.T, g) + bi)  # gate activations
        ft = sigmoid(np.dot(Wf.T, g) + bf)
        ot = sigmoid(np.dot(Wo.T, g) + bo)
        ct = np.tanh(np.dot(Wc.T, g) + bc)  # non linearity activation
        c = ft * c_ + it * ct  # cell state

        ht = ot * np.tanh(c)  # squashed hidden state
        yt = np.dot(Wy.T, ht) + by  # output state
        p = self.softmax(yt)  # call softmax, get probability

        step = dict(n=n, c_=c_, h_=h_, it=it, ft=ft, ot=ot, ct=ct, c=c, ht=ht, yt=yt, p=p, g=g)
        return ht, c, step

    def backpropagate(self, params, grads, step, y, ht1, ct1):
        """The seed's ``backpropagate(self, y, ht1, ct1)``; adds this step's gradients into ``grads``.

        Returns ``loss, dht1, dct1``: this step's cross-entropy and the gradients of its incoming h and c.
        """
        n = step["n"]
        Wi, Wf, Wo, Wc, Wy = params["Wi"], params["Wf"], params["Wo"], params["Wc"], params["Wy"]
        dWi, dWf, dWo, dWc, dWy = grads["Wi"], grads["Wf"], grads["Wo"], grads["Wc"], grads["Wy"]
        dbi, dbf, dbo, dbc, dby = grads["bi"], grads["bf"], grads["bo"], grads["bc"], grads["by"]
        c_ = step["c_"]
        it, ft, ot, ct = step["it"], step["ft"], step["ot"], step["ct"]
        c, ht, p = step["c"], step["ht"], step["p"]
        g = step["g"]

        dy = np.copy(p)
        dy[y] -= 1

        loss = cross_ent(p, y)

        dh = np.dot(Wy, dy) + ht1

        do = np.tanh(c) * dh
        do = self.gate_derivative(ot) * do  # BUG (seed): do = dsigmoid(ot) * do

        dc = ot * dh * dtanh(c)
        dc = dc + ct1

        df = c_ * dc
        df = self.gate_derivative(ft) * df  # BUG (seed): df = dsigmoid(ft) * df

        di = ct * dc
        di = self.gate_derivative(it) * di  # BUG (seed): di = dsigmoid(it) * di

        dct = it * dc
        dct = self.candidate_derivative(ct) * dct  # BUG (seed): dct = dtanh(ct) * dct

        dcw = self.candidate_delta(dc, dct)  # BUG (seed): dWc += dot(g, dc.T) and dbc += dc
        dWf += np.dot(g, df.T)
        dWi += np.dot(g, di.T)
        dWo += np.dot(g, do.T)
        dWc += np.dot(g, dcw.T)
        dWy += np.dot(ht, dy.T)

        dbf += df
        dbi += di
        dbo += do
        dbc += dcw
        dby += dy

        dxi = np.dot(Wi, di)
        dxf = np.dot(Wf, df)
        dxo = np.dot(Wo, do)
        dxc = np.dot(Wc, dct)

        dx = dxf + dxi + dxo + dxc

        dht1 = dx[n:]
        dct1 = ft * dc

        return loss, dht1, dct1


class Seed000StableSoftmax(Seed000Cell):
    """Seed 000 with only the softmax repaired: shifted by its max before ``exp``. The derivative bugs stay.

    The loss is still the seed's ``-log(p[y])``: no longer NaN for huge logits, but inf once ``p[y]`` underflows.
    """

    def softmax(self, z):
        e = np.exp(z - np.max(z))
        return e / np.sum(e)


class Seed000FixedDerivatives(Seed000Cell):
    """Seed 000 with the two derivative pieces repaired; ``dWc``/``dbc`` from ``dc`` and the naive softmax stay."""

    def gate_derivative(self, s):
        return s * (1 - s)  # sigma'(a) from s = sigma(a)

    def candidate_derivative(self, ct):
        return 1 - ct**2  # tanh'(a) from ct = tanh(a)


class Seed000Repaired(Seed000FixedDerivatives):
    """Seed 000 with every gradient bug repaired (derivatives and ``dWc += dot(g, dct.T)``, ``dbc += dct``).

    The author's naive softmax is kept, and so is the loss convention: the returned loss is the mean over the
    chunk, the gradients are those of the sum.
    """

    def candidate_delta(self, dc, dct):
        return dct

"""``MyLSTM`` written for whole batches: ``batched = True``, the same layout (``layout=my_lstm``), the same maths.

With ``batched = True`` the tool hands the code the whole batch at once: ``x`` (B, T, D) floats or (B, T) token ids,
``y`` (B, T, K) or (B, T), ``h0, c0`` (B, H); the code returns the batch-mean loss and gradients, ``"h0"``/``"c0"``
of shape (B, H) (each row the gradient of the batch-mean loss with respect to that row) and the final state as
two (B, H) arrays. Every step's matrix products then cover the batch, instead of one Python loop per sequence.

Per sequence the loss is ``MyLSTM``'s: the mean over t and k of (out - target)^2, or the mean over t of the
cross-entropy; over the batch, the mean of those.
"""

from __future__ import annotations

import numpy as np

from examples.my_lstm import GATES, MyLSTM, sigmoid


class MyLSTMBatched(MyLSTM):
    """One LSTM layer and an affine head over a whole batch, batch-first, with a hand-written BPTT."""

    batched = True

    def loss_and_grads(self, params, x, y, h0, c0):
        """Inputs: x (B, T, D) or token ids (B, T); y (B, T, K) or ids (B, T); h0, c0 (B, H).

        Returns (batch-mean loss, grads with the keys of params plus "h0", "c0" of shape (B, H), (hT, cT)).
        """
        W_out, b_out = params["W_out"], params["b_out"]
        tokens = np.issubdtype(np.asarray(x).dtype, np.integer)
        xs = np.eye(params["Wx_i"].shape[0])[x] if tokens else np.asarray(x, dtype=np.float64)  # (B, T, D)
        B, T, _ = xs.shape

        # forward, one step at a time for the whole batch
        h, c = np.array(h0, dtype=np.float64), np.array(c0, dtype=np.float64)
        cache, outs = [], []
        for t in range(T):
            a = {k: xs[:, t] @ params[f"Wx_{k}"] + h @ params[f"Wh_{k}"] + params[f"b_{k}"] for k in GATES}
            i, f, o, g = sigmoid(a["i"]), sigmoid(a["f"]), sigmoid(a["o"]), np.tanh(a["g"])
            c_next = f * c + i * g
            tanh_c = np.tanh(c_next)
            cache.append((xs[:, t], h, c, i, f, g, o, tanh_c))
            h, c = o * tanh_c, c_next
            outs.append(h @ W_out + b_out)
        out = np.stack(outs, axis=1)  # (B, T, K)

        # loss (mean over the batch of each sequence's loss) and its gradient with respect to the outputs
        if tokens:
            z = out - out.max(axis=2, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=2, keepdims=True))  # stable log-softmax
            rows, steps = np.arange(B)[:, None], np.arange(T)[None, :]
            loss = -logp[rows, steps, y].mean()
            dout = np.exp(logp)
            dout[rows, steps, y] -= 1.0  # softmax - onehot(y)
            dout /= B * T
        else:
            diff = out - y
            loss = np.mean(diff**2)
            dout = 2.0 * diff / diff.size

        # backward through time, the batch at once
        grads = {k: np.zeros_like(v) for k, v in params.items()}
        dh_next, dc_next = np.zeros_like(h), np.zeros_like(c)
        for t in reversed(range(T)):
            x_t, h_prev, c_prev, i, f, g, o, tanh_c = cache[t]
            h_t = o * tanh_c
            grads["W_out"] += h_t.T @ dout[:, t]  # head weights
            grads["b_out"] += dout[:, t].sum(axis=0, keepdims=True)  # head bias
            dh = dout[:, t] @ W_out.T + dh_next  # into h_t: from the head and from step t + 1
            dc = dc_next + dh * o * (1.0 - tanh_c**2)  # into c_t: through tanh(c_t) and from step t + 1
            da = {
                "i": dc * g * i * (1.0 - i),
                "f": dc * c_prev * f * (1.0 - f),
                "g": dc * i * (1.0 - g**2),
                "o": dh * tanh_c * o * (1.0 - o),
            }
            dh_next = np.zeros_like(h)
            for k in GATES:
                grads[f"Wx_{k}"] += x_t.T @ da[k]
                grads[f"Wh_{k}"] += h_prev.T @ da[k]
                grads[f"b_{k}"] += da[k].sum(axis=0, keepdims=True)
                dh_next += da[k] @ params[f"Wh_{k}"].T  # into h_{t-1}
            dc_next = dc * f  # into c_{t-1}

        grads["h0"], grads["c0"] = dh_next, dc_next
        return float(loss), grads, (h, c)

"""An LSTM written with PyTorch's parameter names (``nn.LSTM`` + ``nn.Linear``), in NumPy.

Parameters, as ``torch.nn.LSTM`` stores them for one layer, gate blocks stacked i, f, g, o along dim 0:

    weight_ih (4H, D), weight_hh (4H, H), bias_ih (4H,), bias_hh (4H,)      gates = W_ih x + b_ih + W_hh h + b_hh
    fc_weight (K, H), fc_bias (K,)                                          logits = fc_weight h + fc_bias

Loss convention (PyTorch's default ``reduction="mean"``):

- token ids: ``F.cross_entropy`` averaged over the T steps;
- floats: ``F.mse_loss``, the mean over all T * K squared errors.

``mistakes`` injects classic backward-pass errors by name (see ``MISTAKES``); ``recurrent_not_transposed`` is
not supported here (one fused ``weight_hh``, no separate per-gate square matrices) and raises ``ValueError``.
"""

from __future__ import annotations

import numpy as np

MISTAKES = frozenset(
    {
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
    }
)


def sigmoid(t):
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class TorchNamesLSTM:
    """``nn.LSTM(D, H)`` followed by ``nn.Linear(H, K)``, batch size 1, with a hand-derived backward."""

    def __init__(self, mistakes=()):
        mistakes = frozenset(mistakes)
        if "recurrent_not_transposed" in mistakes:
            raise ValueError("recurrent_not_transposed: weight_hh is one fused (4H, H) matrix in this style")
        unknown = mistakes - MISTAKES
        if unknown:
            raise ValueError(f"unknown mistakes: {sorted(unknown)}")
        self.mistakes = mistakes

    def init_params(self, rng, input_dim, hidden, output_dim):
        return {
            "weight_ih": rng.normal(0.0, 0.3, (4 * hidden, input_dim)),
            "weight_hh": rng.normal(0.0, 0.3, (4 * hidden, hidden)),
            "bias_ih": rng.normal(0.0, 0.3, 4 * hidden),
            "bias_hh": rng.normal(0.0, 0.3, 4 * hidden),
            "fc_weight": rng.normal(0.0, 0.3, (output_dim, hidden)),
            "fc_bias": rng.normal(0.0, 0.3, output_dim),
        }

    def loss_and_grads(self, params, x, y, h0, c0):
        bug = self.mistakes.__contains__
        weight_ih, weight_hh = params["weight_ih"], params["weight_hh"]
        bias_ih, bias_hh = params["bias_ih"], params["bias_hh"]
        fc_weight, fc_bias = params["fc_weight"], params["fc_bias"]
        hidden = weight_hh.shape[1]
        x = np.asarray(x)
        is_tokens = np.issubdtype(x.dtype, np.integer)
        inputs = np.eye(weight_ih.shape[1])[x] if is_tokens else x.astype(np.float64)
        seq_len = inputs.shape[0]

        # ---- forward (what autograd would record) ----
        h = np.array(h0, dtype=np.float64).reshape(hidden)
        c = np.array(c0, dtype=np.float64).reshape(hidden)
        saved = []
        logits = np.empty((seq_len, fc_weight.shape[0]))
        for t in range(seq_len):
            gates = weight_ih @ inputs[t] + bias_ih + weight_hh @ h + bias_hh
            in_gate, forget_gate, cell_gate, out_gate = np.split(gates, 4)
            in_gate, forget_gate, out_gate = sigmoid(in_gate), sigmoid(forget_gate), sigmoid(out_gate)
            cell_gate = np.tanh(cell_gate)
            c_new = forget_gate * c + in_gate * cell_gate
            h_new = out_gate * np.tanh(c_new)
            saved.append((inputs[t], h, c, in_gate, forget_gate, cell_gate, out_gate, c_new, h_new))
            h, c = h_new, c_new
            logits[t] = fc_weight @ h + fc_bias

        # ---- loss and grad_logits ----
        if is_tokens:
            logp = log_softmax(logits)
            loss = -logp[np.arange(seq_len), y].mean()
            grad_logits = np.exp(logp)
            if bug("loss_gradient"):
                grad_logits[np.arange(seq_len), x] -= 1.0
            else:
                grad_logits[np.arange(seq_len), y] -= 1.0
            grad_logits /= seq_len
        else:
            err = logits - y
            loss = np.mean(err**2)
            if bug("loss_gradient"):
                grad_logits = 2.0 * (y - logits) / err.size
            else:
                grad_logits = 2.0 * err / err.size

        # ---- backward ----
        grad = {name: np.zeros_like(value) for name, value in params.items()}
        grad_h_next = np.zeros(hidden)
        grad_c_next = np.zeros(hidden)
        f_rows = slice(hidden, 2 * hidden)
        g_rows = slice(2 * hidden, 3 * hidden)
        for t in range(seq_len - 1, -1, -1):
            x_t, h_prev, c_prev, in_gate, forget_gate, cell_gate, out_gate, c_t, h_t = saved[t]
            if bug("output_weight_last_step"):
                if t == seq_len - 1:
                    grad["fc_weight"] = np.outer(grad_logits[t], h_t)
            else:
                grad["fc_weight"] += np.outer(grad_logits[t], h_t)
            grad["fc_bias"] += grad_logits[t]

            grad_h = fc_weight.T @ grad_logits[t]
            if not bug("no_h_carry"):
                grad_h = grad_h + grad_h_next

            tanh_c = np.tanh(c_t)
            if bug("tanh_prime_missing"):
                grad_c = grad_h * out_gate
            elif bug("tanh_prime_from_h"):
                grad_c = grad_h * out_gate * (1.0 - h_t**2)
            else:
                grad_c = grad_h * out_gate * (1.0 - tanh_c**2)
            if not bug("no_c_carry"):
                grad_c = grad_c + grad_c_next

            grad_out_gate = grad_h * tanh_c
            grad_in_gate = grad_c * cell_gate
            grad_cell_gate = grad_c * in_gate
            grad_forget_gate = grad_c * (c_t if bug("forget_from_c_t") else c_prev)

            if bug("sigmoid_of_activation"):
                s_i, s_f, s_o = sigmoid(in_gate), sigmoid(forget_gate), sigmoid(out_gate)
                d_i, d_f, d_o = s_i * (1 - s_i), s_f * (1 - s_f), s_o * (1 - s_o)
                d_g = 1.0 - np.tanh(cell_gate) ** 2
            else:
                d_i, d_f, d_o = in_gate * (1 - in_gate), forget_gate * (1 - forget_gate), out_gate * (1 - out_gate)
                d_g = 1.0 - cell_gate**2
            grad_gates = np.concatenate(
                [grad_in_gate * d_i, grad_forget_gate * d_f, grad_cell_gate * d_g, grad_out_gate * d_o]
            )

            grad_gates_w = grad_gates
            if bug("candidate_from_dc"):
                grad_gates_w = grad_gates.copy()
                grad_gates_w[g_rows] = grad_c
            step_ih = np.outer(grad_gates_w, x_t)
            if bug("not_summed_over_time"):
                grad["weight_ih"][:hidden] += step_ih[:hidden]
                grad["weight_ih"][f_rows] = step_ih[f_rows]
                grad["weight_ih"][2 * hidden :] += step_ih[2 * hidden :]
            else:
                grad["weight_ih"] += step_ih
            grad["weight_hh"] += np.outer(grad_gates_w, h_t if bug("dWh_from_h_t") else h_prev)
            grad["bias_ih"] += grad_gates_w
            grad["bias_hh"] += grad_gates_w

            if bug("dh_prev_one_gate"):
                grad_h_next = weight_hh[:hidden].T @ grad_gates[:hidden]
            else:
                grad_h_next = weight_hh.T @ grad_gates
            grad_c_next = grad_c if bug("c_carry_without_forget") else grad_c * forget_gate

        grad["h0"] = grad_h_next
        grad["c0"] = grad_c_next
        return float(loss), grad, (h, c)

"""The LSTM of a "build an LSTM from scratch in NumPy" blog tutorial: row vectors, one matrix per gate.

Each step works on row vectors: ``x`` (1, D), ``h`` and ``c`` (1, H).

    i = sigmoid(x @ U_i + h @ W_i + bias_i)      U_* (D, H), W_* (H, H), bias_* (1, H)
    f = sigmoid(x @ U_f + h @ W_f + bias_f)
    g = tanh(x @ U_g + h @ W_g + bias_g)
    o = sigmoid(x @ U_o + h @ W_o + bias_o)
    c = f * c + i * g;   h = o * tanh(c)
    out = h @ V + d                              V (H, K), d (1, K)

Loss convention:

- token ids: softmax cross-entropy summed over the T steps;
- floats: the squared error summed over the K outputs and averaged over the T steps, ``sum((out - y)**2) / T``.

Every mistake in the catalogue can be injected (the recurrent matrices ``W_*`` are separate and square).
"""

from __future__ import annotations

import numpy as np

GATE_NAMES = ["i", "f", "g", "o"]
SIGMOID_GATES = ["i", "f", "o"]
KNOWN_MISTAKES = [
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
]


def sigmoid(z):
    z = np.clip(z, -500, 500)
    return 1 / (1 + np.exp(-z))


def softmax(z):
    e = np.exp(z - np.max(z))
    return e / e.sum()


class TutorialLSTM:
    """Step 1: forward_step. Step 2: the loss. Step 3: backward_step, over t = T-1 ... 0."""

    def __init__(self, mistakes=()):
        for mistake in mistakes:
            if mistake not in KNOWN_MISTAKES:
                raise ValueError(f"no such mistake: {mistake}")
        self.mistakes = list(mistakes)

    def _has(self, name):
        return name in self.mistakes

    def init_params(self, rng, input_dim, hidden, output_dim):
        params = {}
        for gate in GATE_NAMES:
            params["U_" + gate] = rng.normal(0, 0.3, size=(input_dim, hidden))
        for gate in GATE_NAMES:
            params["W_" + gate] = rng.normal(0, 0.3, size=(hidden, hidden))
        for gate in GATE_NAMES:
            params["bias_" + gate] = rng.uniform(-0.5, 0.5, size=(1, hidden)) + (1.0 if gate == "f" else 0.0)
        params["V"] = rng.normal(0, 0.3, size=(hidden, output_dim))
        params["d"] = rng.uniform(-0.5, 0.5, size=(1, output_dim))
        return params

    def forward_step(self, params, x, h, c):
        gates = {}
        for gate in GATE_NAMES:
            z = x @ params["U_" + gate] + h @ params["W_" + gate] + params["bias_" + gate]
            gates[gate] = sigmoid(z) if gate in SIGMOID_GATES else np.tanh(z)
        c_new = gates["f"] * c + gates["i"] * gates["g"]
        h_new = gates["o"] * np.tanh(c_new)
        out = h_new @ params["V"] + params["d"]
        memory = {"x": x, "h_prev": h, "c_prev": c, "h": h_new, "c": c_new, **gates}
        return h_new, c_new, out, memory

    def backward_step(self, params, d_out, dh_next, dc_next, memory, grads, is_last):
        x, h_prev, c_prev, h, c = memory["x"], memory["h_prev"], memory["c_prev"], memory["h"], memory["c"]
        i, f, g, o = memory["i"], memory["f"], memory["g"], memory["o"]

        # output layer
        if self._has("output_weight_last_step"):
            if is_last:
                grads["V"] = h.T @ d_out
        else:
            grads["V"] += h.T @ d_out
        grads["d"] += d_out

        # hidden and cell state
        dh = d_out @ params["V"].T
        if not self._has("no_h_carry"):
            dh += dh_next
        if self._has("tanh_prime_missing"):
            dc = dh * o
        elif self._has("tanh_prime_from_h"):
            dc = dh * o * (1 - h**2)
        else:
            dc = dh * o * (1 - np.tanh(c) ** 2)
        if not self._has("no_c_carry"):
            dc += dc_next

        # gates (after activation)
        d_gate = {
            "o": dh * np.tanh(c),
            "i": dc * g,
            "g": dc * i,
            "f": dc * (c if self._has("forget_from_c_t") else c_prev),
        }
        # gates (before activation)
        d_z = {}
        for gate in GATE_NAMES:
            value = memory[gate]
            if gate in SIGMOID_GATES:
                s = sigmoid(value) if self._has("sigmoid_of_activation") else value
                d_z[gate] = d_gate[gate] * s * (1 - s)
            else:
                t = np.tanh(value) if self._has("sigmoid_of_activation") else value
                d_z[gate] = d_gate[gate] * (1 - t**2)

        # parameters
        h_used = h if self._has("dWh_from_h_t") else h_prev
        for gate in GATE_NAMES:
            d_w = dc if (gate == "g" and self._has("candidate_from_dc")) else d_z[gate]
            if gate == "f" and self._has("not_summed_over_time"):
                grads["U_f"] = x.T @ d_w
            else:
                grads["U_" + gate] += x.T @ d_w
            grads["W_" + gate] += h_used.T @ d_w
            grads["bias_" + gate] += d_w

        # into the previous step
        dh_prev = np.zeros_like(h_prev)
        for gate in ["i"] if self._has("dh_prev_one_gate") else GATE_NAMES:
            if self._has("recurrent_not_transposed"):
                dh_prev += d_z[gate] @ params["W_" + gate]
            else:
                dh_prev += d_z[gate] @ params["W_" + gate].T
        dc_prev = dc if self._has("c_carry_without_forget") else dc * f
        return dh_prev, dc_prev

    def loss_and_grads(self, params, x, y, h0, c0):
        vocab = params["U_i"].shape[0]
        hidden = params["W_i"].shape[0]
        x = np.asarray(x)
        use_tokens = x.dtype.kind in "iu"
        seq = np.eye(vocab)[x] if use_tokens else np.asarray(x, dtype=np.float64)
        n_steps = len(seq)

        h = np.asarray(h0, dtype=np.float64).reshape(1, hidden)
        c = np.asarray(c0, dtype=np.float64).reshape(1, hidden)
        memories, outs = [], []
        for t in range(n_steps):
            h, c, out, memory = self.forward_step(params, seq[t : t + 1], h, c)
            memories.append(memory)
            outs.append(out)

        loss = 0.0
        d_outs = []
        for t in range(n_steps):
            if use_tokens:
                probs = softmax(outs[t])
                loss += -np.log(probs[0, y[t]])
                d_out = probs.copy()
                d_out[0, x[t] if self._has("loss_gradient") else y[t]] -= 1
            else:
                error = outs[t] - np.reshape(y[t], (1, -1))
                loss += np.sum(error**2) / n_steps
                d_out = (2 / n_steps) * (-error if self._has("loss_gradient") else error)
            d_outs.append(d_out)

        grads = {name: np.zeros_like(value) for name, value in params.items()}
        dh_next = np.zeros((1, hidden))
        dc_next = np.zeros((1, hidden))
        for t in reversed(range(n_steps)):
            dh_next, dc_next = self.backward_step(
                params, d_outs[t], dh_next, dc_next, memories[t], grads, is_last=(t == n_steps - 1)
            )
        grads["h0"] = dh_next
        grads["c0"] = dc_next
        return float(loss), grads, (h.ravel(), c.ravel())

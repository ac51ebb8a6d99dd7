"""Text from a trained character model: one token at a time from softmax(logits / temperature), the core's forward
carrying the state from each token to the next."""

from __future__ import annotations

import numpy as np

from lstm_exp.core.heads import log_softmax
from lstm_exp.core.lstm import lstm_forward


def sample_ids(params: dict, first: int, length: int, rng: np.random.Generator, temperature: float = 1.0) -> list:
    """``length`` token ids starting from ``first``, drawn with ``rng`` from the fused ``params`` (a vocabulary of
    ``Wx``'s rows)."""
    H = params["Wh"].shape[0]
    dtype = params["Wh"].dtype
    h, c = np.zeros((1, H), dtype=dtype), np.zeros((1, H), dtype=dtype)
    out = [int(first)]
    for _ in range(length - 1):
        hs, (h, c), _ = lstm_forward(params, np.array([[out[-1]]]), h, c)
        logits = (hs[0, 0] @ params["Wy"] + params["by"]) / temperature
        p = np.exp(log_softmax(logits.astype(np.float64)))
        out.append(int(rng.choice(len(p), p=p / p.sum())))
    return out

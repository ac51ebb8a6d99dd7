"""PyTorch on a benchmark case's weights: ``nn.LSTM`` + ``nn.Linear`` + loss + ``.backward()`` as one step.

torch is optional: without it ``torch`` is None here, and the benchmark leaves out its columns ("-").
Char input goes in as a precomputed one-hot float tensor (B, T, V), which is what nn.LSTM takes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from bench_cases import CHAR_VOCAB, BenchCase, Size

try:
    import torch
except ImportError:  # torch is optional: the table then shows "-" in its columns
    torch = None


def torch_modules(case: BenchCase, dtype) -> tuple:
    """nn.LSTM and nn.Linear carrying our weights (bias_hh = 0, so bias_ih + bias_hh = b)."""
    size, p = case.size, case.params
    lstm = torch.nn.LSTM(size.input_dim, size.hidden, batch_first=True).to(dtype)
    head = torch.nn.Linear(size.hidden, size.input_dim).to(dtype)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(p["Wx"].T.copy()))
        lstm.weight_hh_l0.copy_(torch.from_numpy(p["Wh"].T.copy()))
        lstm.bias_ih_l0.copy_(torch.from_numpy(p["b"]))
        lstm.bias_hh_l0.zero_()
        head.weight.copy_(torch.from_numpy(p["Wy"].T.copy()))
        head.bias.copy_(torch.from_numpy(p["by"]))
    return lstm, head


def torch_data(case: BenchCase, dtype) -> tuple:
    """Inputs and targets as torch wants them: one-hot (B, T, V) floats and flat class ids for char."""
    x, y = torch.from_numpy(case.x), torch.from_numpy(case.y)
    if case.size.token_ids:
        return torch.nn.functional.one_hot(x, CHAR_VOCAB).to(dtype), y.reshape(-1)
    return x.to(dtype), y.to(dtype)


def torch_loss(logits, target, size: Size):
    """Mean cross-entropy over B x T for char, mean squared error for sine (as ``reduction="mean"``)."""
    if size.loss == "xent":
        return torch.nn.functional.cross_entropy(logits.reshape(-1, size.input_dim), target)
    return torch.nn.functional.mse_loss(logits, target)


def torch_step(case: BenchCase, dtype) -> Callable[[], float]:
    """One torch training step on our weights; returns the loss. Gradients land in ``.grad``."""
    lstm, head = torch_modules(case, dtype)
    x, target = torch_data(case, dtype)
    weights = [*lstm.parameters(), *head.parameters()]
    state = tuple(torch.zeros(1, case.size.batch, case.size.hidden, dtype=dtype) for _ in range(2))

    def step() -> float:
        for weight in weights:
            weight.grad = None
        out, _ = lstm(x, state)
        value = torch_loss(head(out), target, case.size)
        value.backward()
        return value.item()

    step.modules = (lstm, head)
    return step


def torch_grads(step) -> dict:
    """Gradients of a torch step, in the core's layout."""
    lstm, head = step.modules
    return {
        "Wx": lstm.weight_ih_l0.grad.T.numpy(),
        "Wh": lstm.weight_hh_l0.grad.T.numpy(),
        "b": lstm.bias_ih_l0.grad.numpy(),
        "Wy": head.weight.grad.T.numpy(),
        "by": head.bias.grad.numpy(),
    }


def set_torch_threads(threads: int) -> None:
    """Pin torch's intra-op threads (a no-op without torch)."""
    if torch is not None:
        torch.set_num_threads(threads)


def describe_torch() -> str:
    """torch's version, BLAS, mkldnn and intra-op thread count (call only when torch is installed)."""
    blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    return (
        f"torch {torch.__version__}: BLAS={blas.group(1) if blas else '?'},"
        f" mkldnn={torch.backends.mkldnn.is_available()}, intra-op threads={torch.get_num_threads()}"
    )

"""An independent check of the core: PyTorch's nn.LSTM, on the same weights, gives the same loss, final state and
gradients (every parameter, dL/dh0 and dL/dc0), in float64, for both losses and both reductions.

PyTorch is optional (``pip install torch``); without it this file skips. The gradient checks prove the core against
its own loss; this proves the loss and the gate conventions (i, f, g, o; PyTorch's) are the ones everyone uses.
"""

import numpy as np
import pytest

from lstm_exp.core.network import loss_and_grads, param_shapes

torch = pytest.importorskip("torch")
B, T, D, H = 3, 6, 4, 5


def problem(loss: str, seed: int):
    rng = np.random.default_rng(seed)
    K = D if loss == "xent" else 2
    params = {k: rng.normal(0, 0.5, s) for k, s in param_shapes(D, H, K).items()}
    x = rng.integers(0, D, (B, T)) if loss == "xent" else rng.normal(size=(B, T, D))
    y = rng.integers(0, K, (B, T)) if loss == "xent" else rng.normal(size=(B, T, K))
    h0, c0 = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    return params, x, y, h0, c0


def torch_step(params, x, y, h0, c0, loss: str, reduction: str):
    """Loss, final state and gradients from nn.LSTM + a linear head; reduction as the core defines it."""
    lstm = torch.nn.LSTM(D, H, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(params["Wx"].T))
        lstm.weight_hh_l0.copy_(torch.from_numpy(params["Wh"].T))
        lstm.bias_ih_l0.copy_(torch.from_numpy(params["b"]))
        lstm.bias_hh_l0.zero_()
    Wy = torch.tensor(params["Wy"], requires_grad=True)
    by = torch.tensor(params["by"], requires_grad=True)
    h, c = (torch.tensor(s[None], requires_grad=True) for s in (h0, c0))
    inputs = torch.nn.functional.one_hot(torch.from_numpy(x), D).double() if loss == "xent" else torch.from_numpy(x)
    hs, (hT, cT) = lstm(inputs, (h, c))
    out = hs @ Wy + by
    if loss == "xent":
        per_step = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), torch.from_numpy(y).reshape(-1))
        value = per_step * (T if reduction == "sum" else 1)  # sum over time, mean over the batch
    else:
        sq = (out - torch.from_numpy(y)) ** 2
        value = sq.mean() if reduction == "mean" else sq.sum() / B  # sum over time and outputs, mean over the batch
    value.backward()
    grads = {
        "Wx": lstm.weight_ih_l0.grad.T,
        "Wh": lstm.weight_hh_l0.grad.T,
        "b": lstm.bias_ih_l0.grad,
        "Wy": Wy.grad,
        "by": by.grad,
        "h0": h.grad[0],
        "c0": c.grad[0],
    }
    return value.item(), (hT[0].detach().numpy(), cT[0].detach().numpy()), {k: v.numpy() for k, v in grads.items()}


@pytest.mark.parametrize("loss", ["mse", "xent"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_core_agrees_with_pytorch(loss, reduction):
    params, x, y, h0, c0 = problem(loss, seed=7)
    ours = loss_and_grads(params, x, y, h0, c0, loss=loss, reduction=reduction)
    value, state, grads = torch_step(params, x, y, h0, c0, loss, reduction)
    assert ours.loss == pytest.approx(value, rel=1e-12)
    for mine, theirs in zip(ours.state, state, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-14)
    mine = {**ours.grads, "h0": ours.dstate[0], "c0": ours.dstate[1]}
    for name, theirs in grads.items():
        np.testing.assert_allclose(mine[name], theirs, rtol=1e-9, atol=1e-12, err_msg=name)

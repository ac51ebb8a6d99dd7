"""The core's forward pass: the maths, the state it carries, dtypes and numerical safety."""

import warnings

import numpy as np
import pytest

from lstm_exp.core.lstm import init_state, lstm_backward, lstm_forward
from lstm_exp.core.network import loss_and_grads, param_shapes


def random_params(D, H, K=2, seed=0, scale=0.5, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0, scale, size=s).astype(dtype) for k, s in param_shapes(D, H, K).items()}


def reference_step(params, x_t, h, c):
    """One LSTM step written gate by gate, in the textbook form (PyTorch's equations)."""
    H = h.shape[1]
    a = x_t @ params["Wx"] + h @ params["Wh"] + params["b"]
    i = 1 / (1 + np.exp(-a[:, :H]))
    f = 1 / (1 + np.exp(-a[:, H : 2 * H]))
    g = np.tanh(a[:, 2 * H : 3 * H])
    o = 1 / (1 + np.exp(-a[:, 3 * H :]))
    c = f * c + i * g
    return o * np.tanh(c), c


def test_forward_equals_the_textbook_step_by_step_loop():
    B, T, D, H = 3, 7, 4, 5
    rng = np.random.default_rng(1)
    params = random_params(D, H)
    x = rng.normal(size=(B, T, D))
    h, c = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    hs, (hT, cT), _ = lstm_forward(params, x, h, c)
    for t in range(T):
        h, c = reference_step(params, x[:, t], h, c)
        np.testing.assert_allclose(hs[:, t], h, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(hT, h, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(cT, c, rtol=1e-13, atol=1e-14)


def test_sequence_forward_equals_chunks_with_carried_state():
    B, T, D, H = 2, 9, 3, 4
    rng = np.random.default_rng(2)
    params = random_params(D, H)
    x = rng.normal(size=(B, T, D))
    h0, c0 = init_state(B, H)
    hs, (hT, cT), _ = lstm_forward(params, x, h0, c0)
    state, chunks = (h0, c0), []
    for start in range(0, T, 4):  # truncated-BPTT style chunks of 4, 4, 1
        out, state, _ = lstm_forward(params, x[:, start : start + 4], *state)
        chunks.append(out)
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), hs)
    np.testing.assert_array_equal(state[0], hT)
    np.testing.assert_array_equal(state[1], cT)


def test_token_ids_equal_one_hot_inputs():
    B, T, V, H = 2, 5, 6, 3
    rng = np.random.default_rng(3)
    params = random_params(V, H)
    ids = rng.integers(0, V, size=(B, T))
    one_hot = np.eye(V)[ids]
    h0, c0 = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    hs_ids, _, cache_ids = lstm_forward(params, ids, h0, c0)
    hs_dense, _, cache_dense = lstm_forward(params, one_hot, h0, c0)
    np.testing.assert_allclose(hs_ids, hs_dense, rtol=1e-13)
    dhs = rng.normal(size=hs_ids.shape)
    g_ids, *_ = lstm_backward(dhs, cache_ids)
    g_dense, *_ = lstm_backward(dhs, cache_dense)
    for k in g_ids:
        np.testing.assert_allclose(g_ids[k], g_dense[k], rtol=1e-12, atol=1e-14)


def test_float32_agrees_with_float64():
    B, T, D, H = 4, 20, 3, 8
    rng = np.random.default_rng(4)
    p64 = random_params(D, H, K=2)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    x, y = rng.normal(size=(B, T, D)), rng.normal(size=(B, T, 2))
    h0, c0 = init_state(B, H)
    r64 = loss_and_grads(p64, x, y, h0, c0)
    r32 = loss_and_grads(p32, x, y, h0.astype(np.float32), c0.astype(np.float32))
    assert all(g.dtype == np.float32 for g in r32.grads.values())
    assert r32.state[0].dtype == np.float32
    assert r32.loss == pytest.approx(r64.loss, rel=1e-5)
    for k in p64:
        scale = np.abs(r64.grads[k]).max()
        np.testing.assert_allclose(r32.grads[k], r64.grads[k], atol=1e-5 * scale)


def test_extreme_preactivations_raise_no_warnings_and_stay_finite():
    B, T, D, H = 2, 4, 3, 4
    params = random_params(D, H)
    x = np.full((B, T, D), 1000.0)
    x[0] *= -1  # pre-activations of about +-1000 in both directions
    h0, c0 = init_state(B, H)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hs, (hT, cT), cache = lstm_forward(params, x, h0, c0)
        grads, dh0, dc0 = lstm_backward(np.ones_like(hs), cache)
    gates = cache.gates[..., [0, 1, 3]]  # the sigmoid gates reach their limits exactly
    assert set(np.unique(np.round(gates, 12))) <= {0.0, 1.0} and gates.min() == 0.0 and gates.max() == 1.0
    assert np.isfinite(hs).all() and np.isfinite(cT).all()
    assert all(np.isfinite(g).all() for g in grads.values())


def test_state_clip_bounds_the_cell_carry_and_is_off_by_default():
    B, T, D, H = 2, 30, 3, 6
    rng = np.random.default_rng(5)
    params = random_params(D, H, scale=2.0)
    x = rng.normal(size=(B, T, D))
    hs, state, cache = lstm_forward(params, x, *init_state(B, H))
    dhs = rng.normal(size=hs.shape) * 50
    free, dh0_free, _ = lstm_backward(dhs, cache)
    clipped, dh0, dc0 = lstm_backward(dhs, cache, state_clip=0.1)
    assert np.abs(dc0).max() <= 0.1  # dc0 = f * (a dc clamped to 0.1), and 0 < f < 1
    assert np.abs(dh0_free).max() > 0.1  # without the clamp the carry is larger
    assert not np.allclose(free["Wh"], clipped["Wh"])
    unclipped_again, *_ = lstm_backward(dhs, cache, state_clip=None)
    np.testing.assert_array_equal(unclipped_again["Wh"], free["Wh"])

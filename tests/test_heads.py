"""Losses: values, gradients, reductions and numerical stability."""

import warnings

import numpy as np
import pytest

from lstm_exp.core.heads import log_softmax, mse_loss, softmax_cross_entropy


def test_mse_mean_averages_over_every_element_like_pytorch():
    pred, target = np.ones((2, 3, 4)), np.zeros((2, 3, 4))
    loss, dpred = mse_loss(pred, target, "mean")
    assert loss == pytest.approx(1.0)
    np.testing.assert_allclose(dpred, 2.0 / 24)


def test_sum_reduction_sums_over_time_and_averages_over_batch():
    pred, target = np.ones((2, 3, 4)), np.zeros((2, 3, 4))
    assert mse_loss(pred, target, "sum")[0] == pytest.approx(12.0)
    logits = np.zeros((2, 5, 7))
    targets = np.zeros((2, 5), dtype=int)
    assert softmax_cross_entropy(logits, targets, "sum")[0] == pytest.approx(5 * np.log(7))
    assert softmax_cross_entropy(logits, targets, "mean")[0] == pytest.approx(np.log(7))


def test_cross_entropy_gradient_is_softmax_minus_one_hot():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 1, 4))
    _, d = softmax_cross_entropy(logits, np.array([[2]]), "mean")
    p = np.exp(logits[0, 0]) / np.exp(logits[0, 0]).sum()
    np.testing.assert_allclose(d[0, 0], p - np.eye(4)[2])


def test_log_softmax_is_stable_at_large_logits():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = log_softmax(np.array([1000.0, 0.0, -1000.0]))
        loss, d = softmax_cross_entropy(np.array([[[1000.0, 0.0, -1000.0]]]), np.array([[1]]))
    np.testing.assert_allclose(out, [0.0, -1000.0, -2000.0])
    assert loss == pytest.approx(1000.0) and np.isfinite(d).all()


def test_unknown_reduction_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="mean, sum"):
        mse_loss(np.zeros((1, 1, 1)), np.zeros((1, 1, 1)), "avg")

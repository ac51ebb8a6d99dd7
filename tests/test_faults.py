"""The deliberate seed bugs: each corrupts exactly the gradients its bug reaches, and the check sees it."""

import numpy as np
import pytest

from lstm_exp.faults import FAULTS, backward_for, candidate_from_dc, dh_prev_one_gate, sigmoid_of_activation
from lstm_exp.gradcheck import check_problem, tiny_problem
from lstm_exp.lstm import lstm_backward, lstm_forward
from lstm_exp.model import loss_and_grads

PROBLEMS = [("mse", False), ("xent", True)]  # dense inputs with MSE, token ids with cross-entropy
UPSTREAM_OF_H = {"Wx", "Wh", "b", "h0", "c0"}


def failed(rows):
    return {r.tensor for r in rows if not r.passed}


def small_problem(loss, T, token_ids):
    return tiny_problem(loss, T=T, D=3, H=2, K=2, seed=T, token_ids=token_ids)


@pytest.mark.parametrize("loss,token_ids", PROBLEMS)
@pytest.mark.parametrize(
    "fault,T,expected",
    [
        # wrong da at every t: all LSTM weights and h0; c0 only through the wrong dh carry, so only for T > 1
        (sigmoid_of_activation, 4, UPSTREAM_OF_H),
        (sigmoid_of_activation, 1, {"Wx", "Wh", "b", "h0"}),
        # only the weight gradients' g-columns read dc; the recurrence is right, so h0 and c0 are too
        (candidate_from_dc, 4, {"Wx", "Wh", "b"}),
        (candidate_from_dc, 1, {"Wx", "Wh", "b"}),
        # the wrong carry reaches earlier timesteps' da; with T = 1 there is none, only dh0 itself is wrong
        (dh_prev_one_gate, 4, UPSTREAM_OF_H),
        (dh_prev_one_gate, 1, {"h0"}),
    ],
)
def test_gradient_check_flags_exactly_the_tensors_the_fault_corrupts(fault, T, expected, loss, token_ids):
    assert failed(check_problem(small_problem(loss, T, token_ids), backward=fault)) == expected


@pytest.mark.parametrize("loss,token_ids", PROBLEMS)
@pytest.mark.parametrize("T", [1, 4])
def test_real_backward_passes_the_problems_the_faults_fail(T, loss, token_ids):
    assert failed(check_problem(small_problem(loss, T, token_ids))) == set()


def test_candidate_from_dc_changes_only_the_candidate_columns():
    p = tiny_problem(T=5)
    H = p.h0.shape[1]
    dhs = np.random.default_rng(0).normal(size=(*p.x.shape[:2], H))
    _, _, cache = lstm_forward(p.params, p.x, p.h0, p.c0)
    right, dh0, dc0 = lstm_backward(dhs, cache)
    wrong, bad_dh0, bad_dc0 = candidate_from_dc(dhs, cache)
    g = np.zeros(4 * H, dtype=bool)
    g[2 * H : 3 * H] = True
    for name in ("Wx", "Wh", "b"):
        np.testing.assert_array_equal(wrong[name][..., ~g], right[name][..., ~g])
        assert not np.allclose(wrong[name][..., g], right[name][..., g])
    np.testing.assert_array_equal(bad_dh0, dh0)
    np.testing.assert_array_equal(bad_dc0, dc0)


def sgd_losses(backward, steps=15, lr=0.5):
    """Loss trajectory of plain SGD on one fixed small batch."""
    p = tiny_problem("xent", B=3, T=8, D=5, H=6, K=3, seed=1, token_ids=True)
    params = {k: v.copy() for k, v in p.params.items()}
    losses = []
    for _ in range(steps):
        r = loss_and_grads(params, p.x, p.y, p.h0, p.c0, p.loss, p.reduction, backward=backward)
        losses.append(r.loss)
        params = {k: v - lr * r.grads[k] for k, v in params.items()}
    return np.array(losses)


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_training_with_a_fault_follows_a_different_loss_trajectory(name):
    real, faulty = sgd_losses(lstm_backward), sgd_losses(FAULTS[name])
    assert faulty[0] == real[0]  # same forward pass: the fault is in the backward only
    assert np.abs(faulty[1:] - real[1:]).max() > 1e-4
    assert real[-1] < real[0]


def test_backward_for_none_is_the_real_backward():
    assert backward_for(None) is lstm_backward


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_backward_for_a_name_is_that_fault(name):
    assert backward_for(name) is FAULTS[name]


def test_backward_for_an_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="dh_prev_one_gate") as info:
        backward_for("no_such_fault")
    assert all(name in str(info.value) for name in FAULTS)

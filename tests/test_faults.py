"""The catalogue of classic mistakes: each corrupts exactly the gradients its wrong line reaches, composes with the
others, and the reference built from its pieces is the core's backward bit for bit."""

import numpy as np
import pytest

from lstm_exp.core.faults import (
    CATALOGUE,
    FAULTS,
    PIECEWISE,
    Pieces,
    backward_for,
    lstm_backward_with,
    pieces_of,
    variant,
)
from lstm_exp.core.gradcheck import check_problem, tiny_problem
from lstm_exp.core.lstm import lstm_backward, lstm_forward
from lstm_exp.core.network import REFERENCE, loss_and_grads

PROBLEMS = [("mse", False), ("xent", True)]  # dense inputs with MSE, token ids with cross-entropy
ALL_LSTM = {"Wx", "Wh", "b", "h0", "c0"}
NAMES = [
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
]


def failed(rows):
    return {r.tensor for r in rows if not r.passed}


def small_problem(loss, T, token_ids):
    return tiny_problem(loss, T=T, D=3, H=2, K=2, seed=T, token_ids=token_ids)


def test_the_catalogue_holds_the_documented_names_each_with_its_lines_and_source():
    assert [m.name for m in CATALOGUE] == NAMES
    for m in CATALOGUE:
        assert m.wrong and m.right and m.wrong != m.right and m.source and m.says
    assert set(PIECEWISE) == set(NAMES) - {"not_summed_over_time"}


# which tensors each mistake corrupts, at T = 1 and at T = 4 (the check's objective also feeds dhT, dcT)
REACHES = {
    # sigmoid'/tanh' wrong in every gate: all LSTM weights and h0; c0 only through the wrong dh carry
    "sigmoid_of_activation": ({"Wx", "Wh", "b", "h0"}, ALL_LSTM),
    # only the weight gradients' g-columns read dc; the recurrence is right, so h0 and c0 are too
    "candidate_from_dc": ({"Wx", "Wh", "b"}, {"Wx", "Wh", "b"}),
    # the carry into h_{t-1} misses three gates: at T = 1 only dh0 itself
    "dh_prev_one_gate": ({"h0"}, ALL_LSTM),
    "forget_from_c_t": ({"Wx", "Wh", "b", "h0"}, ALL_LSTM),
    # dc0 = dc instead of dc * f: wrong at once; earlier steps' dc from T = 2 on
    "c_carry_without_forget": ({"c0"}, ALL_LSTM),
    # a carry that is not added matters only from the second step back
    "no_c_carry": (set(), ALL_LSTM),
    "no_h_carry": (set(), ALL_LSTM),
    "tanh_prime_from_h": (ALL_LSTM, ALL_LSTM),
    "tanh_prime_missing": (ALL_LSTM, ALL_LSTM),
    "dWh_from_h_t": ({"Wh"}, {"Wh"}),
    "recurrent_not_transposed": ({"h0"}, ALL_LSTM),
    "output_weight_last_step": (set(), {"Wy"}),
}


@pytest.mark.parametrize("loss,token_ids", PROBLEMS)
@pytest.mark.parametrize("name", sorted(REACHES))
def test_gradient_check_flags_exactly_the_tensors_the_mistake_corrupts(name, loss, token_ids):
    at_1, at_4 = REACHES[name]
    backward = backward_for(name)
    assert failed(check_problem(small_problem(loss, 1, token_ids), backward=backward)) == at_1
    assert failed(check_problem(small_problem(loss, 4, token_ids), backward=backward)) == at_4


@pytest.mark.parametrize("loss,token_ids", PROBLEMS)
@pytest.mark.parametrize("T", [1, 4])
def test_the_reference_passes_the_problems_the_mistakes_fail(T, loss, token_ids):
    assert failed(check_problem(small_problem(loss, T, token_ids))) == set()


@pytest.mark.parametrize("state_clip", [None, 0.3])
def test_the_reference_built_from_its_pieces_is_the_core_bit_for_bit(state_clip):
    p = tiny_problem(T=6, H=3, seed=2)
    dhs = np.random.default_rng(0).normal(size=(*p.x.shape[:2], 3))
    _, _, cache = lstm_forward(p.params, p.x, p.h0, p.c0)
    want, want_dh0, want_dc0 = lstm_backward(dhs, cache, p.wh, p.wc, state_clip)
    got, dh0, dc0 = lstm_backward_with(Pieces(), dhs, cache, p.wh, p.wc, state_clip)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    np.testing.assert_array_equal(dh0, want_dh0)
    np.testing.assert_array_equal(dc0, want_dc0)
    assert variant() is REFERENCE and backward_for(None) is REFERENCE


def test_candidate_from_dc_changes_only_the_candidate_columns():
    p = tiny_problem(T=5)
    H = p.h0.shape[1]
    dhs = np.random.default_rng(0).normal(size=(*p.x.shape[:2], H))
    _, _, cache = lstm_forward(p.params, p.x, p.h0, p.c0)
    right, dh0, dc0 = lstm_backward(dhs, cache)
    wrong, bad_dh0, bad_dc0 = backward_for("candidate_from_dc").lstm(dhs, cache)
    g = np.zeros(4 * H, dtype=bool)
    g[2 * H : 3 * H] = True
    for name in ("Wx", "Wh", "b"):
        np.testing.assert_array_equal(wrong[name][..., ~g], right[name][..., ~g])
        assert not np.allclose(wrong[name][..., g], right[name][..., g])
    np.testing.assert_array_equal(bad_dh0, dh0)
    np.testing.assert_array_equal(bad_dc0, dc0)


def test_mistakes_of_different_pieces_compose_and_each_keeps_its_effect():
    p = tiny_problem(T=4, H=3, seed=5)
    grads = {
        names: loss_and_grads(p.params, p.x, p.y, p.h0, p.c0, backward=variant(names)).grads
        for names in [(), ("dWh_from_h_t",), ("output_weight_last_step",), ("dWh_from_h_t", "output_weight_last_step")]
    }
    both = grads[("dWh_from_h_t", "output_weight_last_step")]
    np.testing.assert_array_equal(both["Wh"], grads[("dWh_from_h_t",)]["Wh"])
    np.testing.assert_array_equal(both["Wy"], grads[("output_weight_last_step",)]["Wy"])
    np.testing.assert_array_equal(both["Wx"], grads[()]["Wx"])


def test_two_mistakes_of_one_piece_or_one_that_is_no_piece_are_refused():
    with pytest.raises(ValueError, match="both replace"):
        pieces_of(["tanh_prime_from_h", "tanh_prime_missing"])
    with pytest.raises(ValueError, match="tensor by tensor"):
        pieces_of(["not_summed_over_time"])


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


@pytest.mark.parametrize("name", PIECEWISE)
def test_training_with_a_mistake_follows_a_different_loss_trajectory(name):
    real, faulty = sgd_losses(REFERENCE), sgd_losses(backward_for(name))
    assert faulty[0] == real[0]  # same forward pass: the mistake is in the backward only
    assert np.abs(faulty[1:] - real[1:]).max() > 1e-4
    assert real[-1] < real[0]


def test_backward_for_an_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="dh_prev_one_gate") as info:
        backward_for("no_such_fault")
    assert all(name in str(info.value) for name in PIECEWISE)
    assert FAULTS["forget_from_c_t"].piece == "forget_cell"

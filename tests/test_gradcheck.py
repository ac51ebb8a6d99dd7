"""The hand-written backward agrees with central differences, and the check can fail."""

import numpy as np
import pytest

from lstm_exp.core.faults import backward_for
from lstm_exp.core.gradcheck import TOLERANCE, check_problem, rel_error, tiny_problem


def failing(rows):
    return [(r.tensor, f"{r.max_rel_error:.2e}") for r in rows if not r.passed]


@pytest.mark.parametrize("loss,token_ids", [("mse", False), ("xent", True), ("xent", False)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("T", [1, 6])
def test_backward_matches_central_differences(loss, token_ids, reduction, T):
    p = tiny_problem(loss, reduction, B=3, T=T, D=4, H=3, K=3, seed=T, token_ids=token_ids)
    rows = check_problem(p)
    assert {r.tensor for r in rows} == {"Wx", "Wh", "b", "Wy", "by", "h0", "c0"}
    assert not failing(rows), failing(rows)
    assert all(r.checked == r.size for r in rows)


def test_check_starts_every_pass_from_the_same_initial_state():
    p = tiny_problem("mse", "sum", seed=3)
    h0, c0 = p.h0.copy(), p.c0.copy()
    check_problem(p)
    np.testing.assert_array_equal(p.h0, h0)
    np.testing.assert_array_equal(p.c0, c0)


def test_random_subsets_are_seeded_and_limited():
    p = tiny_problem("mse", "mean", H=5, seed=1)
    rows_a = check_problem(p, max_entries=7, seed=11)
    rows_b = check_problem(p, max_entries=7, seed=11)
    assert [r.checked for r in rows_a] == [min(7, r.size) for r in rows_a]
    assert rows_a == rows_b


def test_check_catches_seed_003_dropped_gates_in_dh_prev():
    problem = tiny_problem("xent", "mean", T=5, token_ids=True)
    rows = check_problem(problem, backward=backward_for("dh_prev_one_gate"))
    failed = {r.tensor for r in rows if not r.passed}
    # everything upstream of h_{t-1} is wrong; the head's weights only see h_t and stay right
    assert failed == {"Wx", "Wh", "b", "h0", "c0"}
    assert min(r.max_rel_error for r in rows if r.tensor in failed) > 1e3 * TOLERANCE


def test_rel_error_is_zero_for_equal_and_one_for_opposite():
    a = np.array([1.0, -2.0, 3.0])
    assert rel_error(a, a) == 0.0
    assert rel_error(a, -a) == pytest.approx(1.0)

"""Divergence forensics: the replay names the first non-finite tensor, and the report explains the run."""

import json
import warnings

import numpy as np
import pytest

from lstm_exp.core.forensics import History, divergence_report, divergence_sentence, trace_step
from lstm_exp.core.gradcheck import tiny_problem
from lstm_exp.core.lstm import lstm_forward
from lstm_exp.core.network import StepOptions


def trace(p, x=None, **kwargs):
    """trace_step on a gradcheck Problem, optionally with other inputs x."""
    return trace_step(p.params, p.x if x is None else x, p.y, p.h0, p.c0, StepOptions(p.loss, p.reduction), **kwargs)


def finding(tensor, timestep=None, batch=None, phase="forward"):
    return {"tensor": tensor, "timestep": timestep, "batch": batch, "phase": phase}


def climbing_history(first_step=182, last_step=211, growth=1.2e4):
    """Grad norm rising geometrically from 1 to ``growth``; max |c| from 3.1 to 870; loss from 2 to 24."""
    h = History()
    steps = np.arange(first_step, last_step + 1)
    frac = (steps - first_step) / (last_step - first_step)
    for s, u in zip(steps, frac, strict=True):
        h.record(s, 2.0 * 12.0**u, growth**u, 3.1 * (870 / 3.1) ** u)
    return h


@pytest.mark.parametrize("loss,token_ids", [("mse", False), ("xent", True)])
def test_all_finite_step_gives_none(loss, token_ids):
    assert trace(tiny_problem(loss, token_ids=token_ids)) is None


@pytest.mark.parametrize("t,b", [(0, 0), (2, 1), (3, 1)])
def test_inf_input_is_named_as_the_gate_preactivation_at_its_timestep_and_batch(t, b):
    p = tiny_problem(T=4, B=2)
    x = p.x.copy()
    x[b, t, 0] = np.inf
    assert trace(p, x) == finding("gate_preactivation", t, b)


def test_inf_preactivation_saturates_the_gates_and_leaves_the_states_finite():
    # why a_t is checked itself: the forward's own outputs would not show the fault
    p = tiny_problem()
    x = p.x.copy()
    x[1, 2, 0] = np.inf
    with np.errstate(all="ignore"):
        hs, _, cache = lstm_forward(p.params, x, p.h0, p.c0)
    assert np.isfinite(hs).all() and np.isfinite(cache.cs).all()


def test_nan_parameter_is_named_with_no_timestep_or_batch():
    p = tiny_problem()
    p.params["Wh"][1, 2] = np.nan
    assert trace(p) == finding("param.Wh")


def test_non_finite_parameter_is_reported_before_a_non_finite_input():
    p = tiny_problem()
    p.params["Wy"][0, 0] = np.inf
    x = p.x.copy()
    x[0, 0, 0] = np.inf
    assert trace(p, x)["tensor"] == "param.Wy"


def test_nan_initial_state_is_named_with_its_batch_row():
    p = tiny_problem(B=3)
    p.c0[2, 1] = np.nan
    assert trace(p) == finding("c0", batch=2)


def test_loss_overflow_from_finite_outputs_is_named_as_the_loss():
    p = tiny_problem("mse")
    p.params["by"][:] = 1e200  # outputs ~1e200 are finite; their squared error is not
    assert trace(p) == finding("loss")


@pytest.mark.parametrize("b", [0, 1])
def test_inf_upstream_state_gradient_is_named_as_the_last_cell_gradient(b):
    p = tiny_problem(T=4, B=2)
    dhT = np.zeros_like(p.h0)
    dhT[b, 0] = np.inf
    assert trace(p, dhT=dhT) == finding("dcell_state", 3, b, "backward")


def test_replay_emits_no_floating_point_warnings():
    p = tiny_problem()
    x = p.x.copy()
    x[0, 1, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert trace(p, x) is not None


def test_history_keeps_only_the_last_k_records():
    h = History(maxlen=3)
    for step in range(5):
        h.record(step, 1.0, 2.0, 3.0)
    assert h.as_dict()["step"] == [2, 3, 4]


def test_history_as_dict_turns_non_finite_values_into_none():
    h = History()
    h.record(np.int64(7), np.float64(np.nan), np.inf, 1.5)
    assert h.as_dict() == {"step": [7], "loss": [None], "grad_norm": [None], "max_abs_c": [1.5]}


def test_describe_names_the_step_the_tensor_and_the_grad_norm_growth():
    sentence = divergence_sentence(212, finding("logits", 57, 0), climbing_history(), "diverged_nan")
    assert "step 212" in sentence
    assert "logits at t=57 (batch 0)" in sentence
    assert "rose 1.2e4x over the 30 steps" in sentence
    assert "max |c| 3.1 -> 870" in sentence


def test_describe_of_a_loss_divergence_gives_the_loss_ratio_to_the_first_value():
    sentence = divergence_sentence(30, None, climbing_history(first_step=0, last_step=30), "diverged_loss")
    assert "loss reached 12x its first value" in sentence


def test_describe_uses_only_finite_records_for_the_trend():
    h = climbing_history()
    h.record(212, np.nan, np.inf, np.inf)  # the diverging step itself
    assert "rose 1.2e4x" in divergence_sentence(212, finding("logits", 57, 0), h, "diverged_nan")


def test_describe_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="diverged_nan"):
        divergence_sentence(1, None, History(), "exploded")


def test_divergence_report_is_strict_json_of_plain_types():
    p = tiny_problem()
    p.params["Wh"][0, 0] = np.nan
    h = climbing_history()
    h.record(212, np.nan, np.nan, 900.0)
    report = divergence_report(np.int64(212), "diverged_nan", trace(p), h, "non-finite value")

    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(map(plain, value))
        return value is None or type(value) in (str, int, float)

    assert plain(report)
    assert json.loads(json.dumps(report, allow_nan=False))["first_nonfinite"]["tensor"] == "param.Wh"

"""The style fixtures (tests/styles) check themselves, with NumPy only: each correct model's gradients are the
central differences of its own loss; each injected mistake changes the gradients and nothing else."""

from __future__ import annotations

import importlib
import itertools

import numpy as np
import pytest

from tests.styles import MISTAKES, STYLES

H, T, B = 3, 4, 2
TASKS = {"regression": (2, 3), "tokens": (5, 5)}  # task -> (D, K); the token task has D = K = V
# only styles with separate square per-gate recurrent matrices can transpose them wrongly
RECURRENT_PER_GATE = {"min_char_rnn", "tutorial_rows"}
STYLE_IDS = [module for module, _, _ in STYLES]


def style_class(module):
    name = dict((m, cls) for m, cls, _ in STYLES)[module]
    return getattr(importlib.import_module(f"tests.styles.{module}"), name)


def supported(module):
    return [m for m in MISTAKES if m != "recurrent_not_transposed" or module in RECURRENT_PER_GATE]


def make_case(module, task, seed=0):
    """(params, x, y, h0, c0) for one style on one task, with non-zero initial state."""
    cls = style_class(module)
    D, K = TASKS[task]
    rng = np.random.default_rng(seed)
    params = cls().init_params(rng, D, H, K)
    lead = (B, T) if getattr(cls, "batched", False) else (T,)
    state = lead[:-1] + (H,)
    if task == "tokens":
        x = rng.integers(0, D, size=lead).astype(np.int64)
        y = rng.integers(0, K, size=lead).astype(np.int64)
        assert np.any(x != y)
    else:
        x = rng.normal(size=lead + (D,))
        y = rng.normal(size=lead + (K,))
    h0 = rng.normal(0.0, 0.5, size=state)
    c0 = rng.normal(0.0, 0.5, size=state)
    return params, x, y, h0, c0


def run(module, mistakes, case):
    params, x, y, h0, c0 = case
    return style_class(module)(mistakes=mistakes).loss_and_grads(params, x, y, h0, c0)


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("module", STYLE_IDS)
def test_correct_gradients_match_central_differences(module, task):
    params, x, y, h0, c0 = case = make_case(module, task)
    model = style_class(module)()
    loss, grads, _ = model.loss_and_grads(params, x, y, h0, c0)
    assert isinstance(loss, float)

    def loss_at(name, index, delta):
        p = {k: v.copy() for k, v in params.items()}
        h, c = h0.copy(), c0.copy()
        target = {"h0": h, "c0": c}.get(name, p.get(name))
        target[index] += delta
        return model.loss_and_grads(p, x, y, h, c)[0]

    eps = 1e-5
    for name in [*params, "h0", "c0"]:
        shape = case[3].shape if name in ("h0", "c0") else params[name].shape
        analytic = np.asarray(grads[name], dtype=np.float64).reshape(shape)
        for index in np.ndindex(*shape):
            numeric = (loss_at(name, index, eps) - loss_at(name, index, -eps)) / (2 * eps)
            a = analytic[index]
            rel = abs(a - numeric) / max(abs(a), abs(numeric), 1e-3)
            assert rel < 1e-6, f"{module}/{task}: d{name}{list(index)} analytic {a!r} vs numeric {numeric!r}"


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("module", STYLE_IDS)
def test_each_mistake_changes_only_the_gradients(module, task):
    case = make_case(module, task)
    loss, grads, (hT, cT) = run(module, (), case)
    for mistake in supported(module):
        bad_loss, bad_grads, (bad_h, bad_c) = run(module, (mistake,), case)
        assert bad_loss == loss, f"{module}/{mistake}: the loss changed"
        np.testing.assert_array_equal(bad_h, hT)
        np.testing.assert_array_equal(bad_c, cT)
        changed = [
            k
            for k in grads
            if not np.allclose(np.asarray(bad_grads[k]).reshape(np.shape(grads[k])), grads[k], rtol=1e-6, atol=1e-9)
        ]
        assert changed, f"{module}/{task}: mistake {mistake} left every gradient unchanged"


@pytest.mark.parametrize("module", STYLE_IDS)
def test_unsupported_or_unknown_mistakes_raise(module):
    cls = style_class(module)
    if module not in RECURRENT_PER_GATE:
        with pytest.raises(ValueError):
            cls(mistakes=("recurrent_not_transposed",))
    with pytest.raises(ValueError):
        cls(mistakes=("no_such_mistake",))


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("module", STYLE_IDS)
def test_mistakes_combine(module, task):
    """Every pair of mistakes, and all of them at once, run and still leave the forward pass alone."""
    case = make_case(module, task, seed=1)
    loss, grads, (hT, cT) = run(module, (), case)
    names = supported(module)
    for combo in [*itertools.combinations(names, 2), tuple(names)]:
        bad_loss, bad_grads, (bad_h, bad_c) = run(module, combo, case)
        assert bad_loss == loss
        np.testing.assert_array_equal(bad_h, hT)
        np.testing.assert_array_equal(bad_c, cT)
        assert set(bad_grads) == set(grads)
        assert all(np.all(np.isfinite(v)) for v in bad_grads.values()), combo


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("module", STYLE_IDS)
def test_grads_keys_and_shapes(module, task):
    params, x, y, h0, c0 = case = make_case(module, task)
    batched = getattr(style_class(module), "batched", False)
    for mistakes in [(), tuple(supported(module))]:
        _, grads, (hT, cT) = run(module, mistakes, case)
        assert set(grads) == set(params) | {"h0", "c0"}
        for k, v in params.items():
            assert np.shape(grads[k]) == v.shape, (module, k)
        for k in ("h0", "c0"):
            if batched:
                assert np.shape(grads[k]) == (B, H)
            else:
                assert np.size(grads[k]) == H
                np.reshape(grads[k], (H,))
        expected_state = (B, H) if batched else (H,)
        assert np.shape(hT) == expected_state and np.shape(cT) == expected_state


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("module", STYLE_IDS)
def test_nothing_writes_into_params_or_inputs(module, task):
    case = make_case(module, task)
    params, x, y, h0, c0 = case
    before = ({k: v.copy() for k, v in params.items()}, x.copy(), y.copy(), h0.copy(), c0.copy())
    for mistakes in [(), tuple(supported(module))]:
        run(module, mistakes, case)
        for k, v in params.items():
            np.testing.assert_array_equal(v, before[0][k], err_msg=f"{module} wrote into params[{k!r}]")
        for got, was in zip((x, y, h0, c0), before[1:], strict=True):
            np.testing.assert_array_equal(got, was)


@pytest.mark.parametrize("module", STYLE_IDS)
def test_init_params_uses_the_generator(module):
    cls = style_class(module)
    a = cls().init_params(np.random.default_rng(7), 2, H, 3)
    b = cls().init_params(np.random.default_rng(7), 2, H, 3)
    c = cls().init_params(np.random.default_rng(8), 2, H, 3)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    assert all(v.dtype == np.float64 and np.all(np.isfinite(v)) for v in a.values())

import copy

import numpy as np
import pytest

from lstm_exp.core import optim

# learning rates at which each optimizer solves the quadratic below in ~200 steps
LRS = {"sgd": 0.1, "momentum": 0.05, "adagrad": 0.3, "rmsprop": 0.01, "adam": 0.05}


def _grads(dtype=np.float64):
    return {"W": np.array([[3.0, -4.0], [0.5, 12.0]], dtype=dtype), "b": np.array([-0.2, 7.0], dtype=dtype)}


def _leaves(state):
    """Every array or scalar inside a (possibly nested) state."""
    if isinstance(state, dict):
        for value in state.values():
            yield from _leaves(value)
    elif isinstance(state, tuple):
        for part in state:
            yield from _leaves(part)
    else:
        yield state


def _assert_trees_equal(got, want):
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_global_norm_is_sqrt_of_sum_of_squares_over_all_tensors():
    assert optim.global_norm({"a": np.array([3.0]), "b": np.array([[4.0, 12.0]])}) == pytest.approx(13.0)


def test_global_norm_accumulates_in_float64():
    # 1e20**2 overflows float32; the norm must not
    tree = {"a": np.full(4, 1e20, dtype=np.float32)}
    assert optim.global_norm(tree) == pytest.approx(2e20, rel=1e-6)


@pytest.mark.parametrize("fraction", [0.1, 0.99])
def test_clip_by_global_norm_caps_norm_exactly_at_max_norm(fraction):
    grads = _grads()
    max_norm = fraction * optim.global_norm(grads)
    clipper = optim.clip_by_global_norm(max_norm)
    clipped, _ = clipper.update(grads, clipper.init(grads))
    assert optim.global_norm(clipped) == pytest.approx(max_norm, rel=1e-12)
    # one common scale factor: direction kept
    scale = clipped["b"][1] / grads["b"][1]
    for k in grads:
        np.testing.assert_allclose(clipped[k], scale * grads[k], rtol=1e-12)


def test_clip_by_global_norm_leaves_small_gradients_untouched():
    grads = _grads()
    clipper = optim.clip_by_global_norm(optim.global_norm(grads) * 1.01)
    clipped, _ = clipper.update(grads, clipper.init(grads))
    _assert_trees_equal(clipped, grads)


def test_clip_by_value_caps_every_entry_and_keeps_in_range_entries():
    grads = _grads()
    clipper = optim.clip_by_value(1.0)
    clipped, _ = clipper.update(grads, clipper.init(grads))
    _assert_trees_equal(clipped, {"W": np.array([[1.0, -1.0], [0.5, 1.0]]), "b": np.array([-0.2, 1.0])})


@pytest.mark.parametrize("name", sorted(LRS))
def test_optimizer_reduces_quadratic_loss(name):
    rng = np.random.default_rng(0)
    A = np.eye(4) + 0.2 * rng.standard_normal((4, 4))
    t = rng.standard_normal(4)

    def loss_and_grads(params):
        r = A @ np.concatenate([params["u"], params["v"]]) - t
        g = A.T @ r
        return 0.5 * r @ r, {"u": g[:2], "v": g[2:]}

    opt = optim.build(name, LRS[name])
    params = {"u": np.zeros(2), "v": np.zeros(2)}
    state = opt.init(params)
    initial, _ = loss_and_grads(params)
    for _ in range(200):
        _, grads = loss_and_grads(params)
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
    final, _ = loss_and_grads(params)
    assert final < 1e-3 * initial


def test_adam_first_update_has_magnitude_lr_per_entry():
    grads = _grads()
    opt = optim.adam(0.01)
    updates, state = opt.update(grads, opt.init(grads))
    for k in grads:
        np.testing.assert_allclose(updates[k], -0.01 * np.sign(grads[k]), rtol=1e-6)
    assert state.count == 1


def test_sgd_update_is_minus_lr_times_gradient():
    grads = _grads()
    opt = optim.sgd(0.1)
    updates, _ = opt.update(grads, opt.init(grads))
    for k in grads:
        np.testing.assert_allclose(updates[k], -0.1 * grads[k])


def test_chain_applies_transforms_in_order():
    grads = _grads()
    chained = optim.chain(optim.clip_by_value(0.5), optim.sgd(0.1))
    updates, _ = chained.update(grads, chained.init(grads))
    for k in grads:
        np.testing.assert_allclose(updates[k], -0.1 * np.clip(grads[k], -0.5, 0.5))


def test_chain_threads_each_transforms_state():
    grads = _grads()
    chained = optim.chain(optim.clip_by_value(100.0), optim.momentum(0.1, beta=0.5))
    plain = optim.momentum(0.1, beta=0.5)
    chained_state, plain_state = chained.init(grads), plain.init(grads)
    for _ in range(3):
        chained_updates, chained_state = chained.update(grads, chained_state)
        plain_updates, plain_state = plain.update(grads, plain_state)
    assert len(chained_state) == 2
    _assert_trees_equal(chained_updates, plain_updates)
    _assert_trees_equal(chained_state[1].velocity, plain_state.velocity)


@pytest.mark.parametrize("clip_mode", optim.CLIP_MODES)
@pytest.mark.parametrize("name", sorted(LRS))
def test_float32_is_preserved_through_init_update_apply(name, clip_mode):
    params = {k: np.ones_like(v) for k, v in _grads(np.float32).items()}
    opt = optim.build(name, LRS[name], clip=1.0, clip_mode=clip_mode)
    state = opt.init(params)
    for _ in range(2):
        updates, state = opt.update(_grads(np.float32), state, params)
        params = optim.apply_updates(params, updates)
    arrays = [x for x in _leaves((updates, params, state)) if isinstance(x, np.ndarray)]
    assert arrays
    assert all(x.dtype == np.float32 for x in arrays)


def test_apply_updates_returns_new_arrays_in_parameter_dtype():
    params = {"w": np.ones(3, dtype=np.float32)}
    new = optim.apply_updates(params, {"w": np.full(3, 0.5)})
    np.testing.assert_array_equal(params["w"], np.ones(3))
    np.testing.assert_array_equal(new["w"], np.full(3, 1.5))
    assert new["w"].dtype == np.float32


@pytest.mark.parametrize("clip", [None, 0, 0.0, -1.0])
@pytest.mark.parametrize("clip_mode", ["norm", "value"])
def test_clip_none_zero_or_negative_means_no_clipping(clip, clip_mode):
    grads = _grads()
    opt = optim.build("sgd", 0.1, clip=clip, clip_mode=clip_mode)
    updates, _ = opt.update(grads, opt.init(grads))
    for k in grads:
        np.testing.assert_allclose(updates[k], -0.1 * grads[k])


def test_build_norm_mode_clips_global_norm():
    grads = _grads()
    opt = optim.build("sgd", 0.1, clip=2.0, clip_mode="norm")
    updates, _ = opt.update(grads, opt.init(grads))
    assert optim.global_norm(updates) == pytest.approx(0.1 * 2.0)


def test_build_value_mode_clips_entries():
    grads = _grads()
    opt = optim.build("sgd", 0.1, clip=2.0, clip_mode="value")
    updates, _ = opt.update(grads, opt.init(grads))
    for k in grads:
        np.testing.assert_allclose(updates[k], -0.1 * np.clip(grads[k], -2.0, 2.0))


def test_build_state_mode_adds_no_gradient_transform():
    grads = _grads()
    opt = optim.build("sgd", 0.1, clip=1.0, clip_mode="state")
    updates, _ = opt.update(grads, opt.init(grads))
    for k in grads:
        np.testing.assert_allclose(updates[k], -0.1 * grads[k])


def test_build_passes_optimizer_hyperparameters():
    grads = _grads()
    opt = optim.build("momentum", 0.1, beta=0.5)
    _, state = opt.update(grads, opt.init(grads))
    updates, _ = opt.update(grads, state)
    for k in grads:
        np.testing.assert_allclose(updates[k], -0.1 * 1.5 * grads[k])


def test_build_rejects_unknown_name_listing_valid_names():
    with pytest.raises(ValueError, match="nadam") as err:
        optim.build("nadam", 0.1)
    for name in ("sgd", "momentum", "adagrad", "rmsprop", "adam"):
        assert name in str(err.value)


def test_build_rejects_unknown_clip_mode_listing_valid_modes():
    with pytest.raises(ValueError, match="global") as err:
        optim.build("sgd", 0.1, clip=1.0, clip_mode="global")
    for mode in ("norm", "value", "state"):
        assert mode in str(err.value)


def test_build_rejects_unknown_hyperparameter_naming_it_and_accepted_ones():
    with pytest.raises(ValueError, match="betta") as err:
        optim.build("momentum", 0.1, betta=0.5)
    assert "beta" in str(err.value).replace("betta", "")


@pytest.mark.parametrize("clip_mode", ["norm", "value"])
@pytest.mark.parametrize("name", sorted(LRS))
def test_update_leaves_old_state_unchanged(name, clip_mode):
    grads = _grads()
    opt = optim.build(name, LRS[name], clip=1.0, clip_mode=clip_mode)
    _, state = opt.update(grads, opt.init(grads))  # one step in, so the state is non-trivial
    snapshot = copy.deepcopy(state)
    first, _ = opt.update(grads, state)
    opt.update(grads, state)
    again, _ = opt.update(grads, state)
    for got, want in zip(_leaves(state), _leaves(snapshot), strict=True):
        np.testing.assert_array_equal(got, want)
    _assert_trees_equal(again, first)

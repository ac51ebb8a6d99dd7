"""Initialisation schemes: the scales the seeds used, the options, and reproducibility."""

import numpy as np
import pytest

from lstm_exp.core.init import SCHEMES, init_params
from lstm_exp.core.network import param_shapes

SHAPES = param_shapes(40, 60, 30)


def draw(name="xavier", seed=0, **kw):
    return init_params(SHAPES, np.random.default_rng(seed), name, **kw)


@pytest.mark.parametrize("name", list(SCHEMES))
def test_every_scheme_gives_every_shape_and_is_reproducible(name):
    a, b = draw(name), draw(name)
    assert {k: v.shape for k, v in a.items()} == SHAPES
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize(
    "name,key,expected_std",
    [
        ("xavier", "Wx", np.sqrt(2 / (40 + 60))),
        ("randn", "Wh", 1.0),
        ("he", "Wx", 1 / np.sqrt(100 / 2)),
        ("he", "Wh", 1 / np.sqrt(100 / 2)),
    ],
)
def test_scheme_scales(name, key, expected_std):
    assert draw(name)[key].std() == pytest.approx(expected_std, rel=0.05)


def test_orthogonal_gives_orthogonal_recurrent_blocks():
    Wh = draw("orthogonal")["Wh"]
    for k in range(4):
        block = Wh[:, k * 60 : (k + 1) * 60]
        np.testing.assert_allclose(block.T @ block, np.eye(60), atol=1e-10)


def test_bias_forget_bias_and_output_options():
    p = draw(forget_bias=1.0, output="ones")
    np.testing.assert_array_equal(p["b"][60:120], 1.0)
    np.testing.assert_array_equal(np.delete(p["b"], np.s_[60:120]), 0.0)
    np.testing.assert_array_equal(p["Wy"], 1.0)
    assert draw(bias="randn")["b"].std() == pytest.approx(1.0, rel=0.15)


def test_float32_and_unknown_names():
    assert all(v.dtype == np.float32 for v in draw(dtype=np.float32).values())
    with pytest.raises(ValueError, match="xavier, normal, randn, he, orthogonal"):
        draw("glorot")

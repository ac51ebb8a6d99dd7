"""Layouts: a user's parameter names and shapes mapped onto the core's fused tensors and back, exactly."""

from pathlib import Path

import numpy as np
import pytest

from lstm_exp.core.network import param_shapes
from lstm_exp.models.layout import (
    FUSED,
    Layout,
    LayoutError,
    check_fits,
    expected_shapes,
    from_config,
    from_fused,
    to_fused,
)

PRESETS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "layout").glob("*.yaml"))
D, H, K = 3, 4, 2


def random_fused(seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s) for k, s in param_shapes(D, H, K).items()}


@pytest.fixture(scope="module")
def layouts(request):
    from hydra import compose, initialize_config_dir

    from lstm_exp.runner.schema import register, typed_config

    register()
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        composed = {name: compose("config", overrides=[f"layout={name}"]) for name in PRESETS}
    return {name: from_config(typed_config(cfg).layout) for name, cfg in composed.items()}


def test_every_shipped_preset_is_tested():
    assert {"fused", "seed000", "seed001", "seed002", "seed003", "my_lstm"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_from_fused_then_to_fused_is_the_identity(layouts, name):
    layout = layouts[name]
    fused = random_fused()
    if layout.bias == "none":  # a model without biases has none to map: the fused ones are zero
        fused["b"][:] = fused["by"][:] = 0.0
    back = to_fused(from_fused(fused, layout, D, H, K), layout, D, H, K)
    for key, value in fused.items():
        np.testing.assert_array_equal(back[key], value)


@pytest.mark.parametrize("name", PRESETS)
def test_each_user_entry_appears_exactly_once_in_the_fused_tensors(layouts, name):
    layout = layouts[name]
    shapes = expected_shapes(layout, D, H, K)
    numbered, start = {}, 1
    for key, shape in shapes.items():  # every user entry a distinct value
        numbered[key] = np.arange(start, start + np.prod(shape), dtype=float).reshape(shape)
        start += int(np.prod(shape))
    fused = to_fused(numbered, layout, D, H, K)
    values = np.concatenate([v.ravel() for v in fused.values()])
    assert sorted(values[values != 0]) == list(range(1, start))


def test_seed000_reads_x_rows_first_and_transposes_nothing(layouts):
    layout = layouts["seed000"]
    user = from_fused(random_fused(), layout, D, H, K)
    fused = to_fused(user, layout, D, H, K)
    np.testing.assert_array_equal(fused["Wx"][:, 3 * H :], user["Wo"][:D])  # o is the 4th block
    np.testing.assert_array_equal(fused["Wh"][:, 2 * H : 3 * H], user["Wc"][D:])  # c is the candidate g
    np.testing.assert_array_equal(fused["b"][H : 2 * H], user["bf"][:, 0])


def test_seed001_left_orientation_transposes(layouts):
    user = from_fused(random_fused(), layouts["seed001"], D, H, K)
    fused = to_fused(user, layouts["seed001"], D, H, K)
    assert user["w_f"].shape == (H, D) and user["w_h"].shape == (K, H)
    np.testing.assert_array_equal(fused["Wx"][:, H : 2 * H], user["w_f"].T)
    np.testing.assert_array_equal(fused["Wy"], user["w_h"].T)


def test_a_parameter_shared_by_gates_is_stacked_in_the_layout_gate_order():
    keras = Layout(
        "keras",
        gates={g: {"W": "kernel", "b": "bias"} for g in "ifgo"},
        output={"W": "Wy", "b": "by"},
        concat="hx",
        gate_order="fgio",
    )
    fused = random_fused()
    user = from_fused(fused, keras, D, H, K)
    assert user["kernel"].shape == (H + D, 4 * H)
    np.testing.assert_array_equal(user["kernel"][:H, :H], fused["Wh"][:, H : 2 * H])  # f first, h rows first
    np.testing.assert_array_equal(user["kernel"][H:, H : 2 * H], fused["Wx"][:, 2 * H : 3 * H])  # then g
    np.testing.assert_array_equal(user["bias"][3 * H :], fused["b"][H * 3 :])  # o last in both


def test_fused_layout_is_the_identity():
    fused = random_fused()
    user = from_fused(fused, FUSED, D, H, K)
    assert set(user) == set(fused)
    for key in fused:
        np.testing.assert_array_equal(user[key], fused[key])


def test_a_missing_parameter_is_named(layouts):
    user = from_fused(random_fused(), layouts["seed002"], D, H, K)
    del user["Wg"]
    with pytest.raises(LayoutError, match="parameter 'Wg' is missing"):
        check_fits(user, layouts["seed002"], D, H, K)


def test_a_wrong_shape_names_the_parameter_and_both_shapes(layouts):
    user = from_fused(random_fused(), layouts["seed002"], D, H, K)
    user["Wf"] = user["Wf"].T
    with pytest.raises(LayoutError, match=r"'Wf' has shape \(4, 7\), the layout expects \(7, 4\)"):
        check_fits(user, layouts["seed002"], D, H, K)


def test_a_parameter_the_layout_does_not_describe_is_refused(layouts):
    user = from_fused(random_fused(), layouts["seed002"], D, H, K)
    user["peephole"] = np.zeros(H)
    with pytest.raises(LayoutError, match="peephole are not described by the layout"):
        check_fits(user, layouts["seed002"], D, H, K)


def test_a_layout_naming_the_candidate_twice_is_refused():
    from lstm_exp.common.errors import UserError
    from lstm_exp.runner.schema import GateParams, LayoutConfig, OutputParams

    gates = {k: GateParams(Wx=f"Wx{k}", Wh=f"Wh{k}") for k in ("i", "f", "g", "c")}  # c is g's alias: no o
    with pytest.raises(UserError, match="must describe each gate i, f, g"):
        LayoutConfig(name="twice", gates=gates, output=OutputParams(W="Wy"))


def test_concat_xh_needs_one_matrix_per_gate():
    from lstm_exp.common.errors import UserError
    from lstm_exp.runner.schema import Concat, GateParams, LayoutConfig, OutputParams

    gates = {k: GateParams(Wx=f"Wx{k}", Wh=f"Wh{k}") for k in "ifgo"}
    with pytest.raises(UserError, match="concat=xh needs W for every gate"):
        LayoutConfig(name="xh", concat=Concat.xh, gates=gates, output=OutputParams(W="Wy"))


@pytest.fixture(scope="module")
def style_layouts():
    """The layouts of tests/styles: PyTorch's two biases (b2) and karpathy's bias row (concat bxh), among others."""
    from omegaconf import OmegaConf

    from lstm_exp.runner.schema import LayoutConfig

    folder = Path(__file__).resolve().parent / "styles" / "layouts"
    out = {}
    for path in sorted(folder.glob("*.yaml")):
        node = OmegaConf.load(path)
        node.pop("defaults")
        out[path.stem] = from_config(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(LayoutConfig), node)))
    return out


def test_two_biases_add_up_as_parameters_and_share_one_gradient(style_layouts):
    torch = style_layouts["torch_names"]
    assert expected_shapes(torch, D, H, K)["bias_hh"] == (4 * H,)
    fused = random_fused()
    user = from_fused(fused, torch, D, H, K)
    np.testing.assert_allclose(user["bias_ih"] + user["bias_hh"], fused["b"])
    user["bias_ih"] += 1.0
    user["bias_hh"] -= 1.0  # any split of the same sum is the same model
    np.testing.assert_allclose(to_fused(user, torch, D, H, K)["b"], fused["b"])
    grads = from_fused(fused, torch, D, H, K, grads=True)
    np.testing.assert_array_equal(grads["bias_ih"], fused["b"])
    np.testing.assert_array_equal(grads["bias_hh"], fused["b"])
    np.testing.assert_array_equal(to_fused(grads, torch, D, H, K, grads=True)["b"], fused["b"])


def test_a_bias_kept_as_a_row_of_the_weight_matrix_maps_to_the_fused_bias(style_layouts):
    karpathy = style_layouts["karpathy_wlstm"]  # WLSTM (1 + D + H, 4H) over [1, x, h], gate blocks i, f, o, g
    assert expected_shapes(karpathy, D, H, K)["WLSTM"] == (1 + D + H, 4 * H)
    fused = random_fused()
    W = from_fused(fused, karpathy, D, H, K)["WLSTM"]
    np.testing.assert_array_equal(W[0, 2 * H : 3 * H], fused["b"][3 * H :])  # its o block holds the fused o bias
    np.testing.assert_array_equal(W[1 : 1 + D, :H], fused["Wx"][:, :H])
    np.testing.assert_array_equal(W[1 + D :, 3 * H :], fused["Wh"][:, 2 * H : 3 * H])  # its g block: fused g
    back = to_fused(from_fused(fused, karpathy, D, H, K), karpathy, D, H, K)
    for key, value in fused.items():
        np.testing.assert_array_equal(back[key], value)


def test_a_bias_row_and_a_separate_bias_at_once_are_refused(make_cfg, tmp_path):
    from lstm_exp.common.errors import UserError
    from lstm_exp.runner import layout_files

    path = tmp_path / "both.yaml"
    text = (Path(__file__).resolve().parent / "styles" / "layouts" / "karpathy_wlstm.yaml").read_text()
    path.write_text(text.replace("i: {W: WLSTM}", "i: {W: WLSTM, b: bi}"))
    with pytest.raises(UserError, match=r"layout.gates.i.b=bi: concat=bxh keeps the bias as a row of WLSTM"):
        make_cfg(*layout_files.resolve([f"layout={path}"]))

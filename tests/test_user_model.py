"""A user's own LSTM (model.impl): the contract's errors, and training it through the model seam."""

import textwrap

import numpy as np
import pytest

from lstm_exp.common.errors import UserError
from lstm_exp.models.layout import from_config, to_fused
from lstm_exp.models.seam import build_model
from lstm_exp.runner import job, train

MY_LSTM = "examples/my_lstm.py:MyLSTM"
GOOD = """
import numpy as np
from examples.my_lstm import MyLSTM

class Good(MyLSTM):
    pass
"""


@pytest.fixture
def impl(tmp_path, monkeypatch):
    """impl(source, name) -> a model.impl spec for a file holding ``source``."""
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).resolve().parents[1]))

    def _write(source: str, name: str = "Model") -> str:
        path = tmp_path / "user_lstm.py"
        path.write_text(textwrap.dedent(source))
        return f"{path}:{name}"

    return _write


def prepare(make_cfg, spec, *overrides):
    cfg = make_cfg("task=sin", f"model.impl={spec}", "layout=my_lstm", "model.hidden=4", *overrides)
    return job.prepared_model(cfg, train.build_task(cfg))


def wrapping(body: str) -> str:
    """A model that calls MyLSTM and then breaks its result as ``body`` (one statement a line) says."""
    lines = "".join(f"        {line}\n" for line in body.splitlines())
    return GOOD + (
        "\nclass Model(MyLSTM):\n"
        "    def loss_and_grads(self, params, x, y, h0, c0):\n"
        "        loss, grads, state = super().loss_and_grads(params, x, y, h0, c0)\n" + lines
    )


@pytest.mark.parametrize(
    "source,name,message",
    [
        (None, "Model", "model.impl: no such file"),
        (
            "import numpy\n\nraise RuntimeError('boom')\n",
            "Model",
            r"importing .* raised RuntimeError: boom \(at user_lstm.py:3\)",
        ),
        ("def f(:\n", "Model", r"raised SyntaxError.*\(at user_lstm.py:1\)"),
        ("class Other:\n    pass\n", "Model", r"has no 'Model' \(it defines: Other\)"),
        ("class Model:\n    pass\n", "Model", "Model has no loss_and_grads"),
        (
            "class Model:\n    def loss_and_grads(self, params, x, y):\n        pass\n",
            "Model",
            r"must take \(params, x, y, h0, c0\); it takes \(params, x, y\)",
        ),
        ("class Model:\n    def __init__(self, size):\n        pass\n", "Model", r"Model\(\) raised TypeError"),
        (wrapping("return loss"), "Model", r"must return \(loss, grads, \(hT, cT\)\); it returned float"),
        (wrapping("del grads['Wx_f']\nreturn loss, grads, state"), "Model", "missing Wx_f"),
        (wrapping("grads['Wq'] = grads['Wx_f']\nreturn loss, grads, state"), "Model", "extra Wq"),
        (
            wrapping("grads['Wx_f'] = grads['Wx_f'].T\nreturn loss, grads, state"),
            "Model",
            r"grads\['Wx_f'\] has shape \(4, 1\), the parameter has shape \(1, 4\)",
        ),
        (wrapping("return float('nan'), grads, state"), "Model", r"non-finite loss \(nan\) at the initial weights"),
        (wrapping("return loss, grads, state[0]"), "Model", r"final state as \(hT, cT\)"),
        (wrapping("return 1 / 0"), "Model", r"raised ZeroDivisionError: division by zero \(at user_lstm.py:\d+\)"),
    ],
    ids=[
        "no-file",
        "import-raises",
        "syntax-error",
        "no-name",
        "no-method",
        "wrong-arity",
        "init-needs-args",
        "wrong-structure",
        "missing-grad",
        "extra-grad",
        "wrong-grad-shape",
        "nan-loss",
        "bad-state",
        "raises",
    ],
)
def test_a_contract_break_is_one_line_naming_it(make_cfg, impl, source, name, message):
    spec = impl(source, name) if source is not None else "no/such/file.py:Model"
    with pytest.raises(UserError, match=message) as info:
        prepare(make_cfg, spec)
    assert "\n" not in str(info.value)


def test_init_params_that_do_not_fit_the_layout_name_the_parameter_and_both_shapes(make_cfg, impl):
    spec = impl(
        GOOD
        + """
class Model(MyLSTM):
    def init_params(self, rng, input_dim, hidden, output_dim):
        params = super().init_params(rng, input_dim, hidden, output_dim)
        params["Wh_o"] = params["Wh_o"][:, :2]
        return params
"""
    )
    with pytest.raises(UserError, match=r"layout=my_lstm .*'Wh_o' has shape \(4, 2\), the layout expects \(4, 4\)"):
        prepare(make_cfg, spec)


def test_a_module_path_is_imported_like_a_file(make_cfg, monkeypatch):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    model = prepare(make_cfg, "examples.my_lstm:MyLSTM")
    assert model.label == "MyLSTM"
    with pytest.raises(UserError, match="no module named 'examples.nothing'"):
        prepare(make_cfg, "examples.nothing:MyLSTM")


@pytest.mark.parametrize(
    "overrides,message",
    [
        (("optim.clip_mode=state", "optim.clip=6"), "optim.clip_mode=state: clamps the core's internal BPTT carries"),
        (("model.fault=candidate_from_dc",), "cannot be combined with model.impl"),
        (("model.dtype=float32",), "is fed float64 arrays"),
    ],
)
def test_what_needs_the_core_is_refused_for_a_user_model(make_cfg, overrides, message):
    with pytest.raises(UserError, match=message):
        make_cfg("task=sin", f"model.impl={MY_LSTM}", "layout=my_lstm", *overrides)


def test_without_a_layout_or_init_params_the_tool_says_what_it_needs(make_cfg, impl):
    spec = impl(
        GOOD + "\nclass Model:  # MyLSTM's maths, but no init_params\n"
        "    def loss_and_grads(self, params, x, y, h0, c0):\n"
        "        return MyLSTM().loss_and_grads(params, x, y, h0, c0)\n"
    )
    cfg = make_cfg("task=sin", f"model.impl={spec}")  # and no layout=
    with pytest.raises(UserError, match="has no init_params, so the tool needs layout=<name>"):
        job.prepared_model(cfg, train.build_task(cfg))


def core_and_user(make_cfg, *overrides):
    """The core and MyLSTM on the same config; MyLSTM's mean-over-time MSE is the core's reduction=mean at K=1."""
    cfg = make_cfg("task=sin", "model.hidden=5", "batch_size=3", *overrides)
    user_cfg = make_cfg(
        "task=sin", "model.hidden=5", "batch_size=3", f"model.impl={MY_LSTM}", "layout=my_lstm", *overrides
    )
    task = train.build_task(cfg)
    return build_model(cfg, task), build_model(user_cfg, task), task, from_config(user_cfg.layout)


def test_a_batch_is_fed_one_sequence_at_a_time_and_averaged(make_cfg):
    core, user, task, layout = core_and_user(make_cfg)
    params = user.init_params(np.random.default_rng(0))
    fused = to_fused(params, layout, *user.dims)
    batch = task.batch(0)
    rng = np.random.default_rng(1)
    h0, c0 = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    r_user, r_core = user.step(params, batch.x, batch.y, h0, c0), core.step(fused, batch.x, batch.y, h0, c0)
    assert r_user.loss == pytest.approx(r_core.loss, rel=1e-13)
    mapped = to_fused(r_user.grads, layout, *user.dims)
    for key in r_core.grads:
        np.testing.assert_allclose(mapped[key], r_core.grads[key], rtol=1e-10, atol=1e-14)
    for mine, ref in zip(r_user.dstate, r_core.dstate, strict=True):
        np.testing.assert_allclose(mine, ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(r_user.state[1], r_core.state[1], rtol=1e-13)


def test_training_a_user_model_is_bit_identical_for_the_same_seed(make_cfg):
    cfg = make_cfg(
        "task=sin",
        f"model.impl={MY_LSTM}",
        "layout=my_lstm",
        "steps=8",
        "batch_size=2",
        "model.hidden=4",
        "optim.clip=1",
    )
    a, b = train.run(cfg), train.run(cfg)
    np.testing.assert_array_equal(a.losses, b.losses)
    assert a.outcome in ("finished", "converged") and a.final_loss < a.first_loss
    assert set(a.params) == {f"{w}_{g}" for w in ("Wx", "Wh", "b") for g in "ifgo"} | {"W_out", "b_out"}


def test_the_seed000_cell_diverges_and_the_forensics_name_its_own_tensor(make_cfg):
    cfg = make_cfg(
        "experiment=case000_char", "model.impl=examples/seed000.py:Seed000Cell", "layout=seed000", "steps=20"
    )
    result = train.run(cfg)
    assert result.outcome == "diverged_nan"
    first = result.divergence["first_nonfinite"]
    assert first["tensor"].startswith(("grad.W", "grad.b", "loss")) and "not visible" in first["unavailable"]
    assert "max |c|" not in result.divergence["sentence"]  # the cell state is the user's secret


def test_a_char_run_samples_from_a_user_model_through_its_layout(make_cfg):
    cfg = make_cfg(
        "task=char",
        f"model.impl={MY_LSTM}",
        "layout=my_lstm",
        "steps=3",
        "batch_size=1",
        "model.hidden=8",
        "task.sample_length=20",
    )
    result = train.run(cfg)
    assert len(result.samples) == 1 and len(result.samples[0]) == 20


def test_resuming_a_user_model_continues_bit_for_bit(make_cfg, tmp_path):
    from lstm_exp.runner.checkpoint import load

    args = ("task=sin", f"model.impl={MY_LSTM}", "layout=my_lstm", "steps=10", "batch_size=2", "model.hidden=4")
    whole = train.run(make_cfg(*args))
    (tmp_path / "half").mkdir()
    half = train.run(
        make_cfg(*args[:-3], "steps=5", "batch_size=2", "model.hidden=4", "checkpoint.every=5"),
        run_dir=tmp_path / "half",
    )
    resumed = train.run(make_cfg(*args), resume=load(tmp_path / "half" / "checkpoint.npz"))
    np.testing.assert_array_equal(resumed.losses, whole.losses)
    assert half.steps == 5
    for key in whole.params:
        np.testing.assert_array_equal(resumed.params[key], whole.params[key])


def test_the_report_labels_a_user_model_by_its_class_and_the_core_as_core():
    import pandas as pd

    from lstm_exp.sweeps.statistics import readable

    values = pd.Series([None, "null", "examples/seed000.py:Seed000Cell", "pkg.mod:MyLSTM"])
    assert readable("model.impl", values).tolist() == ["core", "core", "Seed000Cell", "MyLSTM"]
    assert readable("optim.clip", values).equals(values)

"""mode=diagnose names what is wrong in a model's code: the seeds' own LSTMs, the core and its faults."""

import json
import sys
from pathlib import Path

import pytest

from lstm_exp.models.diagnose import convention_named, diagnose
from lstm_exp.runner import train
from lstm_exp.runner.checks import run_diagnosis, subject

ROOT = Path(__file__).resolve().parents[1]

# (task, model.impl or model.fault, layout, verdict, findings, matched faults); every example and every fault
CASES = [
    (
        "char",
        "examples/seed000.py:Seed000Cell",
        "seed000",
        "backward_differs",
        ["loss_scale", "local_derivatives"],
        ["sigmoid_of_activation", "candidate_from_dc"],
    ),  # its loss is the mean over time, its gradients the sum's
    (
        "char",
        "examples/seed000.py:Seed000FixedDerivatives",
        "seed000",
        "backward_differs",
        ["loss_scale", "local_derivatives"],
        ["candidate_from_dc"],
    ),
    ("char", "examples/seed000.py:Seed000Repaired", "seed000", "backward_differs", ["loss_scale"], []),
    ("x2", "examples/seed001.py:BlogLSTM", "seed001", "backward_differs", ["bptt_carry"], []),
    ("sin", "examples/seed002.py:Seed002LSTM", "seed002", "correct", [], []),  # its harness was the bug
    ("x2", "examples/seed002.py:Seed002LSTM", "seed002", "backward_differs", ["loss_scale"], []),  # K = 6
    ("char", "examples/seed003.py:Seed003Question", "seed003", "backward_differs", ["bptt_carry"], []),
    ("char", "examples/seed003.py:Seed003Answer", "seed003", "correct", [], []),
    ("sin", "examples/my_lstm.py:MyLSTM", "my_lstm", "correct", [], []),
    ("char", "examples/my_lstm.py:MyLSTM", "my_lstm", "correct", [], []),
    (
        "x2",
        "examples/my_lstm.py:MyLSTMBuggy",
        "my_lstm",
        "backward_differs",
        ["local_derivatives"],
        ["forget_from_c_t"],
    ),
    ("sin", None, None, "correct", [], []),
    ("char", "sigmoid_of_activation", None, "backward_differs", ["local_derivatives"], ["sigmoid_of_activation"]),
    ("sin", "candidate_from_dc", None, "backward_differs", ["local_derivatives"], ["candidate_from_dc"]),
    ("x2", "dh_prev_one_gate", None, "backward_differs", ["bptt_carry"], ["dh_prev_one_gate"]),
]


def diagnosis_of(make_cfg, task, model, layout, *more):
    overrides = [f"task={task}", *more]
    if model is not None:
        overrides += [f"model.impl={model}", f"layout={layout}"] if ":" in model else [f"model.fault={model}"]
    cfg = make_cfg(*overrides)
    built = train.build_task(cfg)
    model, layout, params, dims = subject(cfg, built)
    return diagnose(model, params, layout, dims, built.loss, built.loss == "xent", cfg.seed)


@pytest.fixture(autouse=True)
def from_the_repository_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize(
    "task,model,layout,verdict,findings,matched",
    CASES,
    ids=[f"{c[1] or 'core'}-{c[0]}".rpartition(":")[2] for c in CASES],
)
def test_diagnose_gives_each_model_its_verdict(make_cfg, task, model, layout, verdict, findings, matched):
    d = diagnosis_of(make_cfg, task, model, layout)
    assert (d.verdict, d.findings, d.matched_faults) == (verdict, findings, matched), d.sentence


def test_a_correct_from_scratch_lstm_is_within_1e_9_of_the_reference_everywhere(make_cfg):
    d = diagnosis_of(make_cfg, "sin", "examples/my_lstm.py:MyLSTM", "my_lstm")
    assert all(t["passed"] and t["reference_rel_error"] <= 1e-9 for t in d.tensors)
    assert {t["name"] for t in d.tensors} >= {"Wx_i", "Wh_o", "b_g", "W_out", "b_out", "h0", "c0"}


def test_the_blog_is_right_at_t1_but_its_carry_is_not(make_cfg):
    d = diagnosis_of(make_cfg, "x2", "examples/seed001.py:BlogLSTM", "seed001")
    assert "right at T=1, non-zero state but wrong at T=4" in d.sentence
    assert "the returned dL/dh0 (the hidden carry) differs" in d.sentence


def test_seed002s_gradients_are_named_as_those_of_the_summed_loss(make_cfg):
    d = diagnosis_of(make_cfg, "x2", "examples/seed002.py:Seed002LSTM", "seed002")
    assert d.loss_convention == "sum over time, mean over outputs"
    assert "6x the gradient of the loss it returns" in d.sentence
    assert "gradients of the sum over time and outputs" in d.sentence


def test_loss_conventions_are_named_by_their_exact_ratio():
    assert convention_named("mse", 5, 6, 1 / 30) == "mean over time and outputs"
    assert convention_named("mse", 5, 1, 0.5) == "1/2 sum over time"
    assert convention_named("xent", 5, 6, 0.2) == "mean over time"
    assert convention_named("xent", 5, 6, 0.3) is None


def test_a_forward_that_differs_is_named(make_cfg, tmp_path):
    path = tmp_path / "peephole.py"
    path.write_text(
        "from examples.my_lstm import MyLSTM\n\n"
        "class Model(MyLSTM):\n"
        "    def loss_and_grads(self, params, x, y, h0, c0):\n"
        "        loss, grads, state = super().loss_and_grads(params, x, y, h0 * 0.5, c0)\n"
        "        return loss, grads, state\n"
    )
    sys.path.insert(0, str(ROOT))
    try:
        d = diagnosis_of(make_cfg, "sin", f"{path}:Model", "my_lstm")
    finally:
        sys.path.remove(str(ROOT))
    assert d.verdict == "forward_differs" and d.findings[0] == "forward"


def test_diagnosis_json_has_exactly_the_documented_keys(make_cfg, tmp_path):
    cfg = make_cfg(
        "task=char", "model.impl=examples/seed003.py:Seed003Question", "layout=seed003", "tracking.enabled=false"
    )
    from lstm_exp.runner.context import JobContext

    verdict = run_diagnosis(cfg, JobContext(output_dir=str(tmp_path)), {})
    payload = json.loads((tmp_path / "diagnosis.json").read_text())
    assert verdict == payload["verdict"] == "backward_differs"
    assert set(payload) == {"verdict", "findings", "matched_faults", "loss_convention", "tensors", "sentence"}
    keys = {"name", "gradcheck_rel_error", "reference_rel_error", "passed", "result"}
    assert all(set(t) == keys for t in payload["tensors"])
    assert payload["findings"] == ["bptt_carry"]


@pytest.fixture
def cli(app, tmp_path):
    """The app from the repository root (the examples' paths are relative to it), untracked."""
    return lambda *args: app.run(ROOT, *args, "tracking.enabled=false", f"hydra.run.dir={tmp_path}/run")


@pytest.mark.parametrize(
    "impl,layout,code",
    [("examples/seed003.py:Seed003Answer", "seed003", 0), ("examples/seed003.py:Seed003Question", "seed003", 1)],
)
def test_mode_diagnose_exits_0_when_correct_and_1_when_it_found_a_bug(cli, impl, layout, code):
    done = cli("mode=diagnose", "task=char", f"model.impl={impl}", f"layout={layout}")
    assert done.returncode == code, done.stderr
    assert "verdict: " + ("correct" if code == 0 else "backward_differs") in done.stdout


def test_mode_diagnose_without_a_layout_is_bad_input(cli):
    done = cli("mode=diagnose", "task=sin", "model.impl=examples/my_lstm.py:MyLSTM")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "needs layout=<name>" in done.stderr


def test_mode_gradcheck_checks_a_user_model_against_its_own_loss(make_cfg, capsys):
    from lstm_exp.runner.checks import run_own_gradcheck

    assert run_own_gradcheck(make_cfg("task=sin", "model.impl=examples/seed002.py:Seed002LSTM"))  # K = 1
    assert not run_own_gradcheck(make_cfg("task=x2", "model.impl=examples/seed002.py:Seed002LSTM"))  # K = 6
    assert "FAIL in Wf" in capsys.readouterr().out


STYLES = ROOT / "tests" / "styles"


def test_a_layout_file_from_the_users_own_folder_works_like_a_preset(cli):
    done = cli(
        "mode=diagnose",
        "task=char",
        f"model.impl={STYLES}/karpathy_wlstm.py:KarpathyLSTM",
        f"layout={STYLES}/layouts/karpathy_wlstm.yaml",  # a bias row in one matrix over [1, x, h]
    )
    assert done.returncode == 0, done.stderr
    assert "verdict: correct" in done.stdout


def test_a_typo_in_a_layout_file_names_the_bad_key(cli, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text((STYLES / "layouts" / "colah.yaml").read_text().replace("orientation:", "orientaton:"))
    done = cli("mode=diagnose", "task=sin", f"model.impl={STYLES}/colah.py:ColahLSTM", f"layout={path}")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "Key 'orientaton' not in 'LayoutConfig' (layout.orientaton)" in done.stderr
    assert "docs/own_lstm.md#layouts" in done.stderr
    done = cli("mode=diagnose", "task=sin", f"model.impl={STYLES}/colah.py:ColahLSTM", "layout=no/such/layout.yaml")
    assert done.returncode == 2 and "layout=no/such/layout.yaml: no such file" in done.stderr


def test_a_parameter_the_layout_names_but_init_params_lacks_is_one_line_before_the_code_runs(cli, tmp_path):
    path = tmp_path / "lacking.py"
    path.write_text(
        "from examples.my_lstm import MyLSTM\n\n"
        "class Lacking(MyLSTM):\n"
        "    def init_params(self, rng, D, H, K):\n"
        "        params = super().init_params(rng, D, H, K)\n"
        "        del params['Wh_o']\n"
        "        return params\n\n"
        "    def loss_and_grads(self, params, x, y, h0, c0):\n"
        "        raise RuntimeError('the code ran')\n"
    )
    done = cli("mode=diagnose", "task=sin", f"model.impl={path}:Lacking", "layout=my_lstm")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "the code ran" not in done.stderr
    assert "parameter 'Wh_o' is missing from the params of Lacking.init_params" in done.stderr


def test_code_that_reads_a_parameter_the_layout_does_not_name_is_told_which_it_has(cli, tmp_path):
    path = tmp_path / "reads.py"
    path.write_text(
        "from examples.my_lstm import MyLSTM\n\n"
        "class Reads(MyLSTM):\n"
        "    def loss_and_grads(self, params, x, y, h0, c0):\n"
        "        params['W_peep']\n"
    )
    done = cli("mode=diagnose", "task=sin", f"model.impl={path}:Reads", "layout=my_lstm")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "raised KeyError: 'W_peep'" in done.stderr and "reads.py:5" in done.stderr
    assert "it reads params['W_peep'], and the params it was given have Wx_i, Wx_f" in done.stderr


def test_a_forward_that_differs_by_the_layouts_gate_order_is_told_the_order_that_matches(tmp_path):
    import lstm_exp
    from tests.styles.cs231n_steps import StepFunctionsLSTM

    path = tmp_path / "wrong_order.yaml"
    path.write_text(
        (STYLES / "layouts" / "cs231n_steps.yaml").read_text().replace("gate_order: ifog", "gate_order: ifgo")
    )
    d = lstm_exp.diagnose(StepFunctionsLSTM(), layout=str(path), task="char", tracking__enabled=False)
    assert d.verdict == "forward_differs"
    assert "your forward matches the core with gate_order ifog; your layout says ifgo" in d.sentence


def test_a_forward_with_two_gates_named_the_other_way_round_is_told_which(tmp_path):
    import lstm_exp
    from tests.styles.tutorial_rows import TutorialLSTM

    path = tmp_path / "swapped.yaml"
    text = (STYLES / "layouts" / "tutorial_rows.yaml").read_text()
    path.write_text(
        text.replace("{Wx: U_i, Wh: W_i, b: bias_i}", "{Wx: U_x, Wh: W_x, b: bias_x}")
        .replace("{Wx: U_f, Wh: W_f, b: bias_f}", "{Wx: U_i, Wh: W_i, b: bias_i}")
        .replace("U_x, Wh: W_x, b: bias_x", "U_f, Wh: W_f, b: bias_f")
    )
    d = lstm_exp.diagnose(TutorialLSTM(), layout=str(path), task="x2", tracking__enabled=False)
    assert d.verdict == "forward_differs"
    assert "your forward matches the core with the gates i: U_i, f: U_f; your layout says i: U_f, f: U_i" in d.sentence


@pytest.mark.slow
@pytest.mark.parametrize(
    "task,model,layout,verdict,findings,matched",
    CASES,
    ids=[f"{c[1] or 'core'}-{c[0]}".rpartition(":")[2] for c in CASES],
)
def test_every_example_gets_the_same_diagnosis_on_ten_seeds(make_cfg, task, model, layout, verdict, findings, matched):
    for seed in range(10):
        d = diagnosis_of(make_cfg, task, model, layout, f"seed={seed}")
        assert (d.verdict, d.findings, d.matched_faults) == (verdict, findings, matched), (seed, d.sentence)

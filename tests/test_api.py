"""lstm_exp.diagnose and lstm_exp.train: a model object in Python, on the command line's own code path."""

import subprocess
import sys
from pathlib import Path

import pytest

import lstm_exp
from examples.my_lstm import MyLSTM, MyLSTMBuggy
from examples.my_lstm_batched import MyLSTMBatched
from lstm_exp.common.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_diagnose_takes_a_model_object_and_names_its_bug():
    d = lstm_exp.diagnose(MyLSTMBuggy(), layout="my_lstm", task="x2")
    assert (d.verdict, d.findings, d.matched_faults) == ("backward_differs", ["local_derivatives"], ["forget_from_c_t"])
    assert str(d).splitlines()[0] == d.table.splitlines()[0] and d.summary in str(d)
    html = d._repr_html_()
    assert "<table>" in html and "forget_from_c_t" in html and "<code>Wx_f</code>" in html


def test_diagnose_checks_a_batched_model_as_the_unbatched_one():
    for model in (MyLSTM(), MyLSTMBatched()):
        d = lstm_exp.diagnose(model, layout="my_lstm", task="char", seed=2)
        assert d.verdict == "correct", d.sentence


def test_train_returns_the_outcome_the_figures_and_every_steps_history():
    r = lstm_exp.train(MyLSTMBatched(), layout="my_lstm", task="sin", steps=40, seed=1, tracking__enabled=False)
    assert r.outcome in ("converged", "finished") and r.run_id is None
    assert list(r.history.columns) == ["step", "train_loss", "grad_norm"] and len(r.history) == 40
    assert r.metrics["final_loss"] < r.metrics["first_loss"] and set(r.params) >= {"Wx_i", "W_out"}
    again = lstm_exp.train(MyLSTMBatched(), layout="my_lstm", task="sin", steps=40, seed=1, tracking__enabled=False)
    assert again.history.equals(r.history)  # same config and seed, the same numbers


def test_a_batched_model_trains_to_the_numbers_of_the_one_fed_a_sequence_at_a_time():
    settings = {"layout": "my_lstm", "task": "sin", "steps": 15, "tracking__enabled": False}
    one, batched = lstm_exp.train(MyLSTM(), **settings), lstm_exp.train(MyLSTMBatched(), **settings)
    assert abs(one.history.train_loss - batched.history.train_loss).max() < 1e-12


def test_train_with_tracking_records_an_mlflow_run(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    r = lstm_exp.train(task="sin", steps=5, **{"model.hidden": 8})
    run = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(r.run_id)
    assert run.info.status == "FINISHED" and run.data.params["model.hidden"] == "8"
    assert "startup_seconds" not in run.data.metrics  # a notebook's process age is no start-up time


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: lstm_exp.diagnose(MyLSTM(), layout="nope"), "Could not find 'layout/nope': choose one of"),
        (lambda: lstm_exp.diagnose(MyLSTM(), task="sin"), "needs layout=<name>"),
        (lambda: lstm_exp.train(MyLSTM(), layout="my_lstm", optim__lrr=1), "optim.lrr"),
        (lambda: lstm_exp.train(task="sin", steps=0), "steps=0: must be > 0"),
        (lambda: lstm_exp.train(task="sin", mode="diagnose"), "lstm_exp.train trains"),
    ],
)
def test_bad_input_raises_the_one_line_the_command_line_prints(call, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        call()


def test_importing_the_package_stays_cheap():
    code = "import sys, lstm_exp; print(sorted(m for m in ('hydra', 'numpy', 'mlflow') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"

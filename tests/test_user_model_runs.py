"""A user model in real processes: refused before any MLflow run exists, recorded when it fails mid-sweep."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

RAISES_LATER = """
import sys
sys.path.insert(0, {root!r})
from examples.my_lstm import MyLSTM


class Model(MyLSTM):
    calls = 0

    def loss_and_grads(self, params, x, y, h0, c0):
        Model.calls += 1
        if Model.calls > 6:  # after the probe and a few steps
            raise FloatingPointError("my own bug")
        return super().loss_and_grads(params, x, y, h0, c0)
"""


@pytest.fixture
def run(app, tmp_path):
    """run(*overrides) -> (the finished app, its store): from the repository root, into a fresh store."""
    store = f"sqlite:///{tmp_path}/mlflow.db"

    def _run(*args):
        where = (f"tracking.uri={store}", f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep")
        return app.run(ROOT, *args, *where), store

    return _run


def runs_in(store):
    import mlflow

    client = mlflow.MlflowClient(store)
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


def test_a_broken_user_model_is_one_line_exit_2_and_no_run(tmp_path, run):
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy\nraise ImportError('no such thing')\n")
    done, store = run("task=sin", f"model.impl={bad}:Model", "layout=my_lstm")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: model.impl: importing {bad} raised ImportError: no such thing (at bad.py:2)"
    ]
    assert not (tmp_path / "mlflow.db").exists() or runs_in(store) == []


def test_a_user_model_raising_mid_sweep_fails_its_run_with_its_traceback_and_the_sweep_goes_on(tmp_path, run):
    impl = tmp_path / "later.py"
    impl.write_text(RAISES_LATER.format(root=str(ROOT)))
    done, store = run(
        "-m",
        "task=sin",
        "steps=12",
        "batch_size=1",
        "model.hidden=4",
        "layout=my_lstm",
        f"model.impl=examples/my_lstm.py:MyLSTM,{impl}:Model",
    )
    assert done.returncode == 1, done.stderr
    assert "sweep: 2 jobs" in done.stdout + done.stderr
    runs = {r.data.params.get("model.impl"): r for r in runs_in(store) if "sweep.job" in r.data.tags}
    failed, ok = runs[f"{impl}:Model"], runs["examples/my_lstm.py:MyLSTM"]
    assert (failed.info.status, failed.data.tags["outcome"]) == ("FAILED", "failed")
    assert ok.info.status == "FINISHED"
    import mlflow

    trace = Path(mlflow.MlflowClient(store).download_artifacts(failed.info.run_id, "error.txt", str(tmp_path)))
    text = trace.read_text()
    assert "FloatingPointError: my own bug" in text and "later.py" in text


def test_a_diagnosis_is_an_mlflow_run_with_its_verdict(tmp_path, run):
    done, store = run("mode=diagnose", "task=char", "model.impl=examples/seed003.py:Seed003Question", "layout=seed003")
    assert done.returncode == 1, done.stderr
    (diagnosis,) = runs_in(store)
    assert diagnosis.data.tags["verdict"] == "backward_differs"
    assert diagnosis.data.tags["findings"] == "bptt_carry"
    assert diagnosis.info.status == "FINISHED"
    assert (tmp_path / "run" / "diagnosis.json").exists()

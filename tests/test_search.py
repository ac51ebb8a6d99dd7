"""hparams_search: an Optuna (>= 4) study that persists, resumes, fails diverged trials, and opens in
optuna-dashboard."""

import json
import sys
from types import SimpleNamespace

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from lstm_exp.sweeps.search import distributions, run_search, storage_uri


class FakeLauncher:
    """Returns the given values in turn (None: a diverged or failed job); stops after ``stop_after`` jobs."""

    def __init__(self, values, stop_after=None):
        self.values, self.stop_after, self.batches = list(values), stop_after, []
        self.stopped_by = None

    def launch(self, batch, initial_job_idx):
        self.batches.append(batch)
        if self.stop_after is not None and initial_job_idx + len(batch) > self.stop_after:
            batch, self.stopped_by = batch[: self.stop_after - initial_job_idx], 2
        return [JobReturn(status=JobStatus.COMPLETED, _return_value=self.values.pop(0)) for _ in batch]


def sweeper(tmp_path, launcher, n_trials):
    config = OmegaConf.create(
        {
            "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db"},
            "hydra": {
                "sweeper": {
                    "direction": "minimize", "study_name": "s", "storage": None, "n_trials": n_trials, "n_jobs": 2,
                    "seed": 0, "params": {"optim.lr": "tag(log, interval(0.001, 1.0))", "init": "choice(he, xavier)"},
                }
            },
        }
    )  # fmt: skip
    return SimpleNamespace(config=config, launcher=launcher)


def study(tmp_path):
    return optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db")


def test_the_search_space_is_hydras_sweep_syntax():
    space, fixed = distributions({"optim.lr": "tag(log, interval(0.001, 1.0))", "optim.clip": "choice(0, 1, 5)",
                                  "seed": "range(0,3)", "steps": "100"})  # fmt: skip
    assert space["optim.lr"] == optuna.distributions.FloatDistribution(0.001, 1.0, log=True)
    assert space["optim.clip"].choices == ("0", "1", "5") and space["seed"].choices == ("0", "1", "2")
    assert fixed == ["steps=100"]


def test_the_study_sits_beside_the_tracking_store(tmp_path):
    assert storage_uri(None, f"sqlite:///{tmp_path}/mlflow.db") == f"sqlite:///{tmp_path}/optuna.db"
    assert storage_uri(None, "postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert storage_uri("sqlite:///elsewhere.db", None) == "sqlite:///elsewhere.db"


def test_a_diverged_trial_is_failed_and_a_second_run_continues_the_study(tmp_path):
    first = FakeLauncher([0.5, None, 0.25])
    run_search(sweeper(tmp_path, first, n_trials=3), ["task=sin"])
    states = [t.state for t in study(tmp_path).trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert [len(b) for b in first.batches] == [2, 1] and all(job[0] == "task=sin" for b in first.batches for job in b)
    again = FakeLauncher([0.125, 0.75])
    run_search(sweeper(tmp_path, again, n_trials=5), ["task=sin"])  # resumed: only the 2 missing trials
    assert len(study(tmp_path).trials) == 5 and study(tmp_path).best_value == 0.125


def test_trials_a_stopped_sweep_never_started_do_not_count(tmp_path):
    run_search(sweeper(tmp_path, FakeLauncher([0.5, 0.4, 0.3], stop_after=1), n_trials=3), [])
    trials = study(tmp_path).trials
    assert [(t.state.name, t.user_attrs.get("not_run", False)) for t in trials] == [("COMPLETE", False), ("FAIL", True)]
    resumed = FakeLauncher([0.4, 0.3])
    run_search(sweeper(tmp_path, resumed, n_trials=3), [])
    assert sum(len(b) for b in resumed.batches) == 2  # 3 - the 1 that ran


@pytest.mark.slow
def test_a_real_search_resumes_and_opens_in_optuna_dashboard(tmp_path, app):
    search = ["hparams_search=stability", "task=sin", "steps=60", "log_every=5"]
    first = app.multirun(tmp_path, *search, "hydra.sweeper.n_trials=3")
    assert first.returncode == 0, first.stderr[-3000:]
    again = app.run(tmp_path, "-m", "hydra.sweep.dir=outputs/again", *search, "hydra.sweeper.n_trials=5")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "sweep: 2 jobs" in again.stdout  # only the missing trials ran
    trials = optuna.load_study(study_name="stability", storage=f"sqlite:///{tmp_path}/optuna.db").trials
    assert len(trials) == 5 and all(t.state.name in ("COMPLETE", "FAIL") for t in trials)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    children = [r for r in runs if r.data.tags.get("sweep.role") != "parent"]
    assert len(children) == 5 and sum(r.data.tags.get("sweep.role") == "parent" for r in runs) == 2
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed (the optuna extra)")
    studies = dashboard_get(f"sqlite:///{tmp_path}/optuna.db", "/api/studies")
    assert [s["study_name"] for s in studies["study_summaries"]] == ["stability"]


def dashboard_get(storage: str, path: str) -> dict:
    """GET ``path`` from optuna-dashboard's WSGI app on ``storage`` (no server needed)."""
    from optuna_dashboard import wsgi

    out = {}
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "0",
               "wsgi.url_scheme": "http", "wsgi.input": sys.stdin, "wsgi.errors": sys.stderr,
               "QUERY_STRING": ""}  # fmt: skip
    body = b"".join(wsgi(storage)(environ, lambda status, headers, exc_info=None: out.setdefault("status", status)))
    assert out["status"].startswith("200"), out
    return json.loads(body)

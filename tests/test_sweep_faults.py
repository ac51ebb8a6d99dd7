"""A sweep survives its jobs' processes: real processes, real signals, a real SQLite store.

A job killed with ``kill -9`` costs that job alone; Ctrl-C or SIGTERM — to the launching process or to its
whole process group, as a terminal sends it — stops the sweep: running jobs checkpoint and end KILLED, the
jobs not started are counted and listed with the commands that run them, the parent ends KILLED, and an
interrupted job resumes into its own run without a metric point lost or repeated.
"""

import importlib.util
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.processes import wait_for

pytestmark = pytest.mark.slow

STEPS, LOG_EVERY = 4000, 50


def launch(cwd, *overrides):
    """A sweep in a session of its own (its process group id is its pid), two jobs at a time."""
    cmd = [sys.executable, "-m", "lstm_exp", "-m", "progress=false", "hydra.sweep.dir=sweep"]
    cmd += ["hydra.launcher.n_jobs=2", "task=sin", f"log_every={LOG_EVERY}", "tracking.log_every=1", *overrides]
    return subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def training(cwd, job) -> bool:
    """Job ``job`` has logged a metric point to its MLflow run (read without MLflow: the store may be new)."""
    query = (
        "SELECT count(*) FROM metrics m JOIN tags t ON m.run_uuid = t.run_uuid "
        "WHERE t.key = 'sweep.job' AND t.value = ?"
    )
    try:
        with sqlite3.connect(cwd / "mlflow.db") as con:
            return con.execute(query, (str(job),)).fetchone()[0] > 0
    except sqlite3.Error:  # not created yet
        return False


def owner_pid(cwd, job) -> int:
    return json.loads((cwd / "sweep" / str(job) / "run.lock").read_text())["pid"]


def by_role(uri):
    client = MlflowClient(uri)
    found = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    parents = [r for r in found if r.data.tags.get("sweep.role") == "parent"]
    children = {int(r.data.tags["sweep.job"]): r for r in found if r.data.tags.get("sweep.role") != "parent"}
    return parents, children


def logged_steps(uri, run_id) -> list[int]:
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, "train_loss"))


def every_step(steps: int) -> list[int]:
    return sorted({*range(0, steps, LOG_EVERY), steps - 1})


def test_a_job_killed_with_sigkill_costs_that_job_alone(tmp_path):
    proc = launch(tmp_path, "steps=1500", "seed=range(0,6)")
    assert wait_for(lambda: training(tmp_path, 0), timeout=120)
    os.kill(owner_pid(tmp_path, 0), signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err[-3000:]
    assert "sweep: 6 jobs (5 converged, 1 failed); 1 failed" in out
    assert "#0 seed=0: failed: the job's process was killed by SIGKILL" in out and "Traceback" not in err
    status = json.loads((tmp_path / "sweep" / "0" / "job_status.json").read_text())
    assert status["outcome"] == "failed" and "SIGKILL" in status["error"]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    (parent,), children = by_role(uri)
    assert sorted(children) == list(range(6)) and parent.info.status == "FINISHED"
    killed = children.pop(0)
    assert (killed.info.status, killed.data.tags["outcome"]) == ("FAILED", "failed")
    assert "SIGKILL" in killed.data.tags["error"] and status["mlflow_run_id"] == killed.info.run_id
    for run in children.values():  # every other job ran to its end, every metric point once
        assert run.info.status == "FINISHED"
        assert logged_steps(uri, run.info.run_id) == every_step(1500)
    assert parent.data.tags["sweep.failed"] == "1" and parent.data.tags["sweep.planned"] == "6"


@pytest.mark.parametrize(
    "sig,to_group",
    [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, True)],
    ids=["int", "int-group", "term-group"],
)
def test_a_signal_stops_the_sweep_and_says_how_to_go_on(tmp_path, sig, to_group):
    proc = launch(tmp_path, f"steps={STEPS}", "seed=range(0,4)")
    assert wait_for(lambda: training(tmp_path, 0) and training(tmp_path, 1), timeout=120)
    (os.killpg if to_group else os.kill)(proc.pid, sig)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, err[-3000:]
    assert "Traceback" not in err
    assert "sweep: 2 of 4 planned jobs ran (2 killed); 2 not run; 0 failed" in out
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert summary["stopped_by"] == signal.Signals(sig).name
    assert summary["to_go_on"] == ["python -m lstm_exp resume=sweep"]  # one command finishes the sweep
    assert "to finish it: python -m lstm_exp resume=sweep" in err
    for job in (0, 1):
        assert (tmp_path / "sweep" / str(job) / "checkpoint.npz").exists()
        assert json.loads((tmp_path / "sweep" / str(job) / "job_status.json").read_text())["outcome"] == "killed"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    (parent,), children = by_role(uri)
    assert parent.info.status == "KILLED" and parent.data.tags["sweep.stopped_by"] == signal.Signals(sig).name
    assert sorted(children) == [0, 1] and all(r.info.status == "KILLED" for r in children.values())

    if sig != signal.SIGINT or not to_group:
        return
    # one command finishes it as the same sweep: the interrupted jobs go on into their own runs, the others start,
    # all under the one parent, every job once, every metric point once
    done = subprocess.run(
        [sys.executable, "-m", "lstm_exp", "resume=sweep"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"sweep: 4 jobs \([^)]*\); 0 failed", done.stdout) and "[4/4]" in done.stdout
    (parent_again,), children = by_role(uri)
    assert parent_again.info.run_id == parent.info.run_id and parent_again.info.status == "FINISHED"
    assert sorted(children) == [0, 1, 2, 3] and all(r.info.status == "FINISHED" for r in children.values())
    for run in children.values():
        assert logged_steps(uri, run.info.run_id) == every_step(STEPS)


def test_under_joblib_a_killed_worker_leaves_nothing_running(tmp_path):
    if importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None:
        pytest.skip("hydra-joblib-launcher is not installed")
    proc = launch(tmp_path, "hydra/launcher=joblib", "steps=3000", "seed=0,1")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert wait_for(lambda: training(tmp_path, 0) and training(tmp_path, 1), timeout=120)
    os.kill(owner_pid(tmp_path, 0), signal.SIGKILL)  # joblib's pool then fails every job and the sweep raises
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    parents, children = by_role(uri)
    assert [r.info.status for r in parents] == ["FAILED"] and "launcher raised" in err
    assert sorted(children) == [0, 1] and not [r for r in children.values() if r.info.status == "RUNNING"]
    assert "killed, or out of memory" in children[0].data.tags["error"]

"""One owner per run: real processes, signals and a real SQLite store.

The stale-run repair never touches a live run; two resumes of one run cannot both write it; a resume of a
run that has ended leaves it alone; a resumed run that ends sheds its interruption tags.
"""

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.processes import runs, start, wait_for

pytestmark = pytest.mark.slow


def run_count(db: Path) -> int:
    """Runs in a SQLite store, read without MLflow (which would create a store that does not exist yet)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as con:
            return con.execute("SELECT count(*) FROM runs").fetchone()[0]
    except sqlite3.Error:  # still being created
        return 0


def report(cwd, uri, *args):
    cmd = [sys.executable, "-m", "lstm_exp.report", "--uri", uri, *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_fix_stale_marks_only_runs_whose_owner_is_gone(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    live = start(tmp_path, "task=sin", "steps=100000", f"tracking.uri={uri}", "hydra.run.dir=live")
    doomed = None
    try:  # one at a time: processes creating a fresh SQLite store at once collide (MLflow's migrations)
        assert wait_for(lambda: run_count(tmp_path / "mlflow.db") == 1)
        doomed = start(tmp_path, "task=sin", "steps=100000", f"tracking.uri={uri}", "hydra.run.dir=doomed",
                       start_new_session=True)  # fmt: skip
        assert wait_for(lambda: run_count(tmp_path / "mlflow.db") == 2)
        assert report(tmp_path, uri, "--fix-stale").returncode == 0
        assert sorted(r.info.status for r in runs(uri)) == ["RUNNING", "RUNNING"]  # both owners alive
        os.killpg(doomed.pid, signal.SIGKILL)  # the process and its tracking agent die hard: the run stays RUNNING
        doomed.wait(timeout=30)
        listed = report(tmp_path, uri, "--stale")
        doomed_id = next(r.info.run_id for r in runs(uri) if r.data.tags["run.dir"].endswith("doomed"))
        live_id = next(r.info.run_id for r in runs(uri) if r.data.tags["run.dir"].endswith("live"))
        assert doomed_id in listed.stdout and live_id not in listed.stdout
        assert f"marked FAILED: {doomed_id}" in report(tmp_path, uri, "--fix-stale").stdout
        status = {r.info.run_id: r.info.status for r in runs(uri)}
        assert status == {doomed_id: "FAILED", live_id: "RUNNING"}
    finally:
        for proc in (live, doomed):
            if proc is not None:
                proc.kill()
                proc.wait(timeout=30)


@pytest.fixture
def interrupted_run(tmp_path):
    """A run stopped by SIGINT after its first checkpoints: (cwd, uri, run folder, MLflow run id)."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = start(
        tmp_path,
        "task=sin",
        "steps=1500",
        "checkpoint.every=20",
        "log_every=5",
        f"tracking.uri={uri}",
        "hydra.run.dir=run",
    )
    assert wait_for(lambda: (tmp_path / "run" / "checkpoint.npz").exists())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    (run,) = runs(uri)
    assert run.info.status == "KILLED" and "error" in run.data.tags
    return tmp_path, uri, tmp_path / "run", run.info.run_id


def test_two_resumes_at_once_cannot_both_write_the_run(interrupted_run):
    cwd, uri, run_dir, run_id = interrupted_run
    first = start(cwd, f"resume={run_dir}", "hydra.run.dir=r1")
    assert wait_for(lambda: (run_dir / "run.lock").exists())
    second = subprocess.run(
        [sys.executable, "-m", "lstm_exp", "progress=false", f"resume={run_dir}", "hydra.run.dir=r2"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [second.stderr.strip()]
    assert "is in use by process" in second.stderr
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    history = MlflowClient(uri).get_metric_history(run_id, "train_loss")
    steps = [m.step for m in history]
    assert len(steps) == len(set(steps)) and max(steps) == 1499  # every step once, none twice
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED" and "error" not in run.data.tags  # the interruption is over
    assert not (run_dir / "run.lock").exists()


def test_resuming_a_run_that_has_ended_leaves_it_alone(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstm_exp",
            "progress=false",
            "task=sin",
            "steps=30",
            "checkpoint.every=10",
            f"tracking.uri={uri}",
            "hydra.run.dir=run",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (before,) = runs(uri)
    folders = sorted(p.name for p in Path(tmp_path).iterdir())
    again = subprocess.run(
        [sys.executable, "-m", "lstm_exp", "progress=false", "resume=run", f"tracking.uri={uri}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "has already ended (converged); nothing to resume" in again.stdout
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == folders  # no new run folder
    (after,) = runs(uri)
    assert (after.info.status, after.info.end_time) == (before.info.status, before.info.end_time)


def test_a_sweep_over_tasks_puts_a_parent_in_each_experiment_beside_its_children(tmp_path, app):
    done = app.multirun(tmp_path, "task=x2,char", "steps=5", "batch_size=2")
    assert done.returncode == 0, done.stderr[-2000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    layout = {}
    for experiment in client.search_experiments():
        found = client.search_runs([experiment.experiment_id])
        parents = [r.info.run_id for r in found if r.data.tags.get("sweep.role") == "parent"]
        children = [r.data.tags.get("mlflow.parentRunId") for r in found if r.data.tags.get("sweep.role") != "parent"]
        if found:
            layout[experiment.name] = (len(parents), children == parents)
    assert layout == {"x2": (1, True), "char": (1, True)}  # no stray "sin" experiment, each child under its parent


def test_a_tracking_store_deleted_under_a_run_is_said_loudly_at_the_end(tmp_path):
    proc = start(tmp_path, "task=sin", "steps=2500", "hydra.run.dir=run")
    assert wait_for(lambda: run_count(tmp_path / "mlflow.db") == 1)
    for path in tmp_path.glob("mlflow.db*"):
        path.unlink()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert "was deleted or replaced while this run wrote to it" in err and "view it" not in out
    assert '"outcome": "failed"' in (tmp_path / "run" / "job_status.json").read_text()


def test_a_corrupt_status_file_is_one_failed_job_and_the_sweep_still_ends(tmp_path):
    from lstm_exp.sweeps.callback import read_statuses, summary_line

    for job, text in (("0", '{"job": 0, "outcome": "converged"}'), ("1", "{not json"), ("2", None)):
        (tmp_path / job).mkdir()
        if text is not None:
            (tmp_path / job / "job_status.json").write_text(text)
    records = read_statuses(tmp_path)
    assert [r["outcome"] for r in records] == ["converged", "failed", "failed"]
    assert "unreadable" in records[1]["error"] and "died before" in records[2]["error"]
    assert summary_line(records) == "sweep: 3 jobs (1 converged, 2 failed); 2 failed"


def test_a_summary_that_cannot_be_written_exits_non_zero_and_still_ends_the_parent(tmp_path, app):
    script = tmp_path / "squat.py"  # a job that puts a folder where the sweep's summary.json must go
    script.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from examples.my_lstm import MyLSTM\n\n"
        "class Model(MyLSTM):\n"
        "    def loss_and_grads(self, params, x, y, h0, c0):\n"
        f"        os.makedirs({str(tmp_path / 'outputs' / 'sweep' / 'summary.json')!r}, exist_ok=True)\n"
        "        return super().loss_and_grads(params, x, y, h0, c0)\n"
    )
    done = app.multirun(
        tmp_path,
        "task=sin",
        "steps=3",
        "batch_size=1",
        f"model.impl={script}:Model",
        "layout=my_lstm",
        "model.hidden=3",
        "seed=0,1",
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "error: the end of the sweep failed: could not write" in done.stderr
    assert "sweep: 2 jobs" in done.stdout
    parents = [r for r in runs(f"sqlite:///{tmp_path}/mlflow.db") if r.data.tags.get("sweep.role") == "parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # ended, with the report attached


def test_the_summary_counts_planned_jobs_that_never_ran():
    from lstm_exp.sweeps.callback import summary_line

    records = [{"outcome": "converged"}, {"outcome": "failed"}]
    assert (
        summary_line(records, planned=5)
        == "sweep: 2 of 5 planned jobs ran (1 converged, 1 failed); 3 not run; 1 failed"
    )
    assert summary_line(records, planned=2) == "sweep: 2 jobs (1 converged, 1 failed); 1 failed"


def test_planned_jobs_is_the_product_of_the_sweeps(make_cfg):
    from omegaconf import OmegaConf

    from lstm_exp.sweeps.callback import planned_jobs

    config = OmegaConf.create(
        {"hydra": {"sweeper": {}, "overrides": {"task": ["seed=range(0,20)", "optim.clip=0,1,5", "task=char"]}}}
    )
    assert planned_jobs(config) == 60
    config.hydra.sweeper.n_trials = 40
    assert planned_jobs(config) == 40

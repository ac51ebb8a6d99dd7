"""The tracking agent (lstm_exp.tracking.agent) writes a single run's MLflow records from a process of its own: the run
reads exactly as one written in-process, a store MLflow refuses is still one error, and neither a Ctrl-C nor the
death of either process leaves the run RUNNING."""

import json
import os
import signal
import sqlite3

import pytest
from mlflow.tracking import MlflowClient

from lstm_exp.tracking import agent, sync
from lstm_exp.tracking.blank_store import create
from lstm_exp.tracking.channel import AgentError
from lstm_exp.tracking.remote_run import RemoteRun
from tests.processes import runs, start, wait_for


def checkpoint_run_id(path) -> str:
    import numpy as np

    with np.load(path, allow_pickle=False) as ckpt:
        return json.loads(str(ckpt["meta"]))["run_id"]


@pytest.mark.parametrize(
    "argv, wanted",
    [
        (["task=sin", "steps=10"], True),
        ([], True),
        (["-m", "seed=0,1"], False),
        (["--cfg", "job"], False),
        (["tracking.enabled=false"], False),
        (["tracking.enabled=False"], False),
        (["mode=gradcheck"], False),
        (["resume=outputs/x"], False),
        (["hydra/launcher=pool"], False),
    ],
)
def test_the_agent_starts_only_for_a_command_line_that_may_train_a_tracked_run(argv, wanted):
    assert agent.wanted(argv) is wanted


def test_a_single_run_written_by_the_agent_has_everything_and_its_own_owner(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = start(tmp_path, "task=sin", "steps=40", "log_every=5", "checkpoint.every=20", f"tracking.uri={uri}",
               "hydra.run.dir=run")  # fmt: skip
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    (run,) = runs(uri)
    client = MlflowClient(uri)
    tags = run.data.tags
    assert run.info.status == "FINISHED" and tags["outcome"] in ("converged", "finished")
    assert tags["owner.pid"] == str(proc.pid)  # the training process owns the run, not the agent
    assert run.info.run_id in out and "mlflow ui --backend-store-uri" in out
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert steps == [0, 5, 10, 15, 20, 25, 30, 35, 39]  # in order, none lost, none twice
    assert run.data.params["task.name"] == "sin" and run.data.params["steps"] == "40"
    assert "final_loss" in run.data.metrics and any(k.startswith("system/") for k in run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "loss_curve.png", "params.npz", ".hydra"} <= artifacts
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["sin synthetic"]
    assert checkpoint_run_id(tmp_path / "run" / "checkpoint.npz") == run.info.run_id


@pytest.mark.slow
def test_a_store_mlflow_refuses_is_one_error_even_once_training_has_begun(tmp_path):
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as con:  # a SQLite file from some other program's migrations
        con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        con.execute("INSERT INTO alembic_version VALUES ('0123456789ab')")
    proc = start(tmp_path, "task=sin", "steps=100000", f"tracking.uri=sqlite:///{db}")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the store does not work" in errors[0] and "0123456789ab" in errors[0]
    assert "Traceback" not in err


def test_a_training_process_killed_outright_has_its_run_ended_failed_by_the_agent(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = start(tmp_path, "task=sin", "steps=1000000", f"tracking.uri={uri}")
    try:
        assert wait_for(lambda: (tmp_path / "mlflow.db").exists())  # whole once it is there (blank_store.create)
        client = MlflowClient(uri)
        assert wait_for(lambda: runs(uri))
        run_id = runs(uri)[0].info.run_id
        assert wait_for(lambda: client.get_metric_history(run_id, "train_loss"))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert wait_for(lambda: client.get_run(run_id).info.status != "RUNNING", timeout=30)
    finally:
        proc.kill()
        proc.communicate()
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["outcome"] == "failed"
    assert "ended without ending its run" in run.data.tags["error"]


def test_ctrl_c_reaches_the_agent_too_and_the_run_still_ends_killed_then_resumes(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    overrides = ("task=sin", "steps=100000", "checkpoint.every=20", f"tracking.uri={uri}", "hydra.run.dir=run")
    proc = start(tmp_path, *overrides, start_new_session=True)  # a terminal: Ctrl-C goes to the whole group
    assert wait_for(lambda: (tmp_path / "run" / "checkpoint.npz").exists())
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    (run,) = runs(uri)
    assert run.info.status == "KILLED" and run.data.tags["outcome"] == "killed"
    assert checkpoint_run_id(tmp_path / "run" / "checkpoint.npz") == run.info.run_id
    assert "Traceback" not in err


def test_an_agent_that_dies_hands_its_run_to_the_spool_and_sync_completes_it(tmp_path, capsys):
    agent.start(["task=sin"])
    remote = agent.claim()
    assert remote is not None and remote.pid != os.getpid()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    live = RemoteRun.start(remote, uri, "sin", "dying", {"steps": 3}, {"task": "sin"}, 1, str(tmp_path),
                           ("sin synthetic", "00000000", {"task": "sin"}))  # fmt: skip
    live.log_metrics({"train_loss": 1.0}, 0)
    live.log_metrics({"train_loss": 0.5}, 1)  # flushed
    run_id = live.run_id  # waits for the run to exist
    live.state()  # a round trip to the agent: the points sent before it are written
    os.kill(remote.pid, signal.SIGKILL)
    os.waitpid(remote.pid, 0)
    for step in range(2, 5):  # training goes on
        live.log_metrics({"train_loss": 1.0 / step}, step)
    live.set_tags({"outcome": "finished"})
    live.end("FINISHED")
    assert "the tracking agent" in capsys.readouterr().err and live.offline and live.lost
    client = MlflowClient(uri)
    assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [0, 1]
    assert live.run_id == run_id  # what was known of the run stays known
    assert sync.main([str(tmp_path)]) == 0  # the rest, from the spool, into the same run
    assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [0, 1, 2, 3, 4]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "finished"


def test_a_start_the_store_refuses_is_raised_in_the_training_process_and_does_not_hang_it(tmp_path):
    signal.alarm(60)  # a hang fails the test instead of the suite
    try:
        agent.start(["task=sin"])
        remote = agent.claim()
        uri = f"sqlite:///{tmp_path}/mlflow.db"
        live = RemoteRun.start(remote, uri, "", "run", {}, {"task": "sin"}, 1, str(tmp_path),
                               ("sin synthetic", "00000000", {}))  # fmt: skip  # MLflow refuses an empty name
        with pytest.raises(AgentError, match="experiment"):
            live.state()
        with pytest.raises(ChildProcessError):  # dismissed and reaped
            os.waitpid(remote.pid, os.WNOHANG)
        live.set_tags({"outcome": "failed"})  # what a failing job does next: nothing to write, no error
        live.end("FAILED")
    finally:
        signal.alarm(0)


def test_the_agent_opens_the_run_in_the_training_processs_folder_and_environment(tmp_path, monkeypatch):
    agent.start(["task=sin"])  # forked here, before the folder and the environment change (as Hydra may do)
    remote = agent.claim()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/elsewhere.db")
    live = RemoteRun.start(remote, None, "sin", "run", {}, {"task": "sin"}, 1, str(tmp_path),
                           ("sin synthetic", "00000000", {}))  # fmt: skip
    live.end("FINISHED")
    assert live.tracking_uri == f"sqlite:///{tmp_path}/elsewhere.db"
    (run,) = runs(live.tracking_uri)
    assert run.info.status == "FINISHED" and run.info.run_id == live.run_id


@pytest.mark.slow
def test_a_deleted_experiment_is_one_error_that_says_how_to_restore_it(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    client.delete_experiment(client.create_experiment("sin"))
    proc = start(tmp_path, "task=sin", "steps=100000", f"tracking.uri={uri}")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    (error,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "'sin'" in error and "is deleted" in error and "mlflow experiments restore" in error
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_new_store_is_a_copy_of_the_blank_one_and_mlflow_finishes_it_as_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        create(tmp_path / name / "mlflow.db")
    (blank,) = (tmp_path / "cache" / "lstm_exp").iterdir()
    assert create(tmp_path / "b" / "mlflow.db") is False  # there already: left alone
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "b" / "mlflow.db").stat().st_mode & 0o777 == 0o666 & ~umask  # not private to its maker
    with sqlite3.connect(tmp_path / "b" / "mlflow.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        copied = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    with sqlite3.connect(blank) as con:
        assert con.execute("SELECT count(*) FROM experiments").fetchone()[0] == 0
    built = tmp_path / "built.db"
    MlflowClient(f"sqlite:///{built}").search_experiments()  # a store MLflow builds itself
    with sqlite3.connect(built) as con:
        assert copied == {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    client = MlflowClient(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")
    default = client.get_experiment("0")  # MLflow adds it on first opening the copy, as it does to its own
    assert default.name == "Default"
    assert default.artifact_location == MlflowClient(f"sqlite:///{built}").get_experiment("0").artifact_location
    experiment = client.create_experiment("x")
    client.set_terminated(client.create_run(experiment).info.run_id)


def agent_of(proc) -> int:
    """The tracking agent's pid: the training process's child."""
    import psutil

    assert wait_for(lambda: psutil.Process(proc.pid).children())
    return psutil.Process(proc.pid).children()[0].pid


@pytest.mark.slow
@pytest.mark.parametrize("how", ["killed", "stopped"])
def test_a_run_whose_agent_is_killed_or_stalls_trains_on_and_completes_through_sync(tmp_path, how):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    steps = 3000
    env = {**os.environ, "LSTM_EXP_AGENT_STALL_SECONDS": "3"}
    proc = start(tmp_path, "task=sin", f"steps={steps}", "log_every=1", "tracking.log_every=5",
                 f"tracking.uri={uri}", "hydra.run.dir=run", "model.hidden=48", env=env)  # fmt: skip
    pid = agent_of(proc)
    try:
        assert wait_for(lambda: (tmp_path / "mlflow.db").exists())  # whole once it is there (blank_store.create)
        assert wait_for(lambda: runs(uri) and MlflowClient(uri).get_metric_history(runs(uri)[0].info.run_id, "lr"))
        os.kill(pid, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        out, err = proc.communicate(timeout=180)
    finally:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # the training process ended (and reaped) it
    assert proc.returncode == 3, err[-2000:]  # trained; its records wait in the spool
    assert "the tracking agent" in err and f"python -m lstm_exp.sync {tmp_path / 'run'}" in out
    status = json.loads((tmp_path / "run" / "job_status.json").read_text())
    assert status["outcome"] in ("converged", "finished") and status["spooled"]
    assert sync.main([str(tmp_path / "run")]) == 0
    found = runs(uri)
    assert len(found) == 1, [(r.info.run_name, r.info.status, r.data.tags.get("outcome")) for r in found]
    run = found[0]
    assert run.info.status == "FINISHED" and run.data.tags["outcome"] == status["outcome"]
    steps_logged = [m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, "train_loss")]
    assert steps_logged == list(range(steps))  # every point once

"""MLflow tracking against a real store: params, metrics, tags, artifacts, divergences and crashes."""

import contextlib
import json
import math
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from lstm_exp.common.errors import UserError
from lstm_exp.runner import job, train
from lstm_exp.tracking.run import MAX_VALUE, flatten_params
from lstm_exp.tracking.store import connect


def test_flatten_params_uses_dotted_keys_within_mlflow_limits():
    params, skipped = flatten_params({"optim": {"lr": 0.1, "clip": None}, "long": "x" * 7000, "k" * 300: 1})
    assert params["optim.lr"] == "0.1" and params["optim.clip"] == "null"
    assert len(params["long"]) == MAX_VALUE and params["long"].endswith("chars]")
    assert skipped == ["k" * 300]


@pytest.fixture(scope="session")
def launch(app):
    """launch(cwd, *overrides): the app run from ``cwd`` (MLflow's default store lands there); it must succeed."""

    def _launch(cwd, *overrides):
        proc = app.run(cwd, "hydra.run.dir=outputs/run", *overrides, timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    return _launch


def only_run(client, experiment):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return runs[0]


def all_metric_values(client, run):
    return [m.value for key in run.data.metrics for m in client.get_metric_history(run.info.run_id, key)]


@pytest.fixture(scope="module")
def store(tmp_path_factory, launch):
    """One launch directory with three runs: a normal one, a diverging one and a faulty one."""
    cwd = tmp_path_factory.mktemp("launch")
    normal = launch(cwd, "task=sin", "steps=30", "log_every=5", "tracking.log_every=10", "tracking.experiment=normal")
    launch(cwd, "experiment=case000_char", "steps=60", "tracking.experiment=diverged")
    launch(cwd, "experiment=case000_char", "model.fault=sigmoid_of_activation", "tracking.experiment=fault")
    return MlflowClient(f"sqlite:///{cwd}/mlflow.db"), normal.stdout


def test_default_store_is_a_sqlite_file_in_the_launch_directory(store):
    client, stdout = store
    run = only_run(client, "normal")
    assert run.info.status == "FINISHED"
    assert f"mlflow run: {run.info.run_id}" in stdout and "mlflow ui --backend-store-uri sqlite:///" in stdout


def test_a_new_local_store_is_created_in_wal_mode(store):
    client, _ = store
    path = client.tracking_uri.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_existing_store_keeps_its_journal_mode(tmp_path):
    path = tmp_path / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # made by MLflow itself: rollback journal
    connect(f"sqlite:///{path}")
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_store_that_fails_to_initialise_leaves_no_file(tmp_path, monkeypatch):
    class Broken:
        def __init__(self, tracking_uri):
            raise RuntimeError("migration failed")

    monkeypatch.setattr("mlflow.tracking.MlflowClient", Broken)
    with pytest.raises(UserError, match="the store does not work"):
        connect(f"sqlite:///{tmp_path}/mlflow.db")
    assert list(tmp_path.iterdir()) == []


def test_params_are_the_flattened_composed_config(store):
    client, _ = store
    params = only_run(client, "normal").data.params
    assert params["task.name"] == "sin" and params["optim.name"] == "adam" and params["steps"] == "30"
    assert params["optim.clip_mode"] == "norm" and params["model.dtype"] == "float64"


def test_metrics_are_logged_by_step_in_batches(store, step_metrics):
    client, _ = store
    run = only_run(client, "normal")
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == [0, 5, 10, 15, 20, 25, 29]
    assert step_metrics <= set(run.data.metrics)


def test_tags_and_artifacts(store):
    client, _ = store
    run = only_run(client, "normal")
    tags = run.data.tags
    assert tags["task"] == "sin" and tags["outcome"] in {"converged", "finished"}
    assert "steps=30" in tags["hydra.overrides"]
    run_id = run.info.run_id
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "loss_curve.png", "params.npz", ".hydra"} <= names
    assert {a.path for a in client.list_artifacts(run_id, ".hydra")} >= {".hydra/config.yaml", ".hydra/overrides.yaml"}
    local = client.download_artifacts(run_id, "params.npz")
    with np.load(local, allow_pickle=False) as weights:
        assert set(weights.files) == {"Wx", "Wh", "b", "Wy", "by"}


def test_a_diverged_run_is_a_finished_result_with_its_divergence(store):
    client, _ = store
    run = only_run(client, "diverged")
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["outcome"] == "diverged_loss" and tags["divergence.kind"] == "loss"
    assert not {"nan.first_step", "nan.where"} & set(tags) and "first_nan_step" not in run.data.metrics
    step = int(tags["diverged_at_step"])
    assert run.data.metrics["diverged_at_step"] == step
    report = json.loads(open(client.download_artifacts(run.info.run_id, "divergence.json")).read())
    assert report["step"] == step and report["kind"] == "diverged_loss" and "sentence" in report
    # the charts reach the blow-up: the last train_loss point is the divergence step's loss, the final_loss
    history = sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)
    assert history[-1].step == step and history[-1].value == pytest.approx(run.data.metrics["final_loss"])
    assert history[-1].value >= 10 * history[0].value


def test_a_nan_divergence_carries_the_nan_tags(store):
    client, _ = store
    run = only_run(client, "fault")
    tags = run.data.tags
    assert tags["divergence.kind"] == "nan" and tags["nan.first_step"] == tags["diverged_at_step"]
    assert run.data.metrics["first_nan_step"] == run.data.metrics["diverged_at_step"]


def test_no_metric_point_is_ever_non_finite(store):
    client, _ = store
    run = only_run(client, "fault")
    assert run.data.tags["outcome"] == "diverged_nan"
    assert run.data.tags["nan.where"] not in {"", "None"}
    values = all_metric_values(client, run)
    assert values and all(math.isfinite(v) for v in values)


def test_a_crash_is_recorded_failed_with_its_error(make_cfg, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = make_cfg("task=sin", "steps=5", f"tracking.uri={uri}", "tracking.experiment=crash", typed=False)

    def explode(*args, **kwargs):
        raise RuntimeError("boom at step 3")

    monkeypatch.setattr(train, "run", explode)
    with pytest.raises(RuntimeError, match="boom"):
        job.run_job(cfg)
    client = MlflowClient(uri)
    run = only_run(client, "crash")
    assert run.info.status == "FAILED"
    assert run.data.tags["outcome"] == "failed" and run.data.tags["error"] == "RuntimeError: boom at step 3"
    assert "error.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store, port, backend=None, log=subprocess.DEVNULL):
    """A real MLflow tracking server on 127.0.0.1 (backend: a SQLite file in ``store`` unless given; the first
    start on a new database creates MLflow's tables); returns (process, url) once /health answers."""
    backend = backend or f"sqlite:///{store}/server.db"
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--backend-store-uri", backend, "--artifacts-destination", f"{store}/art", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    pytest.fail(f"mlflow server did not come up (exit {proc.wait()})")


def stop_server(proc):
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def mlflow_server(tmp_path):
    proc, url = start_server(tmp_path, free_port())
    yield url
    stop_server(proc)


@pytest.mark.slow
def test_runs_log_through_a_tracking_server_over_http(mlflow_server, tmp_path, launch):
    launch(tmp_path, "task=sin", "steps=20", "log_every=5", f"tracking.uri={mlflow_server}", "tracking.experiment=http")
    client = MlflowClient(mlflow_server)
    run = only_run(client, "http")
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 5
    assert "loss_curve.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the default local store


@pytest.mark.slow
def test_a_server_that_dies_mid_run_loses_nothing(tmp_path):
    """Training finishes, writes queue in the run folder, and lstm_exp.tracking.sync uploads them once it is back."""
    port = free_port()
    server, url = start_server(tmp_path, port)
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "lstm_exp",
        "task=sin",
        "steps=3000",
        "log_every=10",
        "tracking.log_every=20",
        "progress=false",
        f"tracking.uri={url}",
        "tracking.experiment=dies",
        f"hydra.run.dir={run_dir}",
    ]
    job = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = MlflowClient(url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the first metric batch reached the server
        exp = client.get_experiment_by_name("dies")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if runs and "train_loss" in runs[0].data.metrics:
            break
        time.sleep(0.2)
    stop_server(server)
    out, err = job.communicate(timeout=300)
    assert job.returncode == 3, err[-2000:]  # trained; its records wait in the spool
    assert f"python -m lstm_exp.sync {run_dir}" in err + out
    server, url = start_server(tmp_path, port)
    try:
        sync = subprocess.run([sys.executable, "-m", "lstm_exp.sync", str(run_dir)], capture_output=True, text=True)
        assert sync.returncode == 0, sync.stderr[-2000:]
        run = only_run(client, "dies")
        assert run.info.status == "FINISHED" and run.data.tags["outcome"] in {"converged", "finished"}
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train_loss"))
        assert steps == list(range(0, 3000, 10)) + [2999]
        assert "loss_curve.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
    finally:
        stop_server(server)


@pytest.mark.slow
def test_a_sweep_job_that_starts_during_an_outage_spools_from_its_first_write(make_cfg, tmp_path, monkeypatch):
    from lstm_exp.runner import job
    from lstm_exp.runner.context import JobContext
    from lstm_exp.tracking import sync

    port = free_port()
    url = f"http://127.0.0.1:{port}"  # nothing answers there yet: the server is down
    parent = "f" * 32
    ctx = JobContext(multirun=True, output_dir=str(tmp_path / "job"), job_num=0, sweep_id="s", parent_run_id=parent)
    (tmp_path / "job").mkdir()
    monkeypatch.setattr(JobContext, "from_hydra", classmethod(lambda cls, experiment=None: ctx))
    cfg = make_cfg(
        "task=sin", "steps=20", "log_every=5", f"tracking.uri={url}", "tracking.experiment=outage", typed=False
    )
    assert job.run_job(cfg) is not None  # trained, not refused
    assert (tmp_path / "job" / "mlflow_spool.jsonl").exists()
    proc, url = start_server(tmp_path, port)  # the server is back
    try:
        run_id, points = sync.replay(tmp_path / "job", url)
        client = MlflowClient(url)
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent
        assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [0, 5, 10, 15, 19]
        assert run.data.params["optim.lr"] == "0.01" and points > 0
        assert client.get_experiment(run.info.experiment_id).name == "outage"
    finally:
        stop_server(proc)

"""Nothing leaked: an experiment name is never a path, sync uploads only what the run spooled, and a password in a
tracking URI is used but never printed or stored."""

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lstm_exp.common.credentials import mask, split
from lstm_exp.tracking import sync
from lstm_exp.tracking.run import start_offline_run
from lstm_exp.tracking.spool import SPOOL
from lstm_exp.tracking.store import artifact_folder


@pytest.mark.parametrize("name", ["../../../../tmp/anywhere", "/tmp/anywhere", "a/../../b", "..", "ok-name_1.2"])
def test_an_experiment_name_is_a_folder_name_never_a_path(name):
    folder = artifact_folder(name)
    assert "/" not in folder and "\\" not in folder and folder not in (".", "..") and folder
    assert (folder == name) == (name == "ok-name_1.2")


@pytest.mark.slow
def test_artifacts_of_an_experiment_named_like_a_path_stay_beside_the_store(app, tmp_path):
    target = Path("/tmp") / f"anywhere-{uuid.uuid4().hex}"
    done = app.run(tmp_path, "task=sin", "steps=3", f"tracking.experiment=../../../..{target}", "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr
    assert not target.exists()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (experiment,) = [e for e in client.search_experiments() if e.name.endswith(target.name)]
    assert Path(experiment.artifact_location.removeprefix("file://")).parent == tmp_path / "mlartifacts"
    assert any((tmp_path / "mlartifacts").rglob("config.yaml"))


def offline_run(tmp_path, uri=None):
    """A run that began offline, its writes spooled in tmp_path/run, its store a SQLite file there."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    uri = uri or f"sqlite:///{tmp_path}/mlflow.db"
    live = start_offline_run(uri, "spooled", "offline run", {"seed": 1}, {"task": "sin"}, 10, run_dir)
    for step in range(0, 50, 10):
        live.log_metrics({"train_loss": 1.0 / (step + 1)}, step)
    live.flush()
    live.log_text("hello", "notes/hello.txt")
    live.end("FINISHED")
    return run_dir, uri


def spool_lines(run_dir):
    return [json.loads(line) for line in (run_dir / SPOOL).read_text().splitlines()]


def rewrite(run_dir, lines):
    (run_dir / SPOOL).write_text("".join(json.dumps(r) + "\n" for r in lines))


@pytest.mark.parametrize(
    "crafted",
    [
        {"path": "../../../../etc/passwd"},
        {"path": "/etc/passwd"},
        {"artifact_dir": "../../elsewhere"},
    ],
)
def test_a_crafted_spool_cannot_upload_a_file_the_run_did_not_spool(tmp_path, crafted, capsys):
    run_dir, uri = offline_run(tmp_path)
    lines = spool_lines(run_dir)
    artifact = next(r for r in lines if r["kind"] == "artifact")
    artifact.update(crafted)
    rewrite(run_dir, lines)
    capsys.readouterr()
    assert sync.main([str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("not uploaded" in err or "leaves the run's artifacts" in err), err
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("spooled").experiment_id])
    assert not client.list_artifacts(run.info.run_id)


def test_a_spooled_file_replaced_by_a_link_to_another_is_refused(tmp_path, capsys):
    run_dir, _ = offline_run(tmp_path)
    artifact = next(r for r in spool_lines(run_dir) if r["kind"] == "artifact")
    spooled = run_dir / artifact["path"]
    spooled.unlink()
    spooled.symlink_to("/etc/hostname")
    capsys.readouterr()
    assert sync.main([str(run_dir)]) == 2
    assert "is not one this run spooled" in capsys.readouterr().err


def test_sync_interrupted_anywhere_and_run_again_leaves_one_run_with_every_point_once(tmp_path, monkeypatch):
    run_dir, uri = offline_run(tmp_path)
    calls = {"n": 0}
    real = MlflowClient.log_batch

    def failing_once(self, *args, **kwargs):  # the server goes away after the first batch
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("server gone")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", failing_once)
    with pytest.raises(ConnectionError):
        sync.replay(run_dir)
    run_id, _ = sync.replay(run_dir)
    assert sync.replay.__module__ and not (run_dir / SPOOL).exists()
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("spooled").experiment_id])
    assert [r.info.run_id for r in runs] == [run_id] and runs[0].info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run_id, "train_loss")) == [0, 10, 20, 30, 40]


def test_a_torn_last_spool_line_is_left_out(tmp_path):
    run_dir, _ = offline_run(tmp_path)
    with open(run_dir / SPOOL, "a") as f:
        f.write('{"kind": "metrics", "poi')  # the disk filled mid-append
    run_id, points = sync.replay(run_dir)
    assert points == 5 and run_id


def test_a_password_is_masked_and_split_off_for_a_probe():
    assert mask("tracking.uri=https://me:s3cr@t@host:5000/x") == "tracking.uri=https://me:***@host:5000/x"
    assert split("http://me:p%40ss@host:5000/x") == ("http://host:5000/x", "me", "p@ss")


def secret_anywhere(root: Path, secret: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_password_in_the_tracking_uri_is_never_printed_or_written(app, tmp_path):
    from tests.test_tracking import free_port

    secret = f"s3cret{uuid.uuid4().hex[:6]}"
    uri = f"http://someone:{secret}@127.0.0.1:{free_port()}"  # nothing answers: refused, one line
    done = app.run(tmp_path, "task=sin", "steps=3", f"tracking.uri={uri}", "hydra.run.dir=run")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "no MLflow server answers" in done.stderr and "someone:***@127.0.0.1" in done.stderr
    assert secret not in done.stdout + done.stderr
    assert (tmp_path / "run" / ".hydra" / "overrides.yaml").exists() and not secret_anywhere(tmp_path, secret)


def test_a_spool_of_a_run_with_a_password_asks_for_it_again(tmp_path, capsys):
    run_dir, _ = offline_run(tmp_path, uri="http://someone:hidden@127.0.0.1:9")
    assert "hidden" not in (run_dir / SPOOL).read_text()
    capsys.readouterr()
    assert sync.main([str(run_dir)]) == 2
    assert "had a password, which is never written down: give the URI with --uri" in capsys.readouterr().err


@pytest.mark.slow
def test_a_tracking_server_behind_a_password_in_the_uri_is_used_and_the_password_kept_out(app, tmp_path):
    from tests.test_tracking import free_port, start_server, stop_server

    proc, url = start_server(tmp_path, free_port())
    secret = f"s3cret{uuid.uuid4().hex[:6]}"
    try:
        uri = url.replace("http://", f"http://someone:{secret}@")
        done = app.multirun(tmp_path, "task=sin", "steps=5", "seed=0,1", f"tracking.uri={uri}")
        assert done.returncode == 0, done.stderr[-2000:]
        client = MlflowClient(url)
        runs = client.search_runs([client.get_experiment_by_name("sin").experiment_id])
        assert len(runs) == 3 and all(secret not in json.dumps(r.to_dictionary()) for r in runs)
        assert secret not in done.stdout + done.stderr and not secret_anywhere(tmp_path / "outputs", secret)
    finally:
        stop_server(proc)


@pytest.mark.slow
def test_two_syncs_of_one_folder_at_once_make_one_run_with_every_point_once(tmp_path):
    run_dir, uri = offline_run(tmp_path)
    cmd = [sys.executable, "-m", "lstm_exp.sync", str(run_dir)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    ends = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    refused = [err for code, err in ends if code == 2]
    # the one that lost the race changed nothing (or came after the other had finished)
    assert all("then sync again" in err or "nothing to upload" in err for err in refused), refused
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("spooled").experiment_id])
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train_loss")) == [0, 10, 20, 30, 40]

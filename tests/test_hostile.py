"""Two things at once, locks, partial files and hostile inputs: nothing lost, duplicated or left RUNNING, and every
refusal one line (the third fault round; each test names the case it holds)."""

import http.server
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.processes import runs, start, wait_for

ROOT = Path(__file__).resolve().parents[1]
SLOW = pytest.mark.slow


def one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


# --------------------------------------------------------------------------------------------- two at once


def test_two_runs_launched_in_the_same_second_get_folders_of_their_own(tmp_path):
    procs = [start(tmp_path, "task=sin", "steps=3", f"seed={s}", "tracking.enabled=false") for s in (1, 2)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    overrides = sorted((tmp_path / "outputs" / "runs").glob("*/*/.hydra/overrides.yaml"))
    assert len(overrides) == 2
    assert sorted("seed=1" in p.read_text() for p in overrides) == [False, True]


@pytest.mark.slow
def test_two_sweeps_launched_together_each_finish_under_their_own_parent(tmp_path):
    procs = [start(tmp_path, "-m", "task=sin", "steps=20", "seed=0,1", f"optim.clip={c}") for c in (0, 1)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        assert "sweep: 2 jobs" in out and "; 0 failed" in out
    all_runs = runs(f"sqlite:///{tmp_path}/mlflow.db")
    parents = [r for r in all_runs if r.data.tags.get("sweep.role") == "parent"]
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    for parent in parents:
        children = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)


# ---------------------------------------------------------------------------------------------------- locks


class HeldLock:
    """A write lock on a SQLite store, held by this process until released (another program's transaction)."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(path, isolation_level=None, timeout=60)

    def __enter__(self):
        self.db.execute("BEGIN EXCLUSIVE")
        return self

    def __exit__(self, *exc):
        self.db.execute("COMMIT")
        self.db.close()


@pytest.mark.slow
def test_a_sweep_waits_out_a_write_lock_and_records_every_job(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = start(tmp_path, "-m", "task=sin", "steps=400", "log_every=1", "tracking.log_every=10", "seed=range(0,4)")
    assert wait_for(lambda: (tmp_path / "mlflow.db").exists() and len(runs(uri)) >= 3, timeout=120)
    with HeldLock(tmp_path / "mlflow.db"):
        time.sleep(15)  # every job's writes wait meanwhile
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "not fully recorded" not in out and "queued" not in err
    client = MlflowClient(uri)
    jobs = [r for r in runs(uri) if r.data.tags.get("sweep.role") != "parent"]
    assert len(jobs) == 4 and all(r.info.status == "FINISHED" for r in jobs)
    for run in jobs:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == list(range(400))


@pytest.mark.slow
def test_sixty_four_jobs_at_once_on_the_default_store_lose_nothing(tmp_path):
    proc = start(
        tmp_path, "-m", "task=sin", "steps=5", "model.hidden=4", "seed=range(0,64)", "hydra.launcher.n_jobs=64"
    )
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    assert "sweep: 64 jobs" in out and "; 0 failed" in out and "not fully recorded" not in out
    jobs = [r for r in runs(f"sqlite:///{tmp_path}/mlflow.db") if r.data.tags.get("sweep.role") != "parent"]
    assert len(jobs) == 64 and all(r.info.status == "FINISHED" for r in jobs)


# ---------------------------------------------------------------------------------------- the store it uses


@pytest.mark.parametrize(
    "env_uri,expected",
    [
        pytest.param(
            "file:///tmp/mlruns", "MLFLOW_TRACKING_URI=file:///tmp/mlruns: that is MLflow's file store", marks=SLOW
        ),
        pytest.param("htp://127.0.0.1:5000", "MLFLOW_TRACKING_URI=htp://127.0.0.1:5000: unknown scheme", marks=SLOW),
        ("http://127.0.0.1:9", "MLFLOW_TRACKING_URI=http://127.0.0.1:9: no MLflow server answers"),
    ],
)
def test_a_store_chosen_by_the_environment_is_checked_before_training_and_named(tmp_path, env_uri, expected):
    proc = start(tmp_path, "task=sin", "steps=100000", env={**os.environ, "MLFLOW_TRACKING_URI": env_uri})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    error = one_error(err)
    assert expected in error and "unset the environment variable MLFLOW_TRACKING_URI" in error
    assert "leave it null" not in error


class BrokenServer(http.server.BaseHTTPRequestHandler):
    """Answers /health; its API fails (500) or, with ``hang``, never answers."""

    hang = False

    def do_GET(self):  # noqa: N802 (http.server's names)
        self._answer()

    def do_POST(self):  # noqa: N802
        self._answer()

    def _answer(self):
        if self.path == "/health":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")
        elif self.hang:
            time.sleep(30)
        else:
            self.send_response(500)
            self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.slow
@pytest.mark.parametrize("hang", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["500", "hangs"])
def test_a_server_whose_health_answers_but_whose_api_fails_is_refused_before_training(tmp_path, hang):
    handler = type("Handler", (BrokenServer,), {"hang": hang})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        started = time.monotonic()
        proc = start(tmp_path, "task=sin", "steps=100000", f"tracking.uri={uri}", "hydra.run.dir=run")
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2 and time.monotonic() - started < 60
        assert "answers its health check but not its API" in one_error(err)
        assert not (tmp_path / "run" / "checkpoint.npz").exists()
    finally:
        server.shutdown()


@pytest.mark.slow
def test_under_hydra_job_chdir_the_default_store_stays_the_launch_folders(app, tmp_path):
    done = app.multirun(tmp_path, "task=sin", "steps=3", "seed=0,1", "hydra.job.chdir=true")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list((tmp_path / "outputs").rglob("mlflow.db"))
    all_runs = runs(f"sqlite:///{tmp_path}/mlflow.db")
    (parent,) = [r for r in all_runs if r.data.tags.get("sweep.role") == "parent"]
    assert sum(r.data.tags.get("mlflow.parentRunId") == parent.info.run_id for r in all_runs) == 2


# --------------------------------------------------------------------------------------------- hangs


@pytest.mark.slow
def test_a_job_that_hangs_is_killed_past_the_timeout_and_the_sweep_goes_on(tmp_path):
    proc = start(tmp_path, "-m", "task=sin", "steps=200000", "seed=0,1", "hydra.launcher.timeout=20")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert "sweep: 2 jobs (2 failed)" in out
    status = json.loads(next((tmp_path / "outputs" / "multirun").glob("*/*/0/job_status.json")).read_text())
    assert "ran longer than hydra.launcher.timeout=20 s and was killed" in status["error"]
    assert all(r.info.status != "RUNNING" for r in runs(f"sqlite:///{tmp_path}/mlflow.db"))


@pytest.mark.slow
def test_a_second_ctrl_c_ends_a_sweep_whose_job_was_stopped(tmp_path):
    import psutil

    proc = start(tmp_path, "-m", "task=sin", "steps=200000", "seed=0,1", start_new_session=True)
    assert wait_for(lambda: len(psutil.Process(proc.pid).children()) == 2, timeout=120)
    time.sleep(5)
    for child in psutil.Process(proc.pid).children():
        os.kill(child.pid, signal.SIGSTOP)  # hung: a SIGINT alone would never be handled
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(2)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "2 killed" in out
    assert all(r.info.status != "RUNNING" for r in runs(f"sqlite:///{tmp_path}/mlflow.db"))


@pytest.mark.slow
def test_a_report_against_a_server_that_is_not_there_answers_in_seconds(tmp_path):
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "lstm_exp.report", "--uri", "http://127.0.0.1:9", "--stale"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and time.monotonic() - started < 20
    assert "--uri http://127.0.0.1:9: no MLflow server answers there" in one_error(done.stderr)


@pytest.mark.slow
def test_a_report_against_a_server_that_never_answers_gives_up_in_bounded_time():
    with socket.socket() as silent:  # accepts connections and says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "lstm_exp.report", "--uri", f"http://127.0.0.1:{silent.getsockname()[1]}"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 2 and time.monotonic() - started < 30
    assert "no MLflow server answers there" in one_error(done.stderr)


@pytest.mark.parametrize("corpus", ["fifo", "/dev/zero"])
def test_a_corpus_that_is_no_regular_file_is_refused_not_read(app, tmp_path, corpus):
    if corpus == "fifo":
        corpus = tmp_path / "pipe"
        os.mkfifo(corpus)
    done = app.run(tmp_path, "task=char", f"task.corpus={corpus}", "steps=2", timeout=60)
    assert done.returncode == 2
    assert "is not a regular file (a pipe or a device)" in one_error(done.stderr)


def test_a_corpus_above_the_size_limit_says_how_to_raise_it(app, tmp_path):
    (tmp_path / "big.txt").write_text("ab" * 600_000)
    done = app.run(tmp_path, "task=char", f"task.corpus={tmp_path / 'big.txt'}", "task.max_corpus_mb=1", "steps=2")
    assert done.returncode == 2 and "more than task.max_corpus_mb=1; raise it" in one_error(done.stderr)


# ------------------------------------------------------------------------------------------- partial files


def test_a_corrupt_cached_blank_store_is_built_again(tmp_path, monkeypatch):
    import mlflow

    from lstm_exp.tracking.blank_store import cache_folder, create

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    blank = cache_folder() / f"mlflow-{mlflow.__version__}-blank.db"
    blank.parent.mkdir(parents=True)
    blank.write_bytes(os.urandom(4096))
    assert create(tmp_path / "mlflow.db")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert client.get_experiment("0").name == "Default"
    with sqlite3.connect(blank) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 0


def interrupted_run(tmp_path) -> Path:
    """A tracked run stopped by Ctrl-C after its first checkpoint; its folder."""
    proc = start(tmp_path, "task=sin", "steps=3000", "checkpoint.every=20", "hydra.run.dir=run")
    assert wait_for(lambda: (tmp_path / "run" / "checkpoint.npz").exists(), timeout=120)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    return tmp_path / "run"


@pytest.mark.slow
def test_resume_from_another_folder_goes_on_in_the_runs_own_store(tmp_path):
    run_dir = interrupted_run(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = start(elsewhere, f"resume={run_dir}")
    assert wait_for(lambda: b"resuming" in (run_dir / "job_status.json").read_bytes() or True, timeout=5)
    time.sleep(8)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "into MLflow run" in out and not (elsewhere / "mlflow.db").exists()
    (run,) = runs(f"sqlite:///{tmp_path}/mlflow.db")
    assert run.info.status == "KILLED" and run.data.tags.get("resumed") == "true"


@pytest.mark.slow
def test_resume_after_the_store_moved_says_where_to_point_it_and_makes_no_store(tmp_path):
    run_dir = interrupted_run(tmp_path)
    (tmp_path / "mlflow.db").rename(tmp_path / "moved.db")
    proc = start(tmp_path, f"resume={run_dir}")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "is not there; if the store moved, resume with tracking.uri=<where it is now>" in one_error(err)
    assert not (tmp_path / "mlflow.db").exists()
    proc = start(tmp_path, f"resume={run_dir}", f"tracking.uri=sqlite:///{tmp_path}/moved.db")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]


@pytest.mark.slow
def test_a_sweep_whose_parent_run_cannot_be_opened_launches_no_job(tmp_path):
    (tmp_path / "bad.db").write_text("not a database")
    proc = start(tmp_path, "-m", "task=sin", "steps=3", "seed=0,1", f"tracking.uri=sqlite:///{tmp_path}/bad.db")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "the sweep's MLflow parent run could not be opened" in one_error(err)
    assert not list((tmp_path / "outputs").rglob("job_status.json"))


@pytest.mark.slow
def test_fix_stale_leaves_a_run_that_waits_for_sync_alone(tmp_path):
    from lstm_exp.tracking.queries import end_orphans, stale_runs
    from lstm_exp.tracking.spool import SPOOL

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / SPOOL).write_text('{"kind": "run"}\n')
    dead = {"owner.host": socket.gethostname(), "owner.pid": "999999", "owner.started": "1.0"}
    experiment = client.create_experiment("x")
    waiting = client.create_run(experiment, tags={**dead, "run.dir": str(run_dir)}).info.run_id
    stale = client.create_run(experiment, tags=dead).info.run_id
    found = stale_runs(uri)
    assert set(found["run_id"]) == {waiting, stale}
    assert found.set_index("run_id").loc[waiting, "waiting_for_sync"] == str(run_dir)
    assert end_orphans(uri, found["run_id"]) == [stale]
    assert client.get_run(waiting).info.status == "RUNNING"


# -------------------------------------------------------------------------------------------- hostile code


def user_file(tmp_path, body: str) -> str:
    path = tmp_path / "user.py"
    path.write_text("from examples.my_lstm import MyLSTM\nimport os\n\n\nclass Model(MyLSTM):\n" + body)
    return f"model.impl={path}:Model"


def test_a_user_model_that_writes_into_its_params_is_told_before_training(app, tmp_path):
    impl = user_file(
        tmp_path,
        "    def loss_and_grads(self, params, x, y, h0, c0):\n"
        "        params['W_out'] *= 0.5\n"
        "        return super().loss_and_grads(params, x, y, h0, c0)\n",
    )
    done = app.run(ROOT, "task=sin", impl, "layout=my_lstm", "steps=3", "tracking.enabled=false",
                   f"hydra.run.dir={tmp_path}/run")  # fmt: skip
    assert done.returncode == 2
    assert "Model.loss_and_grads writes into its params" in one_error(done.stderr) and "user.py:7" in done.stderr


@pytest.mark.slow
def test_a_user_model_whose_forked_child_returns_is_ended_and_writes_nothing_twice(app, tmp_path):
    impl = user_file(
        tmp_path,
        "    calls = 0\n\n"
        "    def loss_and_grads(self, params, x, y, h0, c0):\n"
        "        Model.calls += 1\n"
        "        if Model.calls == 40:\n"
        "            os.fork()  # the child returns into lstm_exp\n"
        "        return super().loss_and_grads(params, x, y, h0, c0)\n",
    )
    done = app.run(ROOT, "task=sin", impl, "layout=my_lstm", "steps=20", "batch_size=4", "log_every=1",
                   f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.run.dir={tmp_path}/run")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "forked a process that returned into lstm_exp; ended" in done.stderr
    (run,) = runs(f"sqlite:///{tmp_path}/mlflow.db")
    steps = [m.step for m in MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_metric_history(run.info.run_id, "lr")]
    assert steps == list(range(20))


def test_control_characters_of_a_corpus_are_escaped_in_printed_samples(app, tmp_path):
    (tmp_path / "c.txt").write_text("hello \x1b[2J world\x07 " * 300)
    done = app.run(tmp_path, "task=char", f"task.corpus={tmp_path / 'c.txt'}", "steps=3", "task.sample_every=1",
                   "task.seq_len=10", "batch_size=2", "tracking.enabled=false")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--- sample at step" in done.stdout and "\x1b" not in done.stdout and "\x07" not in done.stdout


@pytest.mark.slow
def test_a_full_disk_stops_the_run_in_one_line_and_keeps_what_was_written(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        proc = start(folder, "task=sin", "steps=3000", "log_every=1", "hydra.run.dir=run")
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2
        assert "the disk is full" in one_error(err) and "training stopped after step" in err
        assert "free space, then python -m lstm_exp resume=" in err
        client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
        (run,) = runs(f"sqlite:///{folder}/mlflow.db")
        assert client.get_metric_history(run.info.run_id, "train_loss")  # what was written is kept
    finally:  # lazily: the store's connections in this process may still hold the mount busy
        subprocess.run(["umount", "--lazy", str(folder)], capture_output=True)


@pytest.mark.slow
def test_a_launch_folder_deleted_mid_run_stops_it_in_one_line(tmp_path):
    import shutil

    folder = tmp_path / "launch"
    folder.mkdir()
    proc = start(folder, "task=sin", "steps=200000", "checkpoint.every=100", "tracking.enabled=false")
    assert wait_for(lambda: list(folder.rglob("checkpoint.npz")), timeout=120)
    shutil.rmtree(folder)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "was deleted while this run wrote to it: training stopped after step" in one_error(err)


# ------------------------------------------------------------------------------- files the tool reads back


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["folder", "text file"])
def test_the_report_on_a_store_that_is_a_folder_or_no_database_is_one_line(tmp_path, kind):
    target = tmp_path / "store.db"
    target.mkdir() if kind == "folder" else target.write_text("not a database\n")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "lstm_exp.report", "--uri", f"sqlite:///{target}", "--experiment", "sin"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert str(target) in one_error(done.stderr)
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_after_a_run_exits_the_store_file_alone_holds_it(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "lstm_exp", "task=sin", "steps=5", "progress=false"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    copy = tmp_path / "copy" / "mlflow.db"
    copy.parent.mkdir()
    copy.write_bytes((tmp_path / "mlflow.db").read_bytes())  # the file alone: no -wal beside it
    (run,) = runs(f"sqlite:///{copy}")
    assert run.info.status == "FINISHED" and MlflowClient(f"sqlite:///{copy}").get_metric_history(
        run.info.run_id, "train_loss"
    )


@SLOW
def test_an_experiment_deleted_mid_sweep_is_said_and_leaves_nothing_running(tmp_path):
    proc = start(tmp_path, "-m", "task=sin", "steps=3000", "seed=0,1,2", "hydra.launcher.n_jobs=1")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert wait_for(lambda: (tmp_path / "mlflow.db").exists() and len(runs(uri)) >= 2, timeout=120)
    client = MlflowClient(uri)
    client.delete_experiment(client.get_experiment_by_name("sin").experiment_id)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode != 0
    assert "mlflow experiments restore" in out + err
    # what the message says to do: restore it, sync the jobs that spooled, mark the parent
    client.restore_experiment(client.get_experiment_by_name("sin").experiment_id)
    for spool in tmp_path.rglob("mlflow_spool.jsonl"):
        sync = [sys.executable, "-m", "lstm_exp.sync", str(spool.parent), "--uri", uri]
        assert subprocess.run(sync, capture_output=True, timeout=300).returncode == 0
    fix = [sys.executable, "-m", "lstm_exp.report", "--fix-stale", "--uri", uri]
    assert subprocess.run(fix, capture_output=True, timeout=300).returncode == 0
    assert not [r for r in runs(uri) if r.info.status == "RUNNING"]
    (job,) = [r for r in runs(uri) if r.data.tags.get("sweep.job") == "0"]
    history = client.get_metric_history(job.info.run_id, "train_loss")
    assert len({m.step for m in history}) == len(history) > 1  # every point once

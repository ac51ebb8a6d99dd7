"""Multirun sweeps: failures are contained and counted, runs are grouped under a parent, presets compose."""

import importlib.util
import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from lstm_exp.runner import job, train
from lstm_exp.runner.context import JobContext
from lstm_exp.runner.schema import register


def runs_by_role(client):
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("sweep.role") != "parent"]
    return parents, children


@pytest.fixture(scope="module")
def sweep_with_a_failing_job(tmp_path_factory, app):
    cwd = tmp_path_factory.mktemp("sweep")
    (cwd / "corpus_dir").mkdir()
    proc = app.multirun(
        cwd,
        "task=char",
        "task.corpus=corpus_dir,null",
        "seed=0,1",
        "steps=5",
        "batch_size=2",
        "task.seq_len=10",
        "model.hidden=8",
        "task.sample_every=0",
    )
    return cwd, proc, MlflowClient(f"sqlite:///{cwd}/mlflow.db")


def test_a_failing_job_does_not_stop_the_others_and_is_counted(sweep_with_a_failing_job):
    cwd, proc, _ = sweep_with_a_failing_job
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "sweep: 4 jobs (2 failed, 2 finished); 2 failed" in proc.stdout
    summary = json.loads((cwd / "outputs/sweep/summary.json").read_text())
    assert [j["outcome"] for j in summary["jobs"]] == ["failed", "failed", "finished", "finished"]
    assert "is a directory" in summary["jobs"][0]["error"]


def test_sweep_runs_are_children_of_one_parent_run(sweep_with_a_failing_job):
    _, _, client = sweep_with_a_failing_job
    parents, children = runs_by_role(client)
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.data.tags["sweep.id"] for c in children} == {parent.data.tags["sweep.id"]}
    assert sorted(int(c.data.tags["sweep.job"]) for c in children) == [0, 1, 2, 3]
    assert parent.data.tags["sweep.failed"] == "2" and parent.info.status == "FINISHED"
    failed = [c for c in children if c.info.status == "FAILED"]
    assert len(failed) == 2 and all("is a directory" in c.data.tags["error"] for c in failed)


def test_the_report_is_written_at_the_end_of_the_sweep(sweep_with_a_failing_job):
    cwd, proc, client = sweep_with_a_failing_job
    report = cwd / "outputs/sweep/report"
    assert (report / "report.csv").exists() and (report / "divergence_rate.png").exists()
    parent = runs_by_role(client)[0][0]
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.csv", "report/summary_table.json", "report/loss_curves.png"} <= names


def test_the_sweep_reads_well_in_mlflow(sweep_with_a_failing_job):
    _, _, client = sweep_with_a_failing_job
    (parent,), children = runs_by_role(client)
    assert re.fullmatch(r"sweep \d{4}-\d\d-\d\d \d\d:\d\d corpus×seed \(4\)", parent.info.run_name)
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith("sweep: 4 jobs (2 failed, 2 finished); 2 failed\n")
    # the answer per group, as a markdown table the run page renders, and as metrics
    assert "| task.corpus | runs | diverged | rate (95 % interval) |" in note
    assert {k.split("/")[0] for k in parent.data.metrics} >= {"runs", "diverged", "divergence_rate"}
    names = sorted(c.info.run_name for c in children)
    assert "char adam corpus=corpus_dir seed=0 steps=5 batch_size=2 seq_len=10 hidden=8 sample_every=0" in names
    finished = [c for c in children if c.info.status == "FINISHED"]
    for child in finished:  # the loss curves are drawn once, in the sweep's report
        assert "loss_curve.png" not in {a.path for a in client.list_artifacts(child.info.run_id)}


def test_a_crashing_job_leaves_no_active_run_for_the_next_one(make_cfg, tmp_path, monkeypatch):
    """The basic launcher runs jobs in one process: job k+1 must not inherit job k's run."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ctx = JobContext(multirun=True, output_dir=str(tmp_path), job_num=0, sweep_id="s")
    monkeypatch.setattr(JobContext, "from_hydra", classmethod(lambda cls, experiment=None: ctx))
    cfg = make_cfg("task=sin", "steps=5", f"tracking.uri={uri}", "tracking.experiment=crash", typed=False)
    real_run = train.run

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(train, "run", explode)
    assert job.run_job(cfg) is None  # recorded, not raised
    assert json.loads((tmp_path / "job_status.json").read_text())["outcome"] == "failed"
    monkeypatch.setattr(train, "run", real_run)
    ctx = replace(ctx, job_num=1)
    assert job.run_job(cfg) is not None
    statuses = sorted(
        r.info.status
        for r in MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("crash").experiment_id])
    )
    assert statuses == ["FAILED", "FINISHED"]


def test_one_job_that_raises_is_counted_and_the_others_finish(tmp_path, monkeypatch, capsys, conf_dir):
    """A real multirun in which job 1 raises during training (the pool launcher forks this process, so the
    patch reaches every job)."""
    from hydra.core.global_hydra import GlobalHydra

    from lstm_exp.__main__ import main

    real_run = train.run

    def raise_for_seed_1(cfg, *args, **kwargs):
        if cfg.seed == 1:
            raise RuntimeError("injected failure")
        return real_run(cfg, *args, **kwargs)

    monkeypatch.setattr(train, "run", raise_for_seed_1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "lstm_exp",
            f"--config-path={conf_dir}",
            "-m",
            "progress=false",
            "hydra.sweep.dir=outputs/sweep",
            "task=sin",
            "steps=5",
            "seed=0,1,2",
        ],
    )
    try:
        with pytest.raises(SystemExit) as stopped:
            main()
    finally:
        GlobalHydra.instance().clear()
    assert stopped.value.code == 1
    assert re.search(r"sweep: 3 jobs \(1 failed, 2 \w+\); 1 failed", capsys.readouterr().out)
    parents, children = runs_by_role(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"))
    assert len(parents) == 1 and parents[0].data.tags["sweep.failed"] == "1"
    by_job = {int(c.data.tags["sweep.job"]): c for c in children}
    assert [by_job[k].info.status for k in range(3)] == ["FINISHED", "FAILED", "FINISHED"]
    assert "injected failure" in by_job[1].data.tags["error"]


CONF = Path(__file__).resolve().parents[1] / "conf"


def compose_hydra(*overrides):
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_optuna_stability_search_composes():
    cfg = compose_hydra("hparams_search=stability")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("lstm_exp_launcher.search_sweeper.SearchSweeper")
    assert (sweeper.study_name, sweeper.n_trials) == ("stability", 20)
    assert set(sweeper.params) == {"optim.lr", "optim.clip", "init"}


@pytest.mark.parametrize(
    "launcher,target",
    [
        ("pool", "PoolLauncher"),
        ("joblib", "JoblibLauncher"),
        ("slurm", "lstm_exp_launcher.slurm_launcher.SlurmLauncher"),
    ],
)
def test_launcher_presets_compose(launcher, target):
    assert compose_hydra(f"hydra/launcher={launcher}").hydra.launcher._target_.endswith(target)


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None, reason="the ray extra is not installed"
)
def test_ray_preset_composes():
    assert compose_hydra("hydra/launcher=ray_cluster").hydra.launcher.ray.init.address == "auto"


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None, reason="the ray extra is not installed"
)
def test_a_local_ray_sweep_runs_under_one_parent(tmp_path, app):
    """Ray's workers do not get the launching process's environment; the parent's id reaches them from the
    sweep folder's sweep.json."""
    done = app.multirun(tmp_path, "hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2", "task=sin",
                        "steps=30", "seed=0,1")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (parent,), children = runs_by_role(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"))
    assert len(children) == 2 and {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}


@pytest.mark.slow
def test_eight_parallel_jobs_on_a_fresh_store_lose_nothing(tmp_path, app):
    proc = app.multirun(tmp_path, "task=sin", "seed=range(0,8)", "steps=40", "log_every=5")  # the pool launcher
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parents, children = runs_by_role(client)
    assert len(parents) == 1 and len(children) == 8
    assert all(c.info.status == "FINISHED" for c in children)
    for c in children:  # steps 0, 5, ..., 35 and the last step 39
        assert len(client.get_metric_history(c.info.run_id, "train_loss")) == 9


def histories_by_job(client):
    _, children = runs_by_role(client)
    return {
        int(c.data.tags["sweep.job"]): [
            m.value for m in sorted(client.get_metric_history(c.info.run_id, "train_loss"), key=lambda m: m.step)
        ]
        for c in children
    }


@pytest.mark.slow
def test_basic_joblib_and_pool_launchers_give_identical_runs(tmp_path, app):
    sweep = ["task=sin", "seed=range(0,4)", "steps=30", "log_every=5", "optim.clip=1"]
    histories = {}
    for launcher in ("basic", "joblib", "pool"):
        (tmp_path / launcher).mkdir()
        proc = app.multirun(tmp_path / launcher, f"hydra/launcher={launcher}", *sweep)
        assert proc.returncode == 0, proc.stderr[-2000:]
        client = MlflowClient(f"sqlite:///{tmp_path / launcher}/mlflow.db")
        histories[launcher] = histories_by_job(client)
        (parent,), children = runs_by_role(client)  # the parent's id reached every job (from sweep.json)
        assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(histories["basic"]) == [0, 1, 2, 3]
    assert histories["basic"] == histories["joblib"] == histories["pool"]


def assert_eight_jobs_lose_nothing(cwd, app, url):
    """8 jobs, 2 at a time, against the tracking server at ``url``: 1 parent, 8 children under it, every
    train_loss point once (steps 0, 5, ..., 195 and the last, 199)."""
    proc = app.multirun(
        cwd, "hydra.launcher.n_jobs=2", "task=sin", "seed=range(0,8)", "steps=200", "log_every=5",
        "tracking.log_every=20", f"tracking.uri={url}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(url)
    (parent,), children = runs_by_role(client)
    assert len(children) == 8 and parent.info.status == "FINISHED"
    for c in children:
        assert c.info.status == "FINISHED" and c.data.tags["mlflow.parentRunId"] == parent.info.run_id
        steps = sorted(m.step for m in client.get_metric_history(c.info.run_id, "train_loss"))
        assert steps == list(range(0, 200, 5)) + [199]


@pytest.mark.slow
def test_eight_parallel_jobs_against_a_tracking_server_lose_nothing(tmp_path, app):
    from tests.test_tracking import free_port, start_server, stop_server

    server, url = start_server(tmp_path, free_port())
    try:
        assert_eight_jobs_lose_nothing(tmp_path, app, url)
    finally:
        stop_server(server)


def test_the_sweepers_check_composes_each_new_choice_once_and_the_jobs_the_rest():
    from types import SimpleNamespace

    from lstm_exp.sweeps.launch import LazyCompositions

    composed = []

    def load_sweep_config(master, overrides):
        composed.append(tuple(overrides))
        return {"overrides": list(overrides), "n": len(composed)}

    loader = SimpleNamespace(load_sweep_config=load_sweep_config, list_groups=lambda parent: ["optim", "task"])
    lazy = LazyCompositions().install(loader)
    master = object()
    batch = [[f"optim={o}", f"seed={s}"] for o in ("sgd", "adam") for s in range(3)]
    checked = [loader.load_sweep_config(master, job) for job in batch]  # the sweeper's check of the batch
    assert composed == [("optim=sgd", "seed=0"), ("optim=adam", "seed=0")]  # one job per choice, not six
    assert checked[1] is master and checked[3]["overrides"] == ["optim=adam", "seed=0"]
    lazy.launching()
    assert loader.load_sweep_config(master, batch[3]) is checked[3]  # the job takes the config made for the check
    assert loader.load_sweep_config(master, batch[4])["overrides"] == batch[4]  # the others compose their own
    assert loader.load_sweep_config(master, batch[3])["n"] == 4  # taken once: a later request composes afresh
    lazy.end_batch()  # the next batch is checked anew
    loader.load_sweep_config(master, ["optim=sgd", "seed=9"])
    assert composed[-1] == ("optim=sgd", "seed=9")


def test_the_loader_is_wrapped_only_for_the_hydra_it_was_tested_with(monkeypatch):
    from types import SimpleNamespace

    import hydra

    from lstm_exp.sweeps.launch import LazyCompositions

    def load_sweep_config(master, overrides):
        return object()

    loader = SimpleNamespace(load_sweep_config=load_sweep_config, list_groups=lambda parent: [])
    monkeypatch.setattr(hydra, "__version__", "1.4.0")
    LazyCompositions().install(loader)
    assert loader.load_sweep_config is load_sweep_config  # left as Hydra made it
    monkeypatch.setattr(hydra, "__version__", "1.3.8")
    LazyCompositions().install(loader)
    assert loader.load_sweep_config is not load_sweep_config


def test_the_sweep_console_says_each_job_once_and_keeps_its_lines_in_its_log(sweep_with_a_failing_job):
    cwd, proc, _ = sweep_with_a_failing_job
    lines = [line for line in proc.stdout.splitlines() if re.match(r"\[\d/4\] #\d ", line)]
    assert sorted(line.split("]")[0] for line in lines) == ["[1/4", "[2/4", "[3/4", "[4/4"]
    assert all("task.corpus=" in line and "seed=" in line and "steps=" not in line for line in lines)  # what varies
    assert sum("failed: " in line for line in lines) == 2 and "2 failed" in lines[-1]
    assert "outcome:" not in proc.stdout and "--- sample" not in proc.stdout and "it/s" not in proc.stderr
    assert "report: outputs/sweep/report" in proc.stdout and "parent run (char): http://" in proc.stdout
    finished = json.loads((cwd / "outputs/sweep/2/job_status.json").read_text())
    assert finished["outcome"] == "finished" and finished["line"].startswith("finished (loss ")
    log = next((cwd / "outputs/sweep/2").glob("*.log")).read_text()
    assert "outcome: finished" in log and "mlflow run: " in log

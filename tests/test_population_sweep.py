"""``hydra/launcher=population``: a sweep's jobs trained as populations, each member still a job of its own (folder,
status, checkpoint, MLflow child run, console line) with the numbers it gets as an ordinary job."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from lstm_exp.sweeps import populations
from tests.processes import wait_for


def test_jobs_that_differ_only_in_what_members_may_vary_are_one_group_split_over_the_cores():
    jobs = [[f"seed={s}", f"optim.lr={lr}", "task=sin"] for lr in (0.1, 1.0) for s in range(5)]
    jobs += [["seed=0", "optim=adam", "task=sin"], ["seed=1", "optim=adam", "task=sin"], ["seed=0", "task=x2"]]
    plan = populations.plan(jobs, lambda o: None, lambda o: 100, cores=2)
    assert plan.populations == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10], [11]] and plan.alone == [12]
    assert populations.described(plan) == "12 as 4 populations (5, 5, 1, 1 members); 1 as ordinary jobs"


def test_a_clip_on_and_a_clip_off_are_different_code_paths_and_the_budget_bounds_a_population():
    jobs = [[f"seed={s}", f"optim.clip={c}"] for c in (0, 6) for s in range(6)]
    plan = populations.plan(jobs, lambda o: None, lambda o: 2, cores=2)
    assert plan.populations == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]


def test_jobs_that_cannot_be_stacked_run_alone_and_say_why_once():
    jobs = [[f"seed={s}", "model.impl=my.py:Cell"] for s in range(4)]
    plan = populations.plan(
        jobs, lambda o: "model.impl: a user's model runs its own code", lambda o: 9, 2, nums=[4, 5, 6, 7]
    )
    assert plan.populations == [] and plan.alone == [0, 1, 2, 3]
    assert plan.said == ["jobs #4-#7 run as ordinary jobs: model.impl: a user's model runs its own code"]


@pytest.mark.parametrize("overrides", [["seed=7", "optim.lr=0.3"], ["optim.lr=2", "seed=1", "optim.clip=0.5"]])
def test_a_members_config_made_from_a_siblings_equals_hydras_own_composition(overrides):
    from lstm_exp.runner.preflight import composed
    from lstm_exp.sweeps.population_launch import sibling_config

    fixed = ["experiment=case001_x2", "optim=momentum", "optim.beta=0.5"]
    first = composed([*fixed, "seed=0", "optim.lr=0.1", *(["optim.clip=1"] if len(overrides) > 2 else [])], hydra=True)
    made = sibling_config(first, [*fixed, *overrides], 3)
    want = composed([*fixed, *overrides], hydra=True)
    mine, theirs = (OmegaConf.to_container(c, resolve=False) for c in (made, want))
    for c in (mine, theirs):
        c["hydra"]["job"].pop("num", None), c["hydra"]["job"].pop("id", None), c["hydra"].pop("runtime")
    assert mine == theirs and made.hydra.job.num == 3


def sweep(cwd, *overrides, launcher="population", timeout=600, wait=True):
    cmd = [sys.executable, "-m", "lstm_exp", "-m", "progress=false", f"hydra.sweep.dir={launcher}"]
    cmd += [f"hydra/launcher={launcher}", "hydra.launcher.n_jobs=2", *overrides]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def children(uri, sweep_dir):
    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    found = [r for r in runs if r.data.tags.get("run.dir", "").startswith(str(sweep_dir))]
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    return {int(r.data.tags["sweep.job"]): r for r in found if r.data.tags.get("sweep.role") != "parent"}, parents


def all_training(uri, sweep_dir, jobs: int) -> bool:
    """Every job of the sweep has an MLflow run with a metric point (the store may not exist yet)."""
    try:
        runs, _ = children(uri, sweep_dir)
    except Exception:
        return False
    return len(runs) == jobs and all(r.data.metrics for r in runs.values())


MIXED = ["experiment=case001_x2", "steps=80", "nan.loss_ratio=0", "seed=0,1,2", "optim.lr=0.000185,50", "log_every=10"]


@pytest.mark.slow
def test_a_population_sweep_gives_every_member_the_run_an_ordinary_job_gives_it(tmp_path):
    pop = sweep(tmp_path, *MIXED)
    assert pop.returncode == 0, pop.stderr[-3000:]
    assert "6 as 2 populations (3, 3 members), 2 at a time" in pop.stdout
    assert "sweep: 6 jobs (3 converged, 3 diverged_nan); 0 failed" in pop.stdout and "[6/6]" in pop.stdout
    assert sweep(tmp_path, *MIXED, launcher="pool").returncode == 0
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    members, _ = children(uri, tmp_path / "population")
    alone, _ = children(uri, tmp_path / "pool")
    assert sorted(members) == sorted(alone) == list(range(6))
    client = MlflowClient(uri)
    for job, run in members.items():
        other = alone[job]
        assert run.info.status == other.info.status == "FINISHED"
        assert run.data.params == other.data.params and run.data.tags["population.size"] == "3"
        skip = {"steps_per_sec", "train_seconds", "startup_seconds"}
        mine = {k: v for k, v in run.data.metrics.items() if k not in skip and not k.startswith("system/")}
        theirs = {k: v for k, v in other.data.metrics.items() if k not in skip and not k.startswith("system/")}
        assert mine == theirs, job
        history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert sorted(history) == sorted(
            (m.step, m.value) for m in client.get_metric_history(other.info.run_id, "train_loss")
        )
        for tag in ("outcome", "diverged_at_step", "divergence.kind", "divergence", "nan.where", "nan.first_step"):
            assert run.data.tags.get(tag) == other.data.tags.get(tag), tag
        status = json.loads((tmp_path / "population" / str(job) / "job_status.json").read_text())
        assert status["mlflow_run_id"] == run.info.run_id and status["outcome"] == run.data.tags["outcome"]
    diverged = [r for r in members.values() if r.data.tags["outcome"] == "diverged_nan"]
    assert diverged and all(r.data.tags["nan.where"] for r in diverged)  # named for the member itself
    assert (tmp_path / "population" / "report" / "report.csv").exists()
    # a member's folder is a run's folder: resume= extends it into its own MLflow run
    finished = next(j for j, r in members.items() if r.data.tags["outcome"] == "converged")
    more = subprocess.run(
        [sys.executable, "-m", "lstm_exp", "progress=false", f"resume=population/{finished}", "steps=100"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert more.returncode == 0, more.stderr[-2000:]
    steps = [m.step for m in client.get_metric_history(members[finished].info.run_id, "train_loss")]
    assert max(steps) == 99


@pytest.mark.slow
def test_what_cannot_be_stacked_runs_as_ordinary_jobs_said_once(tmp_path):
    proc = sweep(tmp_path, "task=sin", "steps=20", "seed=0,1", "nan.policy=skip")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run as ordinary jobs: nan.policy=skip") == 1
    assert "sweep: 2 jobs" in proc.stdout


@pytest.mark.slow
def test_a_budget_too_small_for_one_member_is_one_line_and_exit_2(tmp_path):
    proc = sweep(tmp_path, "task=sin", "steps=20", "seed=0,1", "hydra.launcher.memory_gb=0.0000001")
    assert proc.returncode == 2 and "holds not even one member" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_killed_population_costs_its_members_alone(tmp_path):
    proc = sweep(tmp_path, "task=sin", "steps=3000", "seed=range(0,4)", "tracking.log_every=1", wait=False)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert wait_for(lambda: all_training(uri, tmp_path / "population", 4), timeout=120)
    time.sleep(1)
    pid = json.loads((tmp_path / "population" / "0" / "run.lock").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err[-3000:]
    assert "sweep: 4 jobs (2 converged, 2 failed); 2 failed" in out
    assert out.count("failed: its population's process was killed by SIGKILL") == 2
    runs, (parent,) = children(uri, tmp_path / "population")
    killed = [j for j, r in runs.items() if r.info.status == "FAILED"]
    assert sorted(killed) == [0, 1] and all("SIGKILL" in runs[j].data.tags["error"] for j in killed)
    assert all(runs[j].info.status == "FINISHED" for j in (2, 3)) and parent.info.status == "FINISHED"


@pytest.mark.slow
def test_a_stopped_population_sweep_is_finished_as_the_sweep(tmp_path):
    steps = 3000
    proc = sweep(
        tmp_path, "task=sin", f"steps={steps}", "log_every=50", "seed=range(0,4)", "tracking.log_every=1", wait=False
    )
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert wait_for(lambda: all_training(uri, tmp_path / "population", 4), timeout=120)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    statuses = [json.loads((tmp_path / "population" / str(j) / "job_status.json").read_text()) for j in range(4)]
    assert [s["outcome"] for s in statuses] == ["killed"] * 4, out + err
    assert all((tmp_path / "population" / str(j) / "checkpoint.npz").exists() for j in range(4))
    done = subprocess.run(
        [sys.executable, "-m", "lstm_exp", "resume=population"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs, (parent,) = children(uri, tmp_path / "population")
    assert sorted(runs) == [0, 1, 2, 3] and parent.info.status == "FINISHED"
    client = MlflowClient(uri)
    want = sorted({*range(0, steps, 50), steps - 1})
    for run in runs.values():
        assert client.get_run(run.info.run_id).info.status == "FINISHED"
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train_loss")) == want

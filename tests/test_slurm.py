"""Sweeps through Hydra's submitit launchers: sbatch on a real Slurm cluster (``.ci/slurm start`` sets up a
one-node one), and submitit_local, which needs no Slurm.

Through Slurm every job and every metric point lands under the sweep's parent run, a job refused by its config
is recorded like any other, and a job cancelled with ``scancel`` checkpoints and ends its run KILLED.
"""

import importlib.util
import json
import re
import shutil
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.processes import wait_for
from tests.test_sweep_faults import training

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
        reason="hydra-submitit-launcher is not installed (pip install -e '.[slurm]')",
    ),
]

ON_SLURM = ("hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.mem_gb=1")
TIMEOUT = 300  # seconds; each sweep here takes well under a minute


@pytest.fixture(scope="module")
def slurm():
    """A Slurm cluster that answers and has an idle node, or the test is skipped saying why."""
    if shutil.which("sinfo") is None:
        pytest.skip("no Slurm here: sinfo is not on PATH (.ci/slurm start sets up a one-node cluster)")
    try:
        sinfo = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.skip("the Slurm cluster does not answer: sinfo -h took over 30 s")
    if sinfo.returncode != 0:
        pytest.skip(f"the Slurm cluster does not answer: sinfo -h: {sinfo.stderr.strip()}")
    if "idle" not in sinfo.stdout.split():
        pytest.skip(f"no idle Slurm node: sinfo -h -o %t shows {sinfo.stdout.split()}")


def command(*overrides) -> list[str]:
    return [sys.executable, "-m", "lstm_exp", "-m", "progress=false", "hydra.sweep.dir=outputs/sweep", *overrides]


def sweep(cwd, *overrides) -> subprocess.CompletedProcess:
    return subprocess.run(command(*overrides), cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def by_role(cwd):
    """The sweep's parent runs and its child runs by job number, from the store in ``cwd``."""
    client = MlflowClient(f"sqlite:///{cwd}/mlflow.db")
    found = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    parents = [r for r in found if r.data.tags.get("sweep.role") == "parent"]
    children = {int(r.data.tags["sweep.job"]): r for r in found if r.data.tags.get("sweep.role") != "parent"}
    return parents, children


def logged_steps(cwd, run) -> list[int]:
    history = MlflowClient(f"sqlite:///{cwd}/mlflow.db").get_metric_history(run.info.run_id, "train_loss")
    return sorted(m.step for m in history)


def every_step(steps: int, log_every: int) -> list[int]:
    return sorted({*range(0, steps, log_every), steps - 1})


def status(cwd, job) -> dict:
    return json.loads((cwd / "outputs/sweep" / str(job) / "job_status.json").read_text())


def assert_finished_under_one_parent(cwd, jobs: int):
    (parent,), children = by_role(cwd)
    assert parent.info.status == "FINISHED" and sorted(children) == list(range(jobs))
    for run in children.values():
        assert run.info.status == "FINISHED", run.data.tags.get("error")
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    return parent, children


def test_a_sweep_through_sbatch_records_every_run_and_point(slurm, tmp_path):
    proc = sweep(tmp_path, *ON_SLURM, "task=sin", "steps=60", "log_every=5", "seed=range(0,4)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"sweep: 4 jobs \(4 \w+\); 0 failed", proc.stdout)
    _, children = assert_finished_under_one_parent(tmp_path, 4)
    points = {job: logged_steps(tmp_path, run) for job, run in children.items()}
    assert all(steps == every_step(60, 5) for steps in points.values())  # 13 each
    assert sum(map(len, points.values())) == 4 * 13
    assert all(status(tmp_path, job)["mlflow_run_id"] == run.info.run_id for job, run in children.items())
    results = list((tmp_path / "outputs/sweep/.submitit").glob("*_*/*_result.pkl"))
    assert len(results) == 4  # one Slurm array job, one task per run


def test_a_job_refused_under_slurm_is_recorded_like_any_other(slurm, tmp_path):
    proc = sweep(tmp_path, *ON_SLURM, "task=sin", "steps=20", "optim.lr=0.01,-1")
    assert proc.returncode == 1, proc.stderr[-3000:]
    counts = re.search(r"sweep: 2 jobs \((.*)\); 1 failed", proc.stdout)
    assert counts and "1 failed" in counts[1].split(", "), proc.stdout[-2000:]
    (parent,), children = by_role(tmp_path)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.failed"] == "1"
    refused = children[1]
    assert refused.info.status == "FAILED" and "optim.lr=-1" in refused.data.tags["error"]
    assert refused.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert status(tmp_path, 1)["outcome"] == "failed" and children[0].info.status == "FINISHED"


def slurm_id(cwd, job) -> str | None:
    """The Slurm id (``<array>_<task>``) of the sweep's job ``job``, once submitit has submitted it."""
    found = list((cwd / "outputs/sweep/.submitit").glob(f"*_{job}"))
    return found[0].name if found else None


def running_in_slurm(slurm_job) -> bool:
    squeue = subprocess.run(["squeue", "-h", "-j", slurm_job, "-o", "%T"], capture_output=True, text=True)
    return squeue.stdout.strip() == "RUNNING"


@pytest.fixture(scope="module")
def cancelled_sweep(slurm, tmp_path_factory):
    """A 2-job Slurm sweep whose job 1 is cancelled with scancel while it trains: its folder and what the
    launching process did (a CompletedProcess)."""
    if subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True).returncode != 0:
        pytest.skip("Slurm has no job accounting (sacct fails): submitit would wait forever for a cancelled job")
    cwd = tmp_path_factory.mktemp("cancel")
    overrides = (*ON_SLURM, "task=sin", "steps=3000", "log_every=50", "tracking.log_every=1", "seed=0,1")
    proc = subprocess.Popen(command(*overrides), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job = None
    try:
        assert wait_for(lambda: slurm_id(cwd, 1) is not None, timeout=60)
        job = slurm_id(cwd, 1)
        assert wait_for(lambda: running_in_slurm(job) and training(cwd, 0) and training(cwd, 1), timeout=120)
        subprocess.run(["scancel", job], check=True)
        out, err = proc.communicate(timeout=TIMEOUT)  # the launcher does not hang
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if job is not None:  # whatever is left of the sweep's array job
            subprocess.run(["scancel", job.split("_")[0]])
    return cwd, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_job_cancelled_with_scancel_checkpoints_and_ends_killed(cancelled_sweep):
    cwd, proc = cancelled_sweep
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert status(cwd, 1)["outcome"] == "killed" and (cwd / "outputs/sweep/1/checkpoint.npz").exists()
    _, children = by_role(cwd)
    assert children[1].info.status == "KILLED" and children[1].data.tags["outcome"] == "killed"
    assert children[0].info.status == "FINISHED" and logged_steps(cwd, children[0]) == every_step(3000, 50)


def test_a_job_cancelled_with_scancel_is_counted_and_the_sweep_closes(cancelled_sweep):
    cwd, proc = cancelled_sweep
    assert re.search(r"sweep: 2 jobs \(.*1 killed.*\)", proc.stdout), proc.stderr[-3000:]
    assert (cwd / "outputs/sweep/summary.json").exists()
    (parent,), _ = by_role(cwd)
    assert parent.info.status != "RUNNING"


def test_a_sweep_through_submitit_local_runs_under_one_parent(tmp_path):
    proc = sweep(tmp_path, "hydra/launcher=submitit_local", "task=sin", "steps=30", "log_every=5", "seed=0,1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, children = assert_finished_under_one_parent(tmp_path, 2)
    assert all(logged_steps(tmp_path, run) == every_step(30, 5) for run in children.values())


def test_a_job_killed_outright_under_slurm_is_recorded_failed_and_the_sweep_ends_with_its_summary(slurm, tmp_path):
    if subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True).returncode != 0:
        pytest.skip("Slurm has no job accounting (sacct fails): submitit would wait forever for a killed job")
    overrides = (*ON_SLURM, "task=sin", "steps=3000", "log_every=50", "tracking.log_every=1", "seed=0,1")
    proc = subprocess.Popen(
        command(*overrides), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    job = None
    try:
        assert wait_for(lambda: slurm_id(tmp_path, 1) is not None, timeout=60)
        job = slurm_id(tmp_path, 1)
        assert wait_for(lambda: running_in_slurm(job) and training(tmp_path, 1), timeout=120)
        subprocess.run(["scancel", "--signal=KILL", "--full", job], check=True)  # no chance to record itself
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if job is not None:
            subprocess.run(["scancel", job.split("_")[0]])
    assert proc.returncode == 1, err[-3000:]
    # Slurm may deliver a SIGTERM first (the job then checkpoints and records itself killed) or kill it outright
    # (the launcher records it failed, "without a result"): either way recorded, nothing left RUNNING
    found = re.search(r"sweep: 2 jobs \(1 converged, 1 (failed|killed)\)", out)
    assert found, out[-2000:]
    outcome = status(tmp_path, 1)["outcome"]
    assert outcome == found.group(1) and (outcome == "killed" or "without a result" in status(tmp_path, 1)["error"])
    (parent,), children = by_role(tmp_path)
    assert (
        parent.info.status == "FINISHED"
        and children[1].info.status == {"failed": "FAILED", "killed": "KILLED"}[outcome]
    )
    assert children[0].info.status == "FINISHED"

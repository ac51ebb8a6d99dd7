"""Checkpoints and resume: atomic, pickle-free, and bit-identical to an uninterrupted run."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lstm_exp.common.errors import UserError
from lstm_exp.core import optim
from lstm_exp.runner import checkpoint, train
from lstm_exp.runner.resume import locate


def test_optimizer_state_round_trips_through_flat_leaves():
    params = {"W": np.arange(6.0).reshape(2, 3), "b": np.ones(3, dtype=np.float32)}
    opt = optim.build("adam", 0.1, clip=1.0)
    state = opt.init(params)
    _, state = opt.update(params, state, params)
    rebuilt = checkpoint.unflatten_tree(opt.init(params), checkpoint.flatten_tree(state))
    assert type(rebuilt) is type(state) and rebuilt[1].count == state[1].count == 1
    np.testing.assert_array_equal(rebuilt[1].mu["W"], state[1].mu["W"])
    assert rebuilt[1].nu["b"].dtype == np.float32


@pytest.mark.parametrize("task", ["sin", "char"])
def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(make_cfg, tmp_path, task):
    small = [f"task={task}", "batch_size=4", "model.hidden=8", "checkpoint.every=20", "optim.clip=5"]
    if task == "char":
        small += ["task.seq_len=10", "task.sample_every=15", "task.sample_length=20"]
    full = train.run(make_cfg(*small, "steps=60"))
    train.run(make_cfg(*small, "steps=40"), run_dir=tmp_path)  # stops after step 39, checkpointed
    ckpt = checkpoint.load(tmp_path / checkpoint.FILENAME)
    assert ckpt.step == 39
    resumed = train.run(make_cfg(*small, "steps=60"), resume=ckpt)
    np.testing.assert_array_equal(resumed.losses, full.losses)
    for k in full.params:
        np.testing.assert_array_equal(resumed.params[k], full.params[k])
    if task == "char":  # the sampler's generator was restored too
        assert resumed.samples[-1] == full.samples[-1]


def test_checkpoint_write_is_atomic_and_loads_without_pickle(tmp_path):
    ckpt = checkpoint.Checkpoint(
        3,
        {"W": np.ones(2)},
        {},
        {"bit_generator": "PCG64"},
        None,
        np.zeros(4),
        np.zeros(4),
        {"skipped": 0, "clipped_steps": 0},
        None,
    )
    path = checkpoint.save(tmp_path, ckpt)
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint.FILENAME]  # no temp file left behind
    with np.load(path, allow_pickle=False) as data:
        assert "param/W" in data.files
    assert checkpoint.load(path).step == 3


def test_resume_refuses_paths_that_are_not_ours(tmp_path):
    with pytest.raises(UserError, match="not an lstm_exp run directory"):
        locate(str(tmp_path), None)
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("task: {name: sin}\n")
    with pytest.raises(UserError, match="no checkpoint.npz"):
        locate(str(tmp_path), None)
    np.savez(tmp_path / checkpoint.FILENAME, x=np.ones(2))
    with pytest.raises(UserError, match="not an lstm_exp checkpoint"):
        locate(str(tmp_path), None)


@pytest.mark.slow
def test_sigterm_then_resume_gives_the_uninterrupted_final_loss(tmp_path):
    base = [
        sys.executable,
        "-m",
        "lstm_exp",
        "task=sin",
        "steps=400",
        "progress=false",
        "checkpoint.every=25",
        "tracking.enabled=false",
    ]
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [*base, f"hydra.run.dir={run_dir}"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (run_dir / checkpoint.FILENAME).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "continue with: python -m lstm_exp resume=" in err
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstm_exp",
            f"resume={run_dir}",
            "progress=false",
            f"hydra.run.dir={tmp_path / 'resumed'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole = subprocess.run([*base, f"hydra.run.dir={tmp_path / 'whole'}"], cwd=tmp_path, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-2000:]
    metric = [json.loads((p / "job_status.json").read_text())["metric"] for p in (run_dir, tmp_path / "whole")]
    assert metric[0] == metric[1] is not None


def lstm_exp(cwd, *args):
    cmd = [sys.executable, "-m", "lstm_exp", "progress=false", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_resume_with_more_steps_extends_the_run_and_refuses_any_other_change(tmp_path):
    from mlflow.tracking import MlflowClient

    small = ["task=sin", "batch_size=4", "model.hidden=8", "log_every=5", "checkpoint.every=25"]
    assert lstm_exp(tmp_path, *small, "steps=40", "hydra.run.dir=short").returncode == 0  # checkpointed at its end
    refused = lstm_exp(tmp_path, "resume=short", "steps=60", "optim.lr=0.5")
    assert refused.returncode == 2 and "only steps= may change, not optim.lr=0.5 (the run has 0.01)" in refused.stderr
    assert lstm_exp(tmp_path, "resume=short", "steps=30").returncode == 2  # fewer steps: nothing to extend
    extended = lstm_exp(tmp_path, "resume=short", "steps=60")
    assert extended.returncode == 0, extended.stderr[-2000:]
    assert lstm_exp(tmp_path, *small, "steps=60", "hydra.run.dir=long").returncode == 0
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (short,) = client.search_runs(["1"], "tags.`run.dir` LIKE '%short'")
    (long,) = client.search_runs(["1"], "tags.`run.dir` LIKE '%long'")
    history = {
        r: sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id, "train_loss"))
        for r in (short, long)
    }
    # the same run as one of 60 steps, each point once; plus the point at step 39, where the short run had ended
    assert set(history[long]) < set(history[short]) and {s for s, _ in set(history[short]) - set(history[long])} == {39}
    assert short.data.metrics["final_loss"] == long.data.metrics["final_loss"] and short.info.status == "FINISHED"

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

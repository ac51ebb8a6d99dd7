"""The training loop: reproducibility, divergence handling, clipping and the char task's samples."""

import numpy as np
import pytest

from lstm_exp.core import network
from lstm_exp.models import seam
from lstm_exp.runner import train


def test_same_config_and_seed_give_bit_identical_losses(make_cfg):
    cfg = make_cfg("task=sin", "steps=30", "batch_size=4", "optim.clip=6")
    a, b = train.run(cfg), train.run(cfg)
    np.testing.assert_array_equal(a.losses, b.losses)
    np.testing.assert_array_equal(a.grad_norms, b.grad_norms)
    other = train.run(make_cfg("task=sin", "steps=30", "batch_size=4", "optim.clip=6", "seed=1"))
    assert not np.array_equal(a.losses, other.losses)


def test_sine_loss_falls_fifty_fold(make_cfg):
    result = train.run(make_cfg("task=sin", "optim.clip=6", "steps=400", "batch_size=16"))
    assert result.outcome == "converged"
    assert result.first_loss / result.final_loss >= 50


def test_loss_climbing_past_the_ratio_is_reported_as_diverged_loss(make_cfg):
    result = train.run(make_cfg("experiment=case000_char", "steps=60"))
    assert result.outcome == "diverged_loss"
    assert result.divergence["where"] == "loss"
    # the steps, the divergence step and the last loss agree: the divergence step's update is not applied
    assert result.steps == result.divergence["step"] < 60
    assert result.final_loss == result.losses[result.divergence["step"]] >= 10 * result.first_loss


def test_state_clip_fix_trains_the_seed000_preset(make_cfg):
    result = train.run(make_cfg("experiment=case000_char", "steps=60", "optim.clip_mode=state", "optim.clip=6"))
    assert result.outcome == "finished"
    assert result.final_loss < result.first_loss


@pytest.fixture
def nan_at_step(monkeypatch):
    """Make the gradient of Wh non-finite at one chosen step."""
    real = network.loss_and_grads
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        r = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:  # the 4th training step (step 3)
            r.grads["Wh"][0, 0] = np.nan
        return r

    monkeypatch.setattr(seam, "loss_and_grads", poisoned)


@pytest.mark.usefixtures("nan_at_step")
def test_nan_policy_stop_ends_the_run_naming_step_and_tensor(make_cfg):
    result = train.run(make_cfg("task=sin", "steps=10", "eval_every=100", "nan.policy=stop"))
    assert result.outcome == "diverged_nan"
    assert result.divergence["step"] == 3 and result.divergence["where"] == "grad.Wh"
    assert result.steps == 3  # updates applied: the divergence step's was not


@pytest.mark.usefixtures("nan_at_step")
def test_nan_policy_skip_drops_the_update_and_counts_it(make_cfg):
    result = train.run(make_cfg("task=sin", "steps=10", "eval_every=100", "nan.policy=skip"))
    assert result.steps == 10 and result.skipped == 1
    assert all(np.isfinite(p).all() for p in result.params.values())


@pytest.mark.usefixtures("nan_at_step")
def test_nan_policy_continue_applies_the_update(make_cfg):
    result = train.run(make_cfg("task=sin", "steps=10", "eval_every=100", "nan.policy=continue"))
    assert result.steps == 10 and result.skipped == 0
    assert np.isnan(result.params["Wh"]).any()


class Recorder:
    def __init__(self):
        self.metrics, self.texts = [], []

    def log_metrics(self, metrics, step):
        self.metrics.append((step, metrics))

    def log_text(self, text, name):
        self.texts.append((name, text))


def test_logged_metrics_are_finite_and_cover_the_health_measures(make_cfg, step_metrics):
    rec = Recorder()
    train.run(make_cfg("task=sin", "steps=21", "log_every=10", "optim.clip=0.5"), rec)
    assert [s for s, _ in rec.metrics] == [0, 10, 20]
    names = set(rec.metrics[-1][1])
    assert step_metrics | {"train_loss"} <= names
    assert all(np.isfinite(v) for _, m in rec.metrics for v in m.values())
    last = rec.metrics[-1][1]
    assert last["grad_norm_clipped"] <= 0.5 + 1e-12 and last["clip_fraction"] > 0


def test_char_task_prints_and_logs_samples(make_cfg, capsys):
    rec = Recorder()
    cfg = make_cfg(
        "task=char",
        "steps=6",
        "batch_size=2",
        "task.seq_len=10",
        "task.sample_every=5",
        "task.sample_length=12",
        "model.hidden=8",
    )
    result = train.run(cfg, rec)
    assert len(result.samples) == 2 and all(len(s) == 12 for s in result.samples)
    assert [name for name, _ in rec.texts] == ["samples/step_000005.txt", "samples/step_000006.txt"]
    assert result.samples[0] in capsys.readouterr().out


class PoisonedTask:
    """Wraps a task so that one input entry of one step is non-finite."""

    def __init__(self, task, step, batch, timestep):
        self._task, self.where = task, (step, batch, timestep)
        self.name, self.loss = task.name, task.loss
        self.input_dim, self.output_dim = task.input_dim, task.output_dim

    def batch(self, step):
        b = self._task.batch(step)
        if step == self.where[0]:
            x = b.x.copy()
            x[self.where[1], self.where[2], 0] = np.inf
            return b._replace(x=x)
        return b

    def eval_batch(self):
        return self._task.eval_batch()


def test_divergence_report_names_the_tensor_step_timestep_and_batch(make_cfg):
    cfg = make_cfg("task=sin", "steps=20", "batch_size=4", "task.seq_len=12")
    task = PoisonedTask(train.build_task(cfg), step=7, batch=2, timestep=5)
    result = train.run(cfg, task=task)
    d = result.divergence
    assert result.outcome == "diverged_nan" and d["step"] == 7
    assert d["first_nonfinite"] == {"tensor": "gate_preactivation", "timestep": 5, "batch": 2, "phase": "forward"}
    assert "step 7" in d["sentence"] and "t=5" in d["sentence"]
    assert len(d["history"]["loss"]) == 8  # steps 0..7


def test_seed000_sigmoid_fault_diverges_to_nan_within_a_few_steps(make_cfg):
    result = train.run(make_cfg("experiment=case000_char", "model.fault=sigmoid_of_activation"))
    assert result.outcome == "diverged_nan" and result.divergence["step"] < 10
    assert result.divergence["first_nonfinite"] is not None

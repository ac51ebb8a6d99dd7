"""What a run says about itself — its summary, the metrics around a divergence, its per-character loss — and what
a sweep says per job and per group: true, and in words a reader cannot misread."""

import math

import numpy as np
import pandas as pd
import pytest

from lstm_exp.runner import train
from lstm_exp.runner.summary import change, idle_clip_line, summary
from lstm_exp.sweeps.parent import description, group_metrics, mlflow_table
from lstm_exp.sweeps.progress import Progress, job_label, varying_keys


class Recorder:
    def __init__(self):
        self.points = {}

    def log_metrics(self, metrics, step):
        for key, value in metrics.items():
            self.points.setdefault(key, []).append((step, value))

    def log_text(self, text, name):
        pass


@pytest.mark.parametrize(
    "first,final,said",
    [(559.3, 3569.0, "rose 6.38x"), (0.4641, 0.0000331, "fell 1.4e+04x"), (2.0, 2.001, "unchanged")],
)
def test_a_change_of_the_loss_is_said_as_a_rise_or_a_fall(first, final, said):
    assert change(first, final) == said


def test_a_run_that_diverges_charts_every_step_of_its_blow_up_up_to_the_divergence(make_cfg):
    log = Recorder()
    result = train.run(make_cfg("experiment=case000_char", "steps=60", "seed=5"), log)
    step = result.divergence["step"]
    loss_steps = [s for s, _ in log.points["train_loss"]]
    assert loss_steps == sorted(set(loss_steps)), "every point once, in order"
    assert loss_steps[-1] == step and set(range(step - 2, step + 1)) <= set(loss_steps)  # dense at the end
    assert log.points["train_loss"][-1][1] == result.final_loss == result.losses[step]
    logged_norms = dict(log.points["grad_norm"])
    assert max(logged_norms.values()) == pytest.approx(np.nanmax(result.grad_norms[: step + 1]))  # the spike
    assert result.steps == step and f"diverged_loss at step {step}   steps: {step}" in summary(result)


def test_the_char_task_logs_its_loss_per_character_in_nats_and_bits(make_cfg):
    log = Recorder()
    result = train.run(make_cfg("experiment=case000_char", "steps=3", "nan.loss_ratio=0"), log)  # summed over 100
    (_, nats), (_, bits) = log.points["train_loss_per_char"][0], log.points["train_bits_per_char"][0]
    assert nats == pytest.approx(log.points["train_loss"][0][1] / 100) and bits == pytest.approx(nats / math.log(2))
    assert "per character: first" in summary(result) and "unigram entropy" in summary(result)


def test_no_char_sample_is_drawn_when_sample_every_is_zero(make_cfg, capsys):
    result = train.run(make_cfg("task=char", "steps=4", "task.sample_every=0", "batch_size=2"))
    assert result.samples == [] and "--- sample" not in capsys.readouterr().out


def test_a_clip_that_never_acted_is_said(make_cfg):
    result = train.run(make_cfg("task=sin", "steps=20", "optim.clip=1000"))
    line = idle_clip_line(result)
    assert line.startswith("clip 1000 never reached: the largest gradient norm was ")
    assert idle_clip_line(train.run(make_cfg("task=sin", "steps=20", "optim.clip=1e-3"))) is None


def test_the_sweep_console_labels_a_job_by_what_varies_and_counts_the_sweep():
    jobs = [["task=char", f"seed={s}", f"optim.clip={c}"] for s in (0, 1) for c in (0, 6)]
    keys = varying_keys(jobs)
    assert keys == ["seed", "optim.clip"] and job_label(3, jobs[3], keys) == "#3 seed=1 optim.clip=6"
    progress = Progress(planned=4, started=0.0)
    first = progress.line("#0 seed=0 optim.clip=0", "diverged_loss", "diverged_loss at step 7", now=10.0)
    assert first == "[1/4] #0 seed=0 optim.clip=0: diverged_loss at step 7 | 1 diverged, 0 failed | " + (
        "0:10 elapsed, about 0:30 to go"
    )
    progress.line("#1", "failed", None, now=20.0)
    assert progress.line("#2", "finished", None, now=30.0).endswith(
        "| 1 diverged, 1 failed | 0:30 elapsed, about 0:10 to go"
    )


def summary_frame():
    return pd.DataFrame(
        {
            "optim.clip": [0.0, 6.0],
            "runs": [6, 6],
            "failed": [0, 0],
            "completed": [6, 6],
            "diverged": [5, 0],
            "div_rate": [5 / 6, 0.0],
            "div_low": [0.44, 0.0],
            "div_high": [0.97, 0.39],
            "first_div_step": [7.0, float("nan")],
            "loss_median": [float("nan"), 244.0],
            "loss_q25": [float("nan"), 238.2],
            "loss_q75": [float("nan"), 253.2],
            "wall_s": [0.5, 4.0],
        }
    )


def test_the_parent_run_says_the_answer_per_group():
    import mlflow.utils.validation as names

    summary = summary_frame()
    metrics = group_metrics(summary)
    assert metrics["divergence_rate/optim.clip 0.0"] == pytest.approx(5 / 6)
    assert (
        metrics["median_divergence_step/optim.clip 0.0"] == 7.0
        and "median_divergence_step/optim.clip 6.0" not in metrics
    )
    assert all(names.validate_param_and_metric_name(key) for key in metrics)
    text = description("sweep: 12 jobs", summary, "outputs/multirun/x/report")
    assert "| 0.0 | 6 | 5 | 0.83 [0.44, 0.97] | 7 | – |" in text and "| 6.0 | 6 | 0 |" in text
    assert list(mlflow_table(summary).columns)[0] == "optim_clip"  # MLflow's table view shows no dotted column

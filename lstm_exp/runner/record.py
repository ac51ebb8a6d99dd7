"""What a run that trained leaves in MLflow: its outcome as metrics and tags, its divergence, its config, samples,
loss curve and final weights; then it ends FINISHED (a diverged run is a result, not a failure)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from lstm_exp.runner.figures import loss_curve
from lstm_exp.tracking.run import TrackedRun


def summary_metrics(result) -> dict:
    """The run's outcome as numbers, so the runs table sorts and charts by them (non-finite ones are left out)."""
    metrics = {
        "first_loss": result.first_loss,
        "final_loss": result.final_loss,
        "best_loss": result.best_loss,
        "diverged": float(result.divergence is not None),
        "train_seconds": result.wall_time,
    }
    if result.startup:  # none for a run started from Python (lstm_exp.train)
        metrics["startup_seconds"] = result.startup
    if result.final_eval is not None:
        metrics["final_eval_loss"] = result.final_eval
    if result.per_symbol is not None:  # the char task: per character, as the corpus's unigram entropy is
        metrics["final_loss_per_char"] = result.final_loss * result.per_symbol
        if result.final_eval is not None:
            metrics["final_eval_loss_per_char"] = result.final_eval * result.per_symbol
    if result.divergence:
        metrics["diverged_at_step"] = float(result.divergence["step"])
        if is_nan(result.divergence):
            metrics["first_nan_step"] = float(result.divergence["step"])
    return metrics


def is_nan(divergence: dict) -> bool:
    """Whether a divergence was a non-finite value (not a loss that climbed past nan.loss_ratio)."""
    return divergence.get("kind") == "diverged_nan"


def divergence_tags(d: dict) -> dict:
    """A divergence as tags: every kind gets its step, kind and sentence; only a NaN or inf gets the ``nan.*`` tags,
    so filtering runs on them returns the runs that went non-finite."""
    tags = {
        "diverged_at_step": d["step"],
        "divergence.kind": "nan" if is_nan(d) else "loss",
        "divergence": d.get("sentence", d.get("reason")),
    }
    if is_nan(d):
        first = d.get("first_nonfinite") or {}
        tags.update(
            {
                "nan.first_step": d["step"],
                "nan.where": first.get("tensor", d.get("where")),
                "nan.timestep": first.get("timestep"),
            }
        )
    return tags


def finish_run(
    live: TrackedRun, result, config_yaml: str, hydra_dir, title: str, description: str, curve: bool
) -> None:
    """Record the outcome and the artifacts of a run that ended (finished or diverged): status FINISHED.

    ``description`` becomes the run's description in the MLflow UI; ``curve``: attach loss_curve.png (a
    sweep's jobs leave it out: the sweep's report draws every run's curve once, and MLflow charts each metric).
    """
    figure = None
    if curve:  # drawn first: a run written by the agent draws it while the agent may still be starting
        figure = loss_curve(result.losses, result.grad_norms, result.divergence, title)
    live.log_metrics(summary_metrics(result), result.steps)
    live.flush()
    live.clear_tags(["error"])  # a resumed run that ends here is no longer the interrupted one
    tags = {"outcome": result.outcome, "final_loss": f"{result.final_loss:.6g}", "mlflow.note.content": description}
    if result.divergence:
        tags.update(divergence_tags(result.divergence))
        live.log_json(result.divergence, "divergence.json")
    live.set_tags(tags)
    live.log_text(config_yaml, "config.yaml")
    for k, text in enumerate(result.samples):
        live.log_text(text, f"samples/sample_{k:03d}.txt")
    if figure is not None:
        live.log_figure(figure, "loss_curve.png")
    if hydra_dir is not None and Path(hydra_dir).is_dir():
        live.log_dir(hydra_dir, ".hydra")
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "params.npz"
        np.savez(weights, **result.params)
        live.log_file(weights)
    live.end("FINISHED")

"""``lstm_exp.diagnose`` and ``lstm_exp.train``: your LSTM in a notebook, on the command line's own code path.

The settings become the same Hydra overrides ``python -m lstm_exp`` takes (``steps=200``, ``optim__lr=0.1`` or
``**{"optim.lr": 0.1}``), composed with Hydra's compose API and validated by the same schema; a model object is
handed over as ``model.impl=object:<its class>``. Bad input raises ``UserError`` with the line the command line
would print.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field, replace

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from lstm_exp.common.errors import UserError
from lstm_exp.models.diagnosis import Diagnosis
from lstm_exp.models.user import register_object
from lstm_exp.runner import layout_files
from lstm_exp.runner.checks import diagnosis_of
from lstm_exp.runner.context import JobContext
from lstm_exp.runner.job import open_run, owned, prepared_model, recorded, trained
from lstm_exp.runner.preflight import CONF, hydra_message
from lstm_exp.runner.schema import register
from lstm_exp.runner.summary import summary
from lstm_exp.runner.train import RunResult, build_task
from lstm_exp.runner.validation import validate

# pandas is imported when a notebook asks for a table: the API itself stays cheap to import.


def override_value(value) -> str:
    """A Python value as Hydra's override grammar reads it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | np.integer | np.floating):
        return repr(value.item() if isinstance(value, np.generic) else value)
    text = str(value)
    return text if text.replace("_", "").replace("-", "").replace(".", "").replace("/", "").isalnum() else repr(text)


def overrides_of(model, layout, task, settings: dict) -> list[str]:
    """The command line's overrides for these arguments (``a__b=1`` and ``**{"a.b": 1}`` both mean ``a.b=1``)."""
    out = [f"task={task}"]
    if model is not None:
        out.append(f"model.impl={model if isinstance(model, str) else register_object(model)}")
    if layout is not None:
        out.append(f"layout={layout}")
    return out + [f"{key.replace('__', '.')}={override_value(value)}" for key, value in settings.items()]


def config(overrides: list[str]):
    """The validated config the command line would run with ``overrides``; UserError if it would refuse it."""
    register()
    overrides = layout_files.resolve(overrides)
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return validate(compose("config", overrides=["progress=false", *overrides]))
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(hydra_message(e)) from None


def diagnose(model, layout=None, task="sin", **settings) -> Diagnosis:
    typed = config([*overrides_of(model, layout, task, settings), "mode=diagnose"])
    return diagnosis_of(typed)


@dataclass
class Trained:
    """What ``lstm_exp.train`` returns: the outcome, the summary figures and the per-step history."""

    outcome: str  # converged | finished | diverged_nan | diverged_loss
    summary: str  # the lines the command line prints at the end
    metrics: dict  # first_loss, final_loss, best_loss, final_eval_loss, steps, train_seconds
    history: object  # pandas.DataFrame: step, train_loss, grad_norm (every step)
    divergence: dict | None = None
    run_id: str | None = None  # the MLflow run, when tracking is on
    params: dict = field(default_factory=dict)  # the final weights, in the model's own names

    def __str__(self) -> str:
        return self.summary

    def _repr_html_(self) -> str:

        return f"<pre>{html.escape(self.summary)}</pre>" + self.history.tail(5).to_html(index=False)


def trained_result(result: RunResult, run_id: str | None) -> Trained:
    import pandas as pd

    steps = np.arange(len(result.losses))
    history = pd.DataFrame({"step": steps, "train_loss": result.losses, "grad_norm": result.grad_norms})
    metrics = {
        "first_loss": result.first_loss,
        "final_loss": result.final_loss,
        "best_loss": result.best_loss,
        "final_eval_loss": result.final_eval,
        "steps": result.steps,
        "train_seconds": result.wall_time,
    }
    return Trained(result.outcome, summary(result), metrics, history, result.divergence, run_id, result.params)


def train(model=None, layout=None, task="sin", **settings) -> Trained:
    typed = config(overrides_of(model, layout, task, settings))
    if typed.mode.name != "train":
        raise UserError(f"mode={typed.mode.name}: lstm_exp.train trains; use lstm_exp.diagnose to check a model")
    built = build_task(typed)
    network = prepared_model(typed, built)
    ctx = JobContext(overrides=" ".join(overrides_of(model, layout, task, settings)))
    with owned(ctx.output_dir):
        live = open_run(typed, ctx) if typed.tracking.enabled else None
        # the time from launch to the first step means nothing in a notebook's long-lived process
        result = replace(trained(typed, ctx, built, network, live), startup=0.0)
        recorded(typed, ctx, result, live)
    return trained_result(result, live.run_id if live is not None else None)

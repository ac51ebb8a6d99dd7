"""``mode=gradcheck`` and ``mode=diagnose`` for a composed config: the runner side of the checks.

The numerical work lives in ``lstm_exp.core.gradcheck`` (central differences) and ``lstm_exp.models.diagnose`` (the
comparison with the core); here a validated config becomes a small problem, a table on the console,
``diagnosis.json`` and, with tracking on, an MLflow run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lstm_exp.common.atomic import atomic_write
from lstm_exp.common.errors import UserError
from lstm_exp.core.faults import backward_for
from lstm_exp.core.gradcheck import (
    TOLERANCE,
    CheckRow,
    Problem,
    check_problem,
    format_table,
    rel_error,
    resolution_floor,
)
from lstm_exp.core.init import init_from_config
from lstm_exp.core.network import param_shapes
from lstm_exp.models.diagnose import (
    HIDDEN,
    VOCAB,
    Diagnosis,
    diagnose,
    make_cases,
    own_gradcheck,
)
from lstm_exp.models.layout import FUSED, check_fits, from_fused
from lstm_exp.models.seam import build_model
from lstm_exp.models.user import ContractError, raised_in_user_code
from lstm_exp.runner.schema import experiment_name
from lstm_exp.runner.train import build_task
from lstm_exp.tracking.lifecycle import tracked
from lstm_exp.tracking.run import start_run
from tasks import make_task


def task_problem(cfg, hidden: int = 4, batch: int = 2, timesteps: int = 5) -> Problem:
    """The composed config's task, loss, reduction and init, shrunk to a small float64 problem."""

    task = make_task(cfg.task, batch, cfg.seed, np.float64)
    data = task.batch(0)
    x, y = data.x[:, :timesteps], data.y[:, :timesteps]
    rng = np.random.default_rng(cfg.seed)
    params = init_from_config(param_shapes(task.input_dim, hidden, task.output_dim), rng, cfg.init)
    h0, c0, wh, wc = (rng.normal(size=(batch, hidden)) for _ in range(4))
    return Problem(params, x, y, h0, c0, wh, wc, task.loss, cfg.task.reduction.name)


def check_config(cfg, max_entries: int = 400) -> bool:
    """Gradient-check the composed task's model and loss (and ``model.fault`` if one is injected)."""

    p = task_problem(cfg)
    fault = cfg.model.fault.name if cfg.model.fault is not None else None
    rows = check_problem(p, backward=backward_for(fault), max_entries=max_entries, seed=cfg.seed)
    if fault:
        print(f"model.fault={fault}: a deliberately wrong backward is under test")
    title = (
        f"task={cfg.task.name} loss={p.loss} reduction={p.reduction} init={cfg.init.scheme.name}"
        f" (B=2, T={p.x.shape[1]}, H=4, float64, tol {TOLERANCE:g})"
    )
    return print_check(title, rows)


def print_check(title: str, rows: list) -> bool:
    """The table of a gradient check and its one-line result; True when every tensor passes."""
    print(format_table(title, rows))
    failed = [r.tensor for r in rows if not r.passed]
    print("gradient check:", f"FAIL in {', '.join(failed)}" if failed else "all tensors pass")
    return not failed


def subject(cfg, task, need_layout: bool = True):
    """(model under test, its layout, its params, dims) for the config: model.impl, or the core with model.fault.

    The weights are N(0, 0.5) in the core's layout, mapped into the model's names; without a layout (allowed
    when ``need_layout`` is false) they come from the model's own init_params.
    """

    D = min(task.input_dim, VOCAB) if task.loss == "xent" else task.input_dim
    K = D if task.loss == "xent" else task.output_dim
    dims = (D, HIDDEN, K)
    rng = np.random.default_rng(cfg.seed)
    model = build_model(cfg, task, dims)
    layout = getattr(model, "layout", FUSED)  # the core's own layout is the fused one
    if cfg.model.impl is not None:
        if layout is None and not need_layout:
            return model, None, model.init_params(rng), dims
        if layout is None:
            raise UserError(
                f"mode=diagnose compares {model.label} with the core on identical weights, which needs "
                "layout=<name> (conf/layout/: seed000, seed001, seed002, seed003, fused, my_lstm, "
                "or layout=path/to/your_layout.yaml; docs/own_lstm.md#layouts)"
            )
        if hasattr(model.impl, "init_params"):  # its names and shapes against the layout, before its loss runs
            model.init_params(np.random.default_rng([cfg.seed, 1]))
    fused = {k: rng.normal(0.0, 0.5, size=s) for k, s in param_shapes(*dims).items()}
    params = from_fused(fused, layout, *dims)  # biases the layout lacks are dropped: both sides then have none
    check_fits(params, layout, *dims)
    return model, layout, params, dims


def diagnosis_of(cfg) -> Diagnosis:
    """The diagnosis of the composed config's model (``mode=diagnose`` and ``lstm_exp.diagnose``)."""
    task = build_task(cfg)
    model, layout, params, dims = subject(cfg, task)
    try:
        with np.errstate(all="ignore"):
            return diagnose(model, params, layout, dims, task.loss, task.loss == "xent", cfg.seed)
    except ContractError:
        raise
    except (TypeError, ValueError, IndexError, KeyError, ArithmeticError, AttributeError) as e:
        if isinstance(e, UserError):
            raise
        raise raised_in_user_code(f"{model.label}.loss_and_grads", e, getattr(model, "path", None), params) from None


def run_diagnosis(cfg, ctx, config: dict) -> str:
    """Diagnose the composed task's model, print the table and verdict, write diagnosis.json; the verdict."""
    result = diagnosis_of(cfg)
    print(result)
    payload = result.as_json()
    out_dir = ctx.output_dir
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        path = atomic_write(Path(out_dir) / "diagnosis.json", json.dumps(payload, indent=2))
        print(f"diagnosis: {path}")
    if cfg.tracking.enabled:
        _record(cfg, ctx, config, result, result.label)
    return result.verdict


def diagnoses_experiment(cfg) -> str:
    """Diagnoses get an experiment of their own, beside the training runs' (a report over runs never counts them)."""
    return f"{experiment_name(cfg)} diagnoses"


def _record(cfg, ctx, config: dict, result: Diagnosis, label: str) -> None:
    """The diagnosis as an MLflow run: verdict and findings as tags, the JSON and the table as artifacts."""
    t = cfg.tracking
    tags = {
        "task": cfg.task.name,
        "mode": "diagnose",
        **ctx.tags(),
        "verdict": result.verdict,
        "findings": ",".join(result.findings),
        "matched_faults": ",".join(result.matched_faults),
        "loss_convention": result.loss_convention,
        "outcome": result.verdict,
        "model": label,
        "mlflow.note.content": result.sentence,
    }
    experiment = diagnoses_experiment(cfg)
    live = start_run(t.uri, experiment, t.run_name or f"diagnose {label}", config, tags, t.log_every)
    with tracked(live):
        live.log_json(result.as_json(), "diagnosis.json")
        live.log_text(result.table + "\n" + result.sentence + "\n", "diagnosis.txt")
    print(f"mlflow run: {live.run_id} (experiment '{experiment}')")


def run_own_gradcheck(cfg) -> bool:
    """``mode=gradcheck`` for ``model.impl``: central differences of the model's own loss, per tensor (no layout
    needed when it has init_params); True when every tensor passes."""

    task = build_task(cfg)
    model, _, params, dims = subject(cfg, task, need_layout=False)
    rng = np.random.default_rng(cfg.seed)
    case = make_cases(task.loss, task.loss == "xent", dims[0], dims[2], rng)[-1]
    with np.errstate(all="ignore"):
        loss, grads, _ = model.call(params, case.x, case.y, case.h0, case.c0)
        checked = own_gradcheck(model, params, case, grads, rng)
    floor = resolution_floor(loss)
    rows = [
        CheckRow(k, err, len(a), np.size(grads[k]), err < TOLERANCE)
        for k, (a, n) in checked.items()
        for err in [rel_error(a, n, floor)]
    ]
    title = (
        f"{model.label} on task={cfg.task.name}: its gradients vs central differences of its own loss "
        f"({case.name}, D={dims[0]}, H={dims[1]}, K={dims[2]}, float64, tol {TOLERANCE:g})"
    )
    passed = print_check(title, rows)
    if not passed:
        print("(mode=diagnose with a layout= says why: it compares every tensor with the core on identical weights)")
    return passed

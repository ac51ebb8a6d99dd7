"""One Hydra job: validate the composed config, then train (tracked in MLflow) or gradient-check.

Everything a user can get wrong in a config ends here as one readable line and a non-zero exit,
before any training or logging starts. A run that diverges is a result (MLflow status FINISHED); a
crash is recorded as FAILED with its error, and an interrupt as KILLED. Under multirun a failing job
is recorded and reported but does not raise, so the other jobs and the sweep summary go on; every job
leaves ``job_status.json`` in its output directory.

The return value is what a sweeper minimises: the final (eval) loss of a run that finished, and None —
a failed trial for Optuna, never a NaN objective — for a run that diverged or failed.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from lstm_exp import train
from lstm_exp.atomic import atomic_write
from lstm_exp.errors import UserError, refuse
from lstm_exp.schema import validate
from lstm_exp.sweep import STATUS_FILE, status_record, sweep_context

EXIT_CHECK_FAILED = 1  # mode=gradcheck or mode=diagnose found a wrong gradient
EXIT_INTERRUPTED = 130
log = logging.getLogger(__name__)


def summary(result: train.RunResult) -> str:
    """The end-of-run report: outcome, losses, steps, time, and what diverged if anything did."""
    fall = result.first_loss / result.final_loss if result.final_loss > 0 else float("inf")
    lines = [
        f"outcome: {result.outcome}   steps: {result.steps}   wall time: {result.wall_time:.1f} s",
        f"train loss: first {result.first_loss:.4g} -> final {result.final_loss:.4g} "
        f"({fall:.3g}x lower), best {result.best_loss:.4g}",
    ]
    if result.final_eval is not None:
        lines.append(f"eval loss: {result.final_eval:.4g}")
    if result.baseline is not None:
        lines.append(f"unigram entropy of the corpus: {result.baseline:.4g} nats")
    if result.skipped:
        lines.append(f"skipped updates (non-finite): {result.skipped}")
    if result.divergence:
        d = result.divergence
        lines.append(f"diverged at step {d['step']}: {d.get('sentence') or d['where'] + ' (' + d['reason'] + ')'}")
    return "\n".join(lines)


def hydra_context() -> dict:
    """What Hydra knows about this job (overrides, output dir, sweep and job number), if running under it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    sweep = sweep_context() if multirun else {}
    return {
        "overrides": " ".join(hc.overrides.task),
        "output_dir": hc.runtime.output_dir,
        "multirun": multirun,
        "sweep_id": sweep.get("sweep_id", hc.sweep.dir) if multirun else None,
        "parent_run_id": sweep.get("parent_run_id"),
        "job_num": hc.job.num if multirun else None,
    }


def open_run(cfg: DictConfig, ctx: dict):
    """Start the job's MLflow run: params from the composed config, tags from Hydra, git and the sweep."""
    from lstm_exp import tracking

    t = cfg.tracking
    tags = {
        "task": cfg.task.name, "hydra.overrides": ctx.get("overrides", ""), "git.commit": tracking.git_commit(),
        "sweep.id": ctx.get("sweep_id"), "sweep.job": ctx.get("job_num"),
        "mlflow.parentRunId": ctx.get("parent_run_id"), "run.dir": ctx.get("output_dir"), "outcome": "running",
    }
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return tracking.start_run(t.uri, t.experiment or cfg.task.name, t.run_name, config, tags, t.log_every,
                              spool_dir=ctx.get("output_dir"))


def write_status(ctx: dict, outcome: str, metric=None, error=None, run_id=None) -> None:
    if ctx.get("output_dir"):
        path = Path(ctx["output_dir"]) / STATUS_FILE
        atomic_write(path, status_record(outcome, ctx, metric, error, run_id))


def run_job(cfg: DictConfig) -> float | None:
    """Validate, dispatch on ``mode``, train inside an MLflow run, and return the metric to minimise."""
    ctx = hydra_context()
    try:
        return _run(cfg, ctx)
    except train.Interrupted as e:
        write_status(ctx, "killed", error=str(e))
        where = f"checkpoint: {e.checkpoint_path}" if e.checkpoint_path else "no checkpoint (no run directory)"
        print(f"interrupted after step {e.step}; {where}", file=sys.stderr)
        if e.checkpoint_path:
            print(f"continue with: python -m lstm_exp resume={Path(e.checkpoint_path).parent}", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except UserError as e:
        if not ctx.get("multirun"):
            write_status(ctx, "failed", error=str(e))
            refuse(str(e))
        write_status(ctx, "failed", error=str(e), run_id=_record_failed_job(cfg, ctx, e))
        log.error("job %s failed: %s", ctx.get("job_num"), e)
    except Exception as e:
        write_status(ctx, "failed", error=f"{type(e).__name__}: {e}")
        if not ctx.get("multirun"):
            raise
        log.error("job %s failed:\n%s", ctx.get("job_num"), "".join(traceback.format_exception(e)))
    return None


def _record_failed_job(cfg: DictConfig, ctx: dict, error: Exception) -> str | None:
    """Under multirun, a job whose config was refused still gets a FAILED run saying why; its id."""
    if not cfg.get("tracking", {}).get("enabled", False):
        return None
    from lstm_exp.tracking import fail_run

    try:
        live = open_run(cfg, ctx)
        fail_run(live, error)
        return live.run_id
    except Exception as e:  # e.g. the tracking settings themselves are what was wrong
        log.error("could not record the failed job in MLflow: %s", e)
        return None


def prepared_model(typed, task):
    """The config's model, with a user implementation already run once at its initial weights.

    Every contract break of ``model.impl`` (its file, its import, its methods, what it returns, a layout
    that does not fit) is a UserError here, before any MLflow run exists.
    """
    from lstm_exp.models import build_model

    model = build_model(typed, task)
    if hasattr(model, "probe"):
        model.probe(model.init_params(np.random.default_rng(typed.seed)), task.batch(0))
    return model


def _run(cfg: DictConfig, ctx: dict) -> float | None:
    typed = validate(cfg)
    if typed.mode.name == "gradcheck":
        from lstm_exp.checks import check_config, run_own_gradcheck

        check = run_own_gradcheck if typed.model.impl is not None else check_config
        if not check(typed):
            raise SystemExit(EXIT_CHECK_FAILED)
        return 0.0
    if typed.mode.name == "diagnose":
        from lstm_exp.checks import run_diagnosis

        verdict = run_diagnosis(typed, ctx, OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
        if verdict != "correct":
            raise SystemExit(EXIT_CHECK_FAILED)
        return 0.0
    if typed.resume is not None:
        return _resume(cfg, typed, ctx)
    task = train.build_task(typed)
    model = prepared_model(typed, task)
    live = open_run(cfg, ctx) if typed.tracking.enabled else None
    run_dir = ctx.get("output_dir")
    return _train_and_record(cfg, typed, ctx, task, model, live, run_dir)


def _resume(cfg: DictConfig, typed, ctx: dict) -> float | None:
    """Continue a run from its checkpoint, with its own config, into the same MLflow run."""
    from lstm_exp.resume import locate, reopen_run

    run_dir, ckpt, original = locate(typed.resume, typed.tracking.uri)
    original.progress = cfg.progress
    typed = validate(original)
    task = train.build_task(typed)
    model = prepared_model(typed, task)
    live = reopen_run(typed.tracking, ckpt.run_id, run_dir) if typed.tracking.enabled and ckpt.run_id else None
    print(f"resuming {run_dir} after step {ckpt.step}" + (f" into MLflow run {ckpt.run_id}" if live else ""))
    return _train_and_record(original, typed, {**ctx, "output_dir": str(run_dir)}, task, model, live, run_dir, ckpt)


def _train_and_record(cfg, typed, ctx, task, model, live, run_dir, ckpt=None) -> float | None:
    try:
        result = train.run(typed, live, task, run_dir, ckpt, live.run_id if live else None, model)
    except BaseException as e:
        if live is not None:
            from lstm_exp.tracking import fail_run

            fail_run(live, e, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    print(summary(result))
    if live is not None:
        from lstm_exp.tracking import finish_run

        hydra_dir = Path(ctx["output_dir"]) / ".hydra" if ctx else None
        finish_run(live, result, OmegaConf.to_yaml(cfg), hydra_dir, f"{typed.task.name}: {ctx.get('overrides', '')}")
        print(f"mlflow run: {live.run_id} (experiment '{typed.tracking.experiment or typed.task.name}')")
        print(f"view it:    mlflow ui --backend-store-uri {live.client.tracking_uri}")
    metric = result.metric if result.outcome in ("converged", "finished") else None
    write_status(ctx, result.outcome, metric, run_id=live.run_id if live else None)
    return metric

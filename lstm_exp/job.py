"""One Hydra job: validate the composed config, then train (tracked in MLflow) or gradient-check.

Everything a user can get wrong in a config ends here as one readable line and a non-zero exit,
before any training or logging starts. A run that diverges is a result (MLflow status FINISHED); a
crash is recorded as FAILED with its error, and an interrupt as KILLED, before the exception goes on.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig, OmegaConf

from lstm_exp import gradcheck, train
from lstm_exp.errors import ConfigError
from lstm_exp.schema import validate

EXIT_CONFIG_ERROR = 2
EXIT_GRADCHECK_FAILED = 1


def fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


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
    return {
        "overrides": " ".join(hc.overrides.task),
        "output_dir": hc.runtime.output_dir,
        "sweep_id": hc.sweep.dir if multirun else None,
        "job_num": hc.job.num if multirun else None,
    }


def open_run(typed, cfg: DictConfig, ctx: dict):
    """Start the job's MLflow run: params from the composed config, tags from Hydra and git."""
    from lstm_exp import tracking

    t = typed.tracking
    tags = {
        "task": typed.task.name, "hydra.overrides": ctx.get("overrides", ""), "git.commit": tracking.git_commit(),
        "sweep.id": ctx.get("sweep_id"), "sweep.job": ctx.get("job_num"), "outcome": "running",
    }
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return tracking.start_run(t.uri, t.experiment or typed.task.name, t.run_name, config, tags, t.log_every)


def run_job(cfg: DictConfig) -> float:
    """Validate, dispatch on ``mode``, train inside an MLflow run, and return the metric to minimise."""
    try:
        typed = validate(cfg)
        if typed.mode.name == "gradcheck":
            if not gradcheck.check_config(typed):
                raise SystemExit(EXIT_GRADCHECK_FAILED)
            return 0.0
        task = train.build_task(typed)
    except ConfigError as e:
        fail(str(e), EXIT_CONFIG_ERROR)
    ctx = hydra_context()
    live = open_run(typed, cfg, ctx) if typed.tracking.enabled else None
    try:
        result = train.run(typed, live, task)
    except BaseException as e:
        if live is not None:
            from lstm_exp.tracking import fail_run

            fail_run(live, e, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    print(summary(result))
    if live is not None:
        from lstm_exp.tracking import finish_run

        hydra_dir = f"{ctx['output_dir']}/.hydra" if ctx else None
        finish_run(live, result, OmegaConf.to_yaml(cfg), hydra_dir, f"{typed.task.name}: {ctx.get('overrides', '')}")
        print(f"mlflow run: {live.run_id} (experiment '{typed.tracking.experiment or typed.task.name}')")
        print(f"view it:    mlflow ui --backend-store-uri {live.client.tracking_uri}")
    return result.metric

"""One Hydra job: validate the composed config, then train or gradient-check, then summarise.

Everything a user can get wrong in a config ends here as one readable line and a non-zero exit,
before any training starts.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

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
        lines.append(f"diverged at step {d['step']}: {d['where']} ({d['reason']})")
    return "\n".join(lines)


def run_job(cfg: DictConfig) -> float:
    """Validate, dispatch on ``mode``, and return the metric a sweeper minimises."""
    try:
        typed = validate(cfg)
        if typed.mode.name == "gradcheck":
            if not gradcheck.check_config(typed):
                raise SystemExit(EXIT_GRADCHECK_FAILED)
            return 0.0
        result = train.run(typed)
    except ConfigError as e:
        fail(str(e), EXIT_CONFIG_ERROR)
    print(summary(result))
    return result.metric

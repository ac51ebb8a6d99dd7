"""The valid values of every numeric setting (``RANGES``: a positive learning rate, a decay in [0, 1), ...), checked
by the schema's dataclasses (``lstm_exp.runner.schema``) in ``__post_init__``: one line naming the setting, its value
and the rule it breaks."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

from lstm_exp.common.errors import UserError


def require(ok: bool, key: str, value, rule: str) -> None:
    """Raise a UserError naming the setting, its value and the rule it breaks."""
    if not ok:
        raise UserError(f"{key}={value}: {rule}")


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric setting: ``ok(value)``, said as ``values`` ("> 0"), with ``why`` after it."""

    ok: Callable[[float], bool]
    values: str
    why: str = ""

    def rule(self) -> str:
        return f"must be {self.values}{self.why}"


POSITIVE = Range(lambda v: v > 0, "> 0")
NON_NEGATIVE = Range(lambda v: v >= 0, ">= 0")
DECAY = Range(lambda v: 0 <= v < 1, "in [0, 1)", " (a moving average's decay; 1 would never forget)")
FINITE = Range(lambda v: True, "any finite number")
SEED_LIMIT = 2**32  # NumPy's legacy generators, and so Optuna's samplers (hparams_search: seed: ${seed}), take less

RANGES = {  # every numeric setting of the schema and its valid values (tests/test_config.py fails for one missing)
    "seed": Range(lambda v: 0 <= v < SEED_LIMIT, ">= 0 and < 2**32", " (NumPy's and Optuna's seeds)"),
    "steps": POSITIVE,
    "batch_size": POSITIVE,
    "log_every": POSITIVE,
    "eval_every": POSITIVE,
    "blas_threads": POSITIVE,
    "converge_ratio": Range(lambda v: 0 < v < 1, "in (0, 1)", " (converged: the final loss <= this x the first)"),
    "task.timesteps": POSITIVE,
    "task.width": POSITIVE,
    "task.noise": NON_NEGATIVE,
    "task.seq_len": POSITIVE,
    "task.horizon": Range(lambda v: v != 0, "non-zero", " (1 = next value)"),
    "task.period": POSITIVE,
    "task.max_corpus_mb": POSITIVE,
    "task.sample_every": Range(lambda v: v >= 0, ">= 0", " (0: no samples)"),
    "task.sample_length": POSITIVE,
    "task.temperature": POSITIVE,
    "model.hidden": POSITIVE,
    "init.std": POSITIVE,
    "init.forget_bias": FINITE,
    "optim.lr": POSITIVE,
    "optim.clip": Range(lambda v: v >= 0, ">= 0", " (0 or null: off)"),
    "optim.beta": DECAY,
    "optim.decay": DECAY,
    "optim.b1": DECAY,
    "optim.b2": DECAY,
    "optim.eps": POSITIVE,
    "nan.loss_ratio": Range(lambda v: v == 0 or v > 1, "0 (off) or > 1", " (a multiple of the first loss)"),
    "nan.history": POSITIVE,
    "tracking.log_every": POSITIVE,
    "checkpoint.every": Range(lambda v: v >= 0, ">= 0", " (0: only on Ctrl-C / SIGTERM)"),
}


def numbers(node) -> dict:
    """The numeric fields of a schema object that are set (booleans and nulls are not numbers here)."""
    return {
        f.name: value
        for f in fields(node)
        for value in [getattr(node, f.name)]
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def in_range(node, prefix: str) -> None:
    """Raise a UserError for the first numeric setting of ``node`` (its keys ``prefix`` + name) out of its range."""
    for name, value in numbers(node).items():
        key = prefix + name
        require(not isinstance(value, float) or math.isfinite(value), key, value, "must be a finite number")
        allowed = RANGES[key]
        require(allowed.ok(value), key, value, allowed.rule())

"""The end-of-run summary a person reads: the outcome and when, the loss before and after (how much it rose or fell),
the char task's loss per character beside the corpus's entropy, a clip that never acted, and what diverged."""

from __future__ import annotations

import math

import numpy as np

from lstm_exp.runner.train import RunResult


def change(first: float, final: float) -> str:
    """How the loss moved, in words a reader cannot misread: ``rose 6.4x``, ``fell 1.4e+04x``, ``unchanged``."""
    if not (math.isfinite(first) and math.isfinite(final)) or first <= 0 or final <= 0:
        return "no ratio"
    ratio = final / first
    if math.isclose(ratio, 1.0, rel_tol=5e-3):
        return "unchanged"
    return f"rose {ratio:.3g}x" if ratio > 1 else f"fell {1 / ratio:.3g}x"


def outcome_line(result: RunResult) -> str:
    started = f" (first step {result.startup:.1f} s after launch)" if result.startup else ""
    at = f" at step {result.divergence['step']}" if result.divergence else ""
    return f"outcome: {result.outcome}{at}   steps: {result.steps}   training: {result.wall_time:.1f} s{started}"


def per_char_line(result: RunResult) -> str | None:
    """The char task's train loss per character in nats and bits, beside the unigram entropy it should beat."""
    if result.per_symbol is None:
        return None
    first, final = result.first_loss * result.per_symbol, result.final_loss * result.per_symbol
    line = f"per character: first {first:.4g} -> final {final:.4g} nats ({bits(final)})"
    if result.baseline is not None:
        line += f"; the corpus's unigram entropy is {result.baseline:.4g} nats ({bits(result.baseline)})"
    return line


def bits(nats: float) -> str:
    return f"{nats / math.log(2):.3g} bits"


def idle_clip_line(result: RunResult) -> str | None:
    """A clip that never acted in the run, said (it changed nothing)."""
    if result.clip is None or result.clipped_steps:
        return None
    mode, value = result.clip
    norms = result.grad_norms[np.isfinite(result.grad_norms)]
    if mode == "norm" and len(norms):
        return f"clip {value:g} never reached: the largest gradient norm was {norms.max():.3g}"
    what = "clamped a BPTT carry" if mode == "state" else "clipped a gradient entry"
    return f"clip_mode={mode} clip={value:g} never {what}"


def summary(result: RunResult) -> str:
    """The end-of-run report: outcome, losses, steps, time, and what diverged if anything did."""
    lines = [
        outcome_line(result),
        f"train loss: first {result.first_loss:.4g} -> final {result.final_loss:.4g} "
        f"({change(result.first_loss, result.final_loss)}), best {result.best_loss:.4g}",
    ]
    if result.final_eval is not None:
        lines.append(f"eval loss: {result.final_eval:.4g}")
    lines += [line for line in (per_char_line(result), idle_clip_line(result)) if line]
    if result.skipped:
        lines.append(f"skipped updates (non-finite): {result.skipped}")
    if result.divergence:
        d = result.divergence
        lines.append(f"diverged at step {d['step']}: {d.get('sentence') or d['where'] + ' (' + d['reason'] + ')'}")
    return "\n".join(lines)


def short_line(result: RunResult) -> str:
    """The outcome in one line, for a sweep's console: ``diverged_loss at step 7 (loss rose 14.9x)``."""
    at = f" at step {result.divergence['step']}" if result.divergence else ""
    return f"{result.outcome}{at} (loss {change(result.first_loss, result.final_loss)})"

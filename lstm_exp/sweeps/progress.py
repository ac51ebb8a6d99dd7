"""The sweep's console: one line per job as it ends — which job, what it varies, its outcome — with the sweep's
progress (done of planned, diverged and failed so far, elapsed, time to go). Jobs print nothing themselves (they
keep their lines in their folders' logs), so concurrent jobs never interleave."""

from __future__ import annotations

import time
from collections import Counter


def key_values(overrides) -> dict:
    """``['seed=3', 'optim.clip=0']`` -> ``{'seed': '3', 'optim.clip': '0'}`` (flags and bare keys left out)."""
    return dict(o.split("=", 1) for o in overrides if "=" in o and not o.startswith("-"))


def varying_keys(job_overrides) -> list[str]:
    """The keys whose values differ across the jobs (every key when there is one job), in their order."""
    jobs = [key_values(o) for o in job_overrides]
    keys = list(dict.fromkeys(k for job in jobs for k in job))
    if len(jobs) < 2:
        return keys
    return [k for k in keys if len({job.get(k) for job in jobs}) > 1]


def job_label(num: int, overrides, keys: list[str]) -> str:
    """``#3 seed=3 optim.clip=0``: the job's number and its values of the varying keys."""
    values = key_values(overrides)
    return " ".join([f"#{num}", *(f"{k}={values[k]}" for k in keys if k in values)])


def clock(seconds: float) -> str:
    """``1:05``, ``1:02:05``."""
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """The sweep's counts so far, across its batches (a sweeper may launch several)."""

    def __init__(self, planned: int | None, started: float | None = None):
        self.planned, self.started = planned, started if started is not None else time.monotonic()
        self.outcomes: Counter = Counter()

    def line(self, label: str, outcome: str, said: str | None, now: float | None = None) -> str:
        """Count a job that ended with ``outcome`` and say it (``said``: its own line, if it left one)."""
        self.outcomes[outcome] += 1
        done = sum(self.outcomes.values())
        elapsed = (now if now is not None else time.monotonic()) - self.started
        of = f"{done}/{self.planned}" if self.planned else f"{done}"
        diverged = sum(n for k, n in self.outcomes.items() if k.startswith("diverged"))
        tally = f"{diverged} diverged, {self.outcomes['failed'] + self.outcomes['killed']} failed"
        timing = f"{clock(elapsed)} elapsed"
        if self.planned and done < self.planned:
            timing += f", about {clock(elapsed / done * (self.planned - done))} to go"
        return f"[{of}] {label}: {said or outcome} | {tally} | {timing}"

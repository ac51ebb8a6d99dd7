"""How ``hydra/launcher=population`` groups a sweep's jobs: which ones train together, and how many at once.

Jobs can be members of one population when their command lines differ only in settings that change no array's
shape and no code path (``lstm_exp.runner.population.VARYING``: the seed, the learning rate, the clip's value, the
optimizer's hyper-parameters, ``init.std``), a clip being on (> 0) or off being a code path of its own. The first
job of each such group is composed and asked whether it can be stacked at all (a user's model, a deliberate fault,
``nan.policy=skip``, a diagnosis cannot): if not, the group's jobs run as ordinary jobs, with the reason said once.
A group is split into as many populations as there are cores (so they run side by side), each no larger than the
memory budget allows; a group of one job is an ordinary job.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from lstm_exp.runner.population import VARYING


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def clip_on(value: str) -> bool:
    """Whether an ``optim.clip=`` value turns the clip on (a number > 0)."""
    try:
        return float(value) > 0
    except ValueError:  # null, or an interpolation: judged by the composed config
        return value.strip().lower() not in ("null", "none", "0")


def shared_part(overrides: list[str]) -> tuple:
    """What members of one population must have in common: every override but the ``VARYING`` ones, and whether
    the clip is on."""
    fixed = sorted(o for o in overrides if key_of(o) not in VARYING)
    clip = [o.split("=", 1)[1] for o in overrides if key_of(o) == "optim.clip"]
    return (*fixed, *(f"clip on: {clip_on(clip[0])}" for _ in clip[:1]))


@dataclass
class Plan:
    """The batch's jobs (their indices) as populations and ordinary jobs, and the lines that say why."""

    populations: list[list[int]] = field(default_factory=list)
    alone: list[int] = field(default_factory=list)
    said: list[str] = field(default_factory=list)


def split(jobs: list[int], parts: int) -> list[list[int]]:
    """``jobs`` in ``parts`` runs of consecutive jobs whose sizes differ by at most one."""
    size, extra = divmod(len(jobs), parts)
    out, start = [], 0
    for k in range(parts):
        end = start + size + (k < extra)
        out.append(jobs[start:end])
        start = end
    return [part for part in out if part]


def plan(
    job_overrides: list[list[str]],
    why_not: Callable[[list[str]], str | None],
    capacity: Callable[[list[str]], int],
    cores: int,
    max_members: int | None = None,
    nums: list[int] | None = None,
) -> Plan:
    """Group the jobs (module doc). ``why_not(overrides)``: why a job cannot be stacked, or None; ``capacity``: how
    many members of such a job the memory budget holds (at least one, or it raises)."""
    nums = nums or list(range(len(job_overrides)))
    groups: dict[tuple, list[int]] = {}
    for i, overrides in enumerate(job_overrides):
        groups.setdefault(shared_part(list(overrides)), []).append(i)
    out = Plan()
    for jobs in groups.values():
        first = list(job_overrides[jobs[0]])
        reason = why_not(first) if len(jobs) > 1 else None
        if len(jobs) == 1 or reason:
            out.alone += jobs
            if reason:
                out.said.append(f"{listed([nums[i] for i in jobs])} run as ordinary jobs: {reason}")
            continue
        most = min(capacity(first), max_members or len(jobs))
        parts = max(min(cores, len(jobs)), math.ceil(len(jobs) / most))
        out.populations += split(jobs, parts)
    return out


def listed(nums: list[int]) -> str:
    """Job numbers as a reader takes them in: ``job #3``, ``jobs #0-#19``, ``jobs #1, #4, #9``."""
    if len(nums) == 1:
        return f"job #{nums[0]}"
    if nums == list(range(nums[0], nums[0] + len(nums))):
        return f"jobs #{nums[0]}-#{nums[-1]}"
    shown = ", ".join(f"#{n}" for n in nums[:6])
    return f"jobs {shown}" + (f" and {len(nums) - 6} more" if len(nums) > 6 else "")


def described(p: Plan) -> str:
    """How the batch was grouped, in one line."""
    sizes = [len(m) for m in p.populations]
    parts = []
    if sizes:
        shown = ", ".join(str(s) for s in sizes[:8]) + (", ..." if len(sizes) > 8 else "")
        parts.append(f"{sum(sizes)} as {len(sizes)} population{'s' * (len(sizes) > 1)} ({shown} members)")
    if p.alone:
        parts.append(f"{len(p.alone)} as ordinary jobs")
    return "; ".join(parts)

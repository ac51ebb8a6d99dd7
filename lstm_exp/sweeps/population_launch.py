"""The Hydra side of ``hydra/launcher=population``: a sweep's jobs grouped into populations
(``lstm_exp.sweeps.populations``), each population trained as one computation in a process of its own
(``lstm_exp.runner.members``), the jobs that cannot be stacked run as ordinary jobs (``lstm_exp.sweeps.launch``).

Every member is a job: its folder (``.hydra/``, ``job_status.json``, checkpoints, log), its MLflow run under the
sweep's parent, its line on the console. A population's process that dies costs its members (each recorded failed
with the cause, its MLflow run ended), nothing else.
"""

from __future__ import annotations

import copy
import json
import logging
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import hydra
import psutil
from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus, run_job, setup_globals
from omegaconf import DictConfig, open_dict

from lstm_exp.common.errors import UserError
from lstm_exp.runner.context import STATUS_FILE
from lstm_exp.runner.job import memory_need
from lstm_exp.runner.population import VARYING, unstackable
from lstm_exp.runner.schema import typed_config
from lstm_exp.runner.train import build_task
from lstm_exp.sweeps import populations
from lstm_exp.sweeps.callback import refuse_sweep
from lstm_exp.sweeps.launch import (
    TESTED_HYDRA,
    Ended,
    cores,
    hydra_job,
    job_config,
    job_returns,
    list_jobs,
    lost_outcome,
    open_batch,
    run_units,
)
from lstm_exp.tracking.store import forget_inherited_connections

log = logging.getLogger(__name__)


def sibling_config(first: DictConfig, overrides: list[str], num: int) -> DictConfig:
    """Job ``num``'s config made from ``first``, the composed config of a job of its population: the same command line
    but for the values of the keys members may vary (``VARYING``: plain values, no config group), so composing it
    again would only set those values; this sets them on a copy, with Hydra's own override parser and setter, and the
    job's override lists and numbers as Hydra records them (``tests/test_population_sweep.py`` checks it equals
    Hydra's composition). A member then starts in milliseconds instead of a composition's tenth of a second."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    config = copy.deepcopy(first)
    ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if o.key_or_group in VARYING], config)
    app = [o for o in parsed if not o.is_hydra_override()]
    job = config.hydra.job
    with open_dict(config):
        config.hydra.overrides.task = [o.input_line for o in app]
        job.override_dirname = get_overrides_dirname(
            app, job.config.override_dirname.exclude_keys, job.config.override_dirname.item_sep,
            job.config.override_dirname.kv_sep,
        )  # fmt: skip
        job.id, job.num = f"{job.name}_{num}", num
    return config


def member_configs(launcher, members: list[tuple[list[str], int]]) -> list[DictConfig]:
    """The members' configs: the first composed (and each member whose command line is not a sibling's)."""
    first = job_config(launcher, *members[0])
    fixed = populations.shared_part(members[0][0])
    return [
        first if k == 0
        else sibling_config(first, overrides, num) if siblings_ok() and populations.shared_part(overrides) == fixed
        else job_config(launcher, overrides, num)
        for k, (overrides, num) in enumerate(members)
    ]  # fmt: skip


def siblings_ok() -> bool:
    """Only with the Hydra versions ``sibling_config`` was written and tested against."""
    return hydra.__version__.startswith(TESTED_HYDRA)


def population_process(launcher, members: list[tuple[list[str], int]]):
    """A population as a callable for its own process: each member's job prepared through Hydra (its folder and
    ``.hydra/`` files, as any job's), then all trained together and each recorded; what each job said of itself."""

    def run():
        from lstm_exp.runner.members import prepare, train_and_record

        forget_inherited_connections()
        setup_globals()
        folders = []
        with ExitStack() as held:  # the members' folder locks, until every member is recorded
            prepared = []
            for config in member_configs(launcher, members):
                ret = run_job(
                    hydra_context=launcher.hydra_context,
                    task_function=partial(prepare, held=held),
                    config=config,
                    job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                )
                folders.append(Path(str(config.hydra.runtime.output_dir)))
                if ret.status == JobStatus.FAILED:  # raised past the job's own handling: the population stops
                    raise ret._return_value
                if ret.return_value is not None:
                    prepared.append(ret.return_value)
            train_and_record(prepared)
        return {"jobs": [said_by(folder) for folder in folders]}

    return run


def said_by(folder: Path) -> dict:
    """What a member's job said of itself (its status file), as a pool's job returns it."""
    try:
        status = json.loads((folder / STATUS_FILE).read_text())
    except (OSError, ValueError):
        status = None
    return {"value": (status or {}).get("metric"), "status": status}


class Judge:
    """What the launching process asks of a group's first job: can it be stacked, and how many fit the budget."""

    def __init__(self, launcher, n: int):
        self.launcher = launcher
        available = psutil.virtual_memory().available
        self.budget = launcher.memory_gb * 2**30 if launcher.memory_gb else available / n
        self.composed: dict[tuple, object] = {}  # a group's first job is asked both questions: composed once

    def typed(self, overrides):
        key = tuple(overrides)
        if key not in self.composed:
            config = job_config(self.launcher, overrides, 0)
            with open_dict(config):
                del config["hydra"]  # the job's own settings, as its task function gets them
            self.composed[key] = typed_config(config)
        return self.composed[key]

    def why_not(self, overrides) -> str | None:
        try:
            return unstackable(self.typed(overrides))
        except UserError as e:  # each of its jobs says so itself
            return f"its config is refused ({e})"

    def capacity(self, overrides) -> int:
        typed = self.typed(overrides)
        need, _ = memory_need(typed, build_task(typed))
        if need > self.budget:
            said = f"hydra.launcher.memory_gb={self.launcher.memory_gb}" if self.launcher.memory_gb else "free memory"
            raise UserError(
                f"{said}: a population's budget of {self.budget / 2**30:.2f} GiB holds not even one member of "
                f"{' '.join(overrides)} (it needs about {need / 2**30:.2f} GiB); raise hydra.launcher.memory_gb or "
                "use hydra/launcher=pool"
            )
        return int(self.budget // need)


def launch(launcher, job_overrides, initial_job_idx: int):
    """Run the batch as populations and ordinary jobs, at most ``n_jobs`` processes at once; the JobReturns."""
    batch = open_batch(launcher, job_overrides, initial_job_idx)
    n = launcher.n_jobs if launcher.n_jobs > 0 else cores()
    judge = Judge(launcher, n)
    try:
        plan = populations.plan(
            [list(o) for o in job_overrides], judge.why_not, judge.capacity, n, launcher.max_members, batch.nums
        )
    except UserError as e:  # before any job starts: one line, exit 2 (the sweep's parent run is ended FAILED)
        refuse_sweep(str(e))
    list_jobs(batch, f"{populations.described(plan)}, {n} at a time")
    for line in plan.said:
        log.info(line)
    units = [*plan.populations, *([i] for i in plan.alone)]
    stacked = len(plan.populations)

    def process(k: int, unit: list[int]):
        if k < stacked:
            return population_process(launcher, [(batch.overrides[i], batch.nums[i]) for i in unit])
        return hydra_job(launcher, batch.overrides[unit[0]], batch.nums[unit[0]])

    def on_end(ended: Ended, stopped_by) -> None:
        unit = units[ended.index]
        if not ended.returned:
            outcome, error = lost_outcome(ended, stopped_by)
            if ended.index < stacked:
                error = error.replace("the job's process", "its population's process")
            for i in unit:
                batch.lost(i, outcome, error)
            return
        said = ended.value["jobs"] if ended.index < stacked else [ended.value]
        for i, job in zip(unit, said, strict=True):
            batch.returned(i, (job or {}).get("status"))

    ended = run_units(batch, units, [process(k, u) for k, u in enumerate(units)], on_end, n)
    values = {}
    for e in ended:
        said = (e.value or {}).get("jobs") if e.index < stacked else [e.value]
        for k, i in enumerate(units[e.index]):
            values[i] = ((said or [])[k] or {}).get("value") if e.returned and said else None
    return job_returns(batch, values)

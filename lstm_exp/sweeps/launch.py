"""The Hydra side of ``hydra/launcher=pool``: each job composed and run in its own process (``lstm_exp.sweeps.pool``).

A job whose process ends without returning — killed (``kill -9``, the out-of-memory killer), or stopped
by a Ctrl-C before it could checkpoint — cannot record that itself, so the launcher does, at once: the
job's ``job_status.json`` (``outcome`` failed, or killed when the sweep was being stopped, with the cause),
and its MLflow run, if one was left RUNNING, ended FAILED or KILLED with the same ``outcome`` and
``error`` tags. Every other job goes on.

After a Ctrl-C or SIGTERM no job is started; the jobs that never started are listed in the sweep folder's
``stopped.json``, which the sweep callback turns into the summary's "not run" and the commands that run them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, open_dict

from lstm_exp.common.atomic import atomic_write, mask_files
from lstm_exp.common.credentials import mask, masked
from lstm_exp.common.errors import warn
from lstm_exp.common.signals import EXIT_INTERRUPTED, STOP_SIGNALS
from lstm_exp.runner.context import STATUS_FILE, JobContext, sweep_context
from lstm_exp.runner.schema import experiment_name
from lstm_exp.sweeps.pool import Ended, Pool, cause
from lstm_exp.sweeps.progress import Progress, job_label, varying_keys
from lstm_exp.tracking.queries import end_orphans, filter_string, search
from lstm_exp.tracking.store import forget_inherited_connections

# The report is imported in the background while jobs run (warm_up), not at the launcher's start.

STOPPED_FILE = "stopped.json"
log = logging.getLogger(__name__)


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


TESTED_HYDRA = ("1.3.",)  # the hydra-core versions whose ConfigLoaderImpl.load_sweep_config compose_lazily wraps


def group_choices(overrides, groups) -> set[str]:
    """The config-group choices among ``overrides`` (``optim=sgd``, ``hydra/launcher=pool``): what can fail to
    compose, unlike a value (``seed=3``), which the job's own validation checks."""
    keys = {o: o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}
    return {o for o, key in keys.items() if key in groups or "/" in key}


class LazyCompositions:
    """Job configs composed in the jobs' own processes, not all first in the launching one.

    Before launching a batch, Hydra's sweeper composes every job's config to check that it composes (~0.1 s a job:
    a 2,000-job sweep said nothing for minutes). ``install`` wraps the config loader so that the sweeper's check
    composes only the jobs that choose a config-group option not seen before in the batch (the first job, and one
    per new ``optim=``, ``task=``, ...: every choice is still checked before any job starts) and keeps those configs
    for their jobs; every other job composes its own as it starts, on its own core. Once the batch launches
    (``launching``), a composition asked by this process (the config of a job that died, say) is made as usual.

    It wraps a method of Hydra's config loader, so only for the Hydra versions it was written and tested against
    (``TESTED_HYDRA``); with any other, every job is composed first, as Hydra's launchers do.
    """

    def __init__(self):
        self.compose = None
        self.kept: dict[tuple, DictConfig] = {}
        self.checked: set[str] = set()
        self.checking = True
        self.pid = os.getpid()
        self.groups: set[str] = set()

    def install(self, config_loader) -> LazyCompositions:
        compose = getattr(config_loader, "load_sweep_config", None)
        if hydra.__version__.startswith(TESTED_HYDRA) and callable(compose):
            self.compose, self.groups = compose, set(config_loader.list_groups(""))
            config_loader.load_sweep_config = self.load_sweep_config
        return self

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        key = (id(master_config), tuple(sweep_overrides))
        if key in self.kept:  # the job (a fork of this process) takes the config the sweeper had composed
            return self.kept.pop(key)
        choices = group_choices(sweep_overrides, self.groups)
        check = self.checking and os.getpid() == self.pid
        if check and self.checked and choices <= self.checked:
            return master_config  # nothing new to check (the sweeper reads none): the job composes its own
        config = self.compose(master_config, sweep_overrides)
        if check:
            self.checked |= choices or {"the first job"}
            self.kept[key] = config
        return config

    def launching(self) -> None:
        self.checking = False

    def end_batch(self) -> None:
        """The batch's jobs have all started: forget its kept configs; the next batch is checked anew."""
        self.kept.clear()
        self.checked.clear()
        self.checking = True


def job_config(launcher, overrides, num: int) -> DictConfig:
    """Job ``num``'s composed config, as Hydra's own launchers compose it."""
    config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(config):
        config.hydra.job.id = f"{config.hydra.job.name}_{num}"
        config.hydra.job.num = num
    return config


def hydra_job(launcher, overrides, num: int):
    """Job ``num`` as a callable for its own process: compose, run through Hydra, return the task's value."""

    def run():

        forget_inherited_connections()
        setup_globals()
        config = job_config(launcher, overrides, num)
        HydraConfig.instance().set_config(config)
        ret = run_job(
            hydra_context=launcher.hydra_context,
            task_function=launcher.task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        if ret.status == JobStatus.FAILED:  # the task raised: its traceback is printed, the job failed
            raise ret._return_value
        status = Path(str(config.hydra.runtime.output_dir)) / STATUS_FILE  # what it said of itself, for the console
        return {"value": ret.return_value, "status": json.loads(status.read_text()) if status.exists() else None}

    return run


def ready_for_the_report(config: DictConfig) -> None:
    """While the jobs run: the imports of the end-of-sweep report (written if runs are tracked)."""
    if config.tracking.enabled:
        from lstm_exp.sweeps.report import warm_up

        warm_up()


def job_dir(config: DictConfig) -> Path:
    """The job's output folder (Hydra's ``hydra.sweep.dir/hydra.sweep.subdir``)."""
    return Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)


def orphaned_runs(config: DictConfig, sweep_id: str) -> list[str]:
    """The job's MLflow runs still RUNNING (its process is gone, so nobody will end them)."""

    t = config.tracking
    query = filter_string(sweep_id, {"sweep.job": config.hydra.job.num}) + " and attributes.status = 'RUNNING'"
    found = search(t.uri, experiment_name(config), query)
    return list(found["run_id"]) if len(found) else []


def record_lost_job(config: DictConfig, overrides, sweep_id: str, outcome: str, error: str) -> bool:
    """Leave the status and end the MLflow run of a job whose process ended without returning (module doc);
    False if the job had recorded its outcome itself (an interrupted job that checkpointed, say)."""

    run_id = None
    if config.tracking.enabled:
        try:
            status = "KILLED" if outcome == "killed" else "FAILED"
            ended = end_orphans(config.tracking.uri, orphaned_runs(config, sweep_id), error, status)
            run_id = ended[0] if ended else None
        except Exception as e:  # the store itself may be what failed; the status file still says what happened
            warn(f"job {config.hydra.job.num}: could not end its MLflow run ({e})")
    folder = job_dir(config)
    if (folder / STATUS_FILE).exists():  # a job that wrote its own outcome said it best
        return run_id is not None
    folder.mkdir(parents=True, exist_ok=True)
    ctx = JobContext(" ".join(filter_overrides(overrides)), str(folder), True, sweep_id, None, config.hydra.job.num)
    ctx.write_status(outcome, error=error, run_id=run_id)
    return True


def collect(launcher, job_overrides, initial_job_idx: int, error: str) -> list[JobReturn]:
    """The results of a batch another launcher could not return (Slurm's, when a job was killed outright), read
    from each job's own folder; a job that left no status is recorded failed with ``error`` (its status written,
    its MLflow run ended)."""
    sweep_id = sweep_context(Path(str(launcher.config.hydra.sweep.dir))).get("sweep_id")
    returns = []
    for num, overrides in enumerate(job_overrides, start=initial_job_idx):
        config = job_config(launcher, overrides, num)
        status = job_dir(config) / STATUS_FILE
        if not status.exists() and record_lost_job(config, overrides, sweep_id or "", "failed", error):
            print(f"job {num} failed: {error}", file=sys.stderr)
        try:
            metric = json.loads(status.read_text()).get("metric")
        except (OSError, ValueError):
            metric = None
        returns.append(
            JobReturn(
                overrides=list(overrides),
                task_name=config.hydra.job.name,
                status=JobStatus.COMPLETED,
                _return_value=metric,
            )
        )
    return returns


def lost_outcome(ended: Ended, stopped_by: int | None) -> tuple[str, str]:
    """(outcome, error) of a job whose process ended without returning."""
    # stopped: after the first signal (it stopped after its step) or the second (it was killed at once)
    stopped_signals = (*STOP_SIGNALS, signal.SIGKILL)
    stopped = stopped_by is not None and (ended.exitcode == EXIT_INTERRUPTED or -ended.exitcode in stopped_signals)
    if stopped:
        name = signal.Signals(stopped_by).name
        return "killed", f"the sweep was stopped ({name}) before this job could finish its step and checkpoint"
    return "failed", cause(ended.exitcode, ended.timed_out)


def note_not_started(sweep_dir: Path, stopped_by: int, jobs: list[dict]) -> None:
    """Add the jobs that never started to the sweep folder's ``stopped.json``."""
    path = sweep_dir / STOPPED_FILE
    earlier = json.loads(path.read_text())["not_started"] if path.exists() else []
    record = {"signal": signal.Signals(stopped_by).name, "not_started": earlier + jobs}
    atomic_write(path, json.dumps(masked(record), indent=2))


@dataclass
class Batch:
    """A batch of a sweep's jobs being launched: their overrides and numbers, the sweep's folder and id, and the
    console count it adds to. Its jobs run in units (a job, or a population of jobs), each a process of the pool."""

    launcher: object
    overrides: list
    nums: list[int]
    sweep_dir: Path
    sweep_id: str
    progress: Progress
    keys: list = field(default_factory=list)

    def label(self, i: int) -> str:
        return job_label(self.nums[i], filter_overrides(self.overrides[i]), self.keys)

    def returned(self, i: int, status: dict | None) -> None:
        """Job ``i`` returned: its line, from what it said of itself."""
        status = status or {}
        said = status.get("line") or (f"failed: {status['error']}" if status.get("error") else None)
        print(mask(self.progress.line(self.label(i), status.get("outcome", "finished"), said)), flush=True)

    def lost(self, i: int, outcome: str, error: str) -> None:
        """Job ``i``'s process ended without returning: its line, its status written and its MLflow run ended."""
        print(mask(self.progress.line(self.label(i), outcome, f"{outcome}: {error}")), flush=True)
        try:
            config = job_config(self.launcher, self.overrides[i], self.nums[i])
        except Exception as e:  # a sweeper's value that does not compose: the job died composing it
            print(f"job {self.nums[i]} failed: its config does not compose ({e})", file=sys.stderr)
            return
        record_lost_job(config, self.overrides[i], self.sweep_id, outcome, error)


def open_batch(launcher, job_overrides, initial_job_idx: int) -> Batch:
    """Start launching a batch: Hydra's globals and logging, the sweep folder, the console count."""
    launcher.compositions.launching()
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    mask_files(sweep_dir.glob("*.yaml"))  # multirun.yaml, which Hydra's sweeper has just saved as given
    sweep_id = sweep_context(sweep_dir).get("sweep_id") or str(sweep_dir)
    if launcher.progress is None:  # one count over all the batches a sweeper launches
        launcher.progress = Progress(sweep_context(sweep_dir).get("planned"))
    nums = [initial_job_idx + i for i in range(len(job_overrides))]
    keys = varying_keys(job_overrides)
    return Batch(launcher, list(job_overrides), nums, sweep_dir, sweep_id, launcher.progress, keys)


def list_jobs(batch: Batch, how: str) -> None:
    log.info(f"Launching {len(batch.nums)} jobs, {how}; sweep dir: {batch.sweep_dir}")
    for num, overrides in zip(batch.nums, batch.overrides, strict=True):
        log.info(f"\t#{num} : {mask(' '.join(filter_overrides(overrides)))}")


def run_units(batch: Batch, units: list[list[int]], processes: list, on_end, n: int) -> list[Ended]:
    """Run the units (each a list of the batch's job indices, and its process's callable), ``n`` at a time; how
    each unit that started ended. The jobs of units never started (the sweep was stopped) go to ``stopped.json``."""
    launcher = batch.launcher
    pool = Pool(n, launcher.timeout)
    pool.stopped_by = launcher.stopped_by  # an earlier batch was stopped: start nothing
    ended = pool.run(
        processes, lambda e: on_end(e, pool.stopped_by), alongside=lambda: ready_for_the_report(launcher.config)
    )
    launcher.compositions.end_batch()
    launcher.stopped_by = pool.stopped_by
    started = {i for e in ended for i in units[e.index]}
    if pool.stopped_by is not None:
        never = [
            {"job": batch.nums[i], "overrides": list(o)} for i, o in enumerate(batch.overrides) if i not in started
        ]
        note_not_started(batch.sweep_dir, pool.stopped_by, never)
    return ended


def job_returns(batch: Batch, values: dict[int, object]) -> list[JobReturn]:
    """The JobReturns of the jobs that ran, in the batch's order: each the value its task returned."""
    return [
        JobReturn(
            overrides=list(batch.overrides[i]),
            working_dir=None,
            task_name=batch.launcher.config.hydra.job.name,
            status=JobStatus.COMPLETED,
            _return_value=value,
        )
        for i, value in sorted(values.items())
    ]


def launch(launcher, job_overrides, initial_job_idx: int) -> list[JobReturn]:
    """Run the batch of jobs, at most ``launcher.n_jobs`` at once; the JobReturns of the jobs that ran.

    A job whose process died returns None, as lstm_exp's own failed jobs do (a failed trial for a sweeper).
    """
    batch = open_batch(launcher, job_overrides, initial_job_idx)
    n = launcher.n_jobs if launcher.n_jobs > 0 else cores()
    list_jobs(batch, f"{n} at a time, each in its own process")

    def on_end(ended: Ended, stopped_by) -> None:
        if ended.returned:
            batch.returned(ended.index, (ended.value or {}).get("status"))
        else:
            batch.lost(ended.index, *lost_outcome(ended, stopped_by))

    units = [[i] for i in range(len(job_overrides))]
    processes = [hydra_job(launcher, o, num) for num, o in zip(batch.nums, batch.overrides, strict=True)]
    ended = run_units(batch, units, processes, on_end, n)
    return job_returns(batch, {e.index: (e.value or {}).get("value") if e.returned else None for e in ended})

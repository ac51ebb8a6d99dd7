"""Multirun sweeps: a Hydra callback that brackets the jobs with an MLflow parent run and a summary.

``on_multirun_start`` (in the launching process, before any job starts):
- creates the MLflow store if it is new, once — several processes migrating a fresh SQLite store at the
  same time collide and can leave it unusable;
- opens one parent run in every experiment the jobs will write to (a sweep over ``task=x2,char`` writes to
  two; each experiment is created here, before any job), tagged ``sweep.id``, ``sweep.role=parent`` and
  the command-line overrides, and hands their ids to the jobs in the sweep folder's ``sweep.json``,
  so every child run carries its experiment's ``mlflow.parentRunId`` and the MLflow UI shows the sweep as
  one expandable row per experiment.

Ctrl-C and SIGTERM are held (``lstm_exp.common.signals``) in the launching process from the start of the sweep: with
the pool launcher until it can pass them on to its jobs (a signal held till then stops the sweep before any
job starts), with another launcher until the parents are open (then it ends them KILLED); and again while
the sweep ends, so the summary and the parents are never half-written.

``on_multirun_end`` reads every job folder's ``job_status.json`` (written by the job whatever happened to it,
tracking or not; a missing or corrupt one makes that job failed, not the summary), prints the summary,
writes the report (table, CSV, plots) next to it and into each parent run, and exits with status 1 if any
job failed or if writing the summary or closing a parent did (said on one ``error:`` line: Hydra would only
warn).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import signal
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lstm_exp.common.atomic import atomic_write, mask_files
from lstm_exp.common.credentials import masked
from lstm_exp.common.errors import complain, first_line, refuse
from lstm_exp.common.signals import STOP_SIGNALS, held, latch_signals
from lstm_exp.runner.context import STATUS_FILE, SWEEP_FILE, sweep_context
from lstm_exp.runner.continuation import continues_sweep
from lstm_exp.runner.schema import experiment_name
from lstm_exp.sweeps.continuation import command as continue_command
from lstm_exp.sweeps.launch import STOPPED_FILE
from lstm_exp.sweeps.parent import description, group_metrics, mlflow_table
from lstm_exp.tracking import run as tracking
from lstm_exp.tracking.lifecycle import end_by_id
from lstm_exp.tracking.queries import end_orphans, filter_string, search
from lstm_exp.tracking.run import MlflowRun, run_link
from lstm_exp.tracking.run_names import sweep_name
from lstm_exp.tracking.store import release, resolve_uri

# Lazy: MLflow's client (about 1.7 s) and the report (pandas, scipy, matplotlib), needed at a sweep's start and end
# only; Optuna only under hparams_search.


def read_status(job_dir: Path) -> dict:
    """A job folder's status record; a missing or unreadable one is that job's failure, said as such."""
    job = int(job_dir.name) if job_dir.name.isdigit() else None
    path = job_dir / STATUS_FILE
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or "outcome" not in record:
            raise ValueError("no outcome in it")
    except FileNotFoundError:
        error = f"no {STATUS_FILE}: the job died before it could write one (killed, or out of memory)"
        record = {"job": job, "overrides": None, "outcome": "failed", "metric": None, "error": error}
    except (OSError, ValueError) as e:
        error = f"{STATUS_FILE} unreadable ({type(e).__name__}: {e})"
        record = {"job": job, "overrides": None, "outcome": "failed", "metric": None, "error": error}
    return {"mlflow_run_id": None, **record, "dir": str(job_dir)}


def read_statuses(sweep_dir) -> list[dict]:
    """Every job's status record under the sweep directory (one per job folder), in job order."""
    jobs = [p for p in Path(sweep_dir).iterdir() if p.is_dir() and p.name.isdigit()] if Path(sweep_dir).is_dir() else []
    records = [read_status(p) for p in jobs]
    return sorted(records, key=lambda r: (r.get("job") is None, r.get("job")))


def summary_line(records: list[dict], planned: int | None = None) -> str:
    """``sweep: 12 jobs (…); 1 failed``; with jobs that never started: ``sweep: 8 of 12 planned jobs ran (…); 4 not
    run; 1 failed``; with jobs whose MLflow records wait in their spool: ``...; 2 not fully recorded (python -m
    lstm_exp.sync <job folder>)``."""
    counts = Counter(r["outcome"] for r in records)
    parts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    if planned is not None and planned > len(records):
        ran = f"{len(records)} of {planned} planned jobs ran" + (f" ({parts})" if parts else "")
        ran += f"; {planned - len(records)} not run"
    else:
        ran = f"{len(records)} jobs" + (f" ({parts})" if parts else "")
    line = f"sweep: {ran}; {counts.get('failed', 0)} failed"
    spooled = sum(1 for r in records if r.get("spooled"))
    return line + (f"; {spooled} not fully recorded (python -m lstm_exp.sync <job folder>)" if spooled else "")


def read_stopped(sweep_dir: Path) -> dict | None:
    """The launcher's record of a sweep stopped by a signal (``stopped.json``: the signal, the jobs never
    started), or None if it was not stopped."""

    path = sweep_dir / STOPPED_FILE
    return json.loads(path.read_text()) if path.exists() else None


def swept_keys(config: DictConfig) -> list[str]:
    """The keys the sweep varies (its sweep overrides, or a search's parameters)."""

    params = config.hydra.sweeper.get("params") or {}
    try:
        overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    except Exception:  # an override only the sweeper understands
        return list(params)
    return [o.get_key_element() for o in overrides if o.is_sweep_override()] + list(params)


def planned_jobs(config: DictConfig) -> int | None:
    """How many jobs the sweep will launch: the product of its sweep overrides' lengths (Hydra's basic sweeper),
    or ``hydra.sweeper.n_trials`` for a search; None if it cannot be told."""

    if str(config.hydra.sweeper.get("_target_")).endswith(".SearchSweeper"):  # a study may have trials already
        from lstm_exp.sweeps.search import remaining_trials

        return remaining_trials(config)
    trials = config.hydra.sweeper.get("n_trials")
    if trials is not None:
        return int(trials)
    try:
        overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
        sizes = [len(list(o.sweep_string_iterator())) for o in overrides if o.is_sweep_override()]
    except Exception:  # an override only the sweeper understands (interval(...), say)
        return None
    return int(np.prod(sizes)) if sizes else 1


EXPERIMENT_KEYS = ("task", "experiment", "tracking.experiment")  # the overrides that can move a job's experiment


def job_experiments(config: DictConfig) -> list[str]:
    """The MLflow experiments the sweep's jobs will write to, in order, by composing each combination of the
    overrides that choose one (a sweep over ``task=x2,char`` writes to two)."""

    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    fixed = [o.input_line for o in overrides if not o.is_sweep_override()]
    choices = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
        for o in overrides
        if o.is_sweep_override() and o.get_key_element().lstrip("+~") in EXPERIMENT_KEYS
    ]
    found = []
    for combo in itertools.product(*choices):
        try:
            job = compose(config_name="config", overrides=[*fixed, *combo])
        except Exception:  # this combination does not compose: its jobs will fail and say why themselves
            continue
        name = experiment_name(job)
        if name not in found:
            found.append(name)
    return found or [experiment_name(config)]


LOST_ERROR = "its process ended without ending its run (killed, or out of memory)"


def end_lost_runs(context: dict, experiments: list[str]) -> list[str]:
    """End, FAILED with the cause, the sweep's runs still RUNNING whose process is gone — what a launcher that does
    not record its dead jobs (Hydra's joblib, basic) leaves; the problems met doing it (none: [])."""
    query = filter_string(context["sweep_id"]) + " and attributes.status = 'RUNNING'"
    try:
        running = search(context["uri"], experiments, query)
        ended = end_orphans(context["uri"], list(running["run_id"]) if len(running) else [], LOST_ERROR)
    except Exception as e:  # the store itself may be what failed; the parents are closed (or not) after this
        return [f"could not end the sweep's lost runs ({type(e).__name__}: {first_line(e)})"]
    for run_id in ended:
        print(f"ended run {run_id} FAILED: {LOST_ERROR}", file=sys.stderr)
    return []


REFUSED: list[str] = []  # a launcher that refused the sweep before any job ran (refuse_sweep): why


def refuse_sweep(problem: str) -> None:
    """Refuse the sweep from its launcher, before any job: one line, exit 2; its parent run ends FAILED saying so."""
    REFUSED.append(problem)
    refuse(problem)


class SweepCallback(Callback):
    """Registered in conf/config.yaml under ``hydra.callbacks``; inert for single runs."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        previous = latch_signals()  # see the module doc
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        mask_files(sweep_dir.glob("*.yaml"))  # multirun.yaml: the command line as given
        if continues_sweep(config.get("resume"), str(sweep_dir)):
            self._reopen_parents(config, sweep_dir)
            atexit.register(self._end_if_the_sweep_raised, config)
            if not self._pool(config):
                self._release_signals(sweep_context(sweep_dir), previous)
            return
        if (sweep_dir / SWEEP_FILE).exists():  # another sweep's folder: its runs and ours must never mix
            raise SystemExit(
                complain(
                    f"hydra.sweep.dir={sweep_dir} holds a sweep already; finish it with {continue_command(sweep_dir)}, "
                    "or give a new folder"
                )
            )
        context = {"sweep_id": str(sweep_dir), "planned": planned_jobs(config)}
        if config.tracking.enabled:
            name = config.tracking.run_name or sweep_name(datetime.now(), swept_keys(config), context["planned"])
            try:
                context.update(self._open_parents(config, str(sweep_dir), name))
            except Exception as e:  # Hydra would only warn and launch every job: refused here, before any job
                problem = f"the sweep's MLflow parent run could not be opened: {first_line(e)}"
                raise SystemExit(complain(problem)) from None
        atomic_write(sweep_dir / SWEEP_FILE, json.dumps(masked(context), indent=2))
        atexit.register(self._end_if_the_sweep_raised, config)
        if not self._pool(config):  # the pool takes the latch over
            self._release_signals(context, previous)

    def _end_if_the_sweep_raised(self, config: DictConfig) -> None:
        """At exit, if the sweep never reached its end (a launcher raised: joblib's pool when a worker is killed),
        end what it left RUNNING — the runs whose process is gone, and its parents — FAILED with the cause."""
        if getattr(self, "ended", False):
            return
        context = sweep_context(config.hydra.sweep.dir)
        if not context.get("parents"):
            return
        context["uri"] = resolve_uri(config.tracking.uri)
        end_lost_runs(context, list(context["parents"]))
        from mlflow.tracking import MlflowClient

        client = MlflowClient(context["uri"])
        error = REFUSED[0] if REFUSED else "the sweep ended before its end: its launcher raised (see the console)"
        for parent_run_id in context["parents"].values():
            with contextlib.suppress(Exception):
                end_by_id(client, parent_run_id, "FAILED", error)
        if not REFUSED:  # a refusal has said its one line
            complain(f"{error}; its runs were ended; the jobs' folders in {config.hydra.sweep.dir} keep what they did")

    @staticmethod
    def _pool(config: DictConfig) -> bool:
        return str(config.hydra.launcher._target_).endswith((".PoolLauncher", ".PopulationLauncher"))

    @staticmethod
    def _reopen_parents(config: DictConfig, sweep_dir: Path) -> None:
        """A sweep being finished: its parent runs RUNNING again (they end with the report over every job), the
        record of its earlier stop gone."""
        context = sweep_context(sweep_dir)
        if context.get("parents"):
            from mlflow.tracking import MlflowClient

            client = MlflowClient(resolve_uri(config.tracking.uri))
            for parent_run_id in context["parents"].values():
                rounds = int(client.get_run(parent_run_id).data.tags.get("sweep.continued", "0")) + 1
                client.update_run(parent_run_id, status="RUNNING")
                client.set_tag(parent_run_id, "sweep.continued", str(rounds))
        (sweep_dir / STOPPED_FILE).unlink(missing_ok=True)
        print(f"finishing the sweep in {sweep_dir}: finished jobs are kept, the others go on or run")

    @staticmethod
    def _release_signals(context: dict, previous: dict) -> None:
        """Give Ctrl-C and SIGTERM their handlers back; one held until now ends the parents KILLED and the sweep,
        before any job."""
        stopped_by = held(signal.getsignal(sig) for sig in STOP_SIGNALS)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if stopped_by is not None:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(context["uri"]) if context.get("parents") else None
            for parent_run_id in (context.get("parents") or {}).values():
                client.set_terminated(parent_run_id, "KILLED")
            print("the sweep was stopped before any job started; nothing ran", file=sys.stderr)
            raise SystemExit(128 + stopped_by)

    @classmethod
    def _open_parents(cls, config: DictConfig, sweep_id: str, name: str) -> dict:
        """One parent run, ``name``, in every experiment the jobs will write to (each created here, before any
        job)."""
        parents = {e: cls._open_parent(config, sweep_id, e, name) for e in job_experiments(config)}
        uri = next(iter(parents.values())).client.tracking_uri
        return {"uri": uri, "parents": {e: live.run_id for e, live in parents.items()}}

    @staticmethod
    def _open_parent(config: DictConfig, sweep_id: str, experiment: str, name: str):

        t = config.tracking
        tags = {
            "sweep.id": sweep_id,
            "sweep.role": "parent",
            "task": config.task.name,
            "hydra.overrides": " ".join(config.hydra.overrides.task),
        }
        return tracking.start_run(t.uri, experiment, name, {}, tags, t.log_every)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        """Summary, report and parent runs; exits 1 if a job failed or this end-of-sweep work did.

        Hydra turns an exception raised in a callback into a warning, so every failure here is said on one
        line and ends the process with a non-zero status instead.
        """
        self.ended = True  # the exit hook has nothing to do
        latch_signals()  # see the module doc
        mask_files(Path(str(config.hydra.sweep.dir)).glob("*.yaml"))  # whatever the launcher, multirun.yaml
        context = sweep_context(config.hydra.sweep.dir)
        if context.get("uri"):  # the file's has no password; this process's config has the URI whole
            context["uri"] = resolve_uri(config.tracking.uri)
        sweep_dir = Path(context.get("sweep_id") or str(config.hydra.sweep.dir))
        records = read_statuses(sweep_dir)
        stopped = read_stopped(sweep_dir)
        line = summary_line(records, context.get("planned"))
        print(line)
        summary = {"summary": line, "planned": context.get("planned"), "jobs": records}
        if stopped:
            summary.update(stopped_by=stopped["signal"], to_go_on=[continue_command(sweep_dir)])
            print(
                f"the sweep was stopped ({stopped['signal']}); to finish it: {summary['to_go_on'][0]}", file=sys.stderr
            )
        problems = []
        if context.get("parents"):
            problems += end_lost_runs(context, list(context["parents"]))
        try:
            atomic_write(sweep_dir / "summary.json", json.dumps(masked(summary), indent=2))
        except OSError as e:
            problems.append(f"could not write {sweep_dir / 'summary.json'} ({e.strerror or e})")
        for experiment, parent_run_id in (context.get("parents") or {}).items():
            try:
                link = self._close_parent({**context, "parent_run_id": parent_run_id}, sweep_dir, records, stopped)
                print(f"parent run ({experiment}): {link}")
            except Exception as e:
                problem = f"could not close the sweep's parent run {parent_run_id} in '{experiment}' "
                if "must be in the 'active' state" in str(e):  # its experiment was deleted while the sweep ran
                    problem += (
                        f"(the experiment '{experiment}' was deleted during the sweep: restore it with mlflow "
                        "experiments restore, then python -m lstm_exp.sync <job folder> for its jobs and python -m "
                        "lstm_exp.report --fix-stale for the parent)"
                    )
                else:
                    problem += f"({type(e).__name__}: {first_line(e)})"
                problems.append(problem)
        for problem in problems:
            complain(f"the end of the sweep failed: {problem}")
        if config.tracking.enabled:
            with contextlib.suppress(Exception):  # the last writer folds the store's log into mlflow.db
                release(config.tracking.uri)
        if stopped:
            raise SystemExit(128 + signal.Signals[stopped["signal"]])
        not_run = (context.get("planned") or 0) > len(records)
        incomplete = any(r["outcome"] in ("failed", "killed") or r.get("spooled") for r in records)
        if problems or not_run or incomplete:
            raise SystemExit(1)

    @staticmethod
    def _close_parent(context: dict, sweep_dir: Path, records: list[dict], stopped: dict | None) -> str:
        """Tag the parent with the counts, attach the summary and the report, and end it (KILLED if the sweep was
        stopped) — FAILED if any of that fails (the error is raised after the run is ended, so a parent is never
        left RUNNING); the address that opens it in the MLflow UI."""
        from mlflow.tracking import MlflowClient

        from lstm_exp.sweeps.report import load_runs, write_report

        client = MlflowClient(context["uri"])
        parent = MlflowRun(client, context["parent_run_id"], flush_every=1)
        counts = Counter(r["outcome"] for r in records)
        try:
            parent.set_tags(
                {
                    "sweep.jobs": len(records),
                    "sweep.planned": context.get("planned"),
                    "sweep.failed": counts.get("failed", 0),
                    "sweep.diverged": sum(n for k, n in counts.items() if k.startswith("diverged")),
                    "sweep.stopped_by": stopped["signal"] if stopped else None,
                    "mlflow.note.content": summary_line(records, context.get("planned")),
                }
            )
            if (sweep_dir / "summary.json").exists():
                parent.log_file(sweep_dir / "summary.json")
            runs = load_runs(context["uri"], sweep_id=context["sweep_id"])
            if len(runs):
                paths = write_report(runs, sweep_dir / "report", uri=context["uri"])
                for path in paths.values():
                    parent.log_file(path, "report")
                summary = pd.read_csv(paths["csv"])
                parent.log_table(mlflow_table(summary), "report/summary_table.json")  # a table in the UI
                parent.log_metrics(group_metrics(summary), 0)
                line = summary_line(records, context.get("planned"))
                parent.set_tags({"mlflow.note.content": description(line, summary, sweep_dir / "report")})
            overrides = sweep_dir / "multirun.yaml"
            if overrides.exists():
                parent.log_file(overrides)
        except BaseException:
            client.set_terminated(context["parent_run_id"], "FAILED")
            raise
        parent.end("KILLED" if stopped else "FINISHED")
        if (sweep_dir / "report").is_dir():
            print(f"report: {sweep_dir / 'report'}")
        parent.experiment_id = client.get_run(context["parent_run_id"]).info.experiment_id
        return run_link(parent)

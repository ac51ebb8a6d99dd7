"""What a job knows about where it runs: its output folder, its sweep, its number, its parent run.

One typed value from Hydra's job context (``JobContext.from_hydra``), passed beside the validated config
through a job; the status file every job leaves (``job_status.json``) is written from it and read back by
the sweep callback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lstm_exp.common.atomic import atomic_write
from lstm_exp.common.credentials import masked
from lstm_exp.common.errors import Unwritable, first_line, warn

# Hydra's runtime config is read only inside a Hydra job; outside one (tests, the API) it is not imported.

STATUS_FILE = "job_status.json"
SWEEP_FILE = "sweep.json"  # in the sweep folder: the sweep's id, planned jobs, store and parent runs


def sweep_context(sweep_dir) -> dict:
    """What the sweep callback recorded for the sweep in ``sweep_dir`` (its parent runs, ...), or {}.

    A file in the sweep folder, found from each job's own Hydra config (``hydra.sweep.dir``), so it reaches the
    jobs of any launcher that shares the folder — forked, pickled to a pool, sbatch'ed or sent to Ray —
    whatever environment the job's process has.
    """
    path = Path(str(sweep_dir)) / SWEEP_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class JobContext:
    overrides: str = ""  # the job's own command-line overrides
    output_dir: str | None = None  # Hydra's output folder for the job (None outside Hydra)
    multirun: bool = False
    sweep_id: str | None = None
    parent_run_id: str | None = None  # the sweep's MLflow parent run
    job_num: int | None = None
    job_name: str = "run"  # Hydra's job name: its log is <output_dir>/<job_name>.log

    @classmethod
    def from_hydra(cls, experiment: str | None = None) -> JobContext:
        """The running Hydra job's context (an empty one outside Hydra); under a sweep, the parent run is the
        one the sweep opened in ``experiment``, the job's own."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return cls()
        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN:
            return cls(" ".join(hc.overrides.task), hc.runtime.output_dir, job_name=hc.job.name)
        sweep = sweep_context(Path(hc.runtime.cwd) / hc.sweep.dir)  # from the launch folder (hydra.job.chdir)
        parents = sweep.get("parents") or {}
        only = next(iter(parents.values())) if len(parents) == 1 else None
        parent = parents.get(experiment, only)  # a config too broken to name its experiment: the only parent
        sweep_id = sweep.get("sweep_id", hc.sweep.dir)
        return cls(" ".join(hc.overrides.task), hc.runtime.output_dir, True, sweep_id, parent, hc.job.num, hc.job.name)

    def status_record(
        self, outcome: str, metric=None, error=None, run_id=None, seconds=None, spooled=None, line=None
    ) -> dict:
        """What happened to the job, readable without MLflow (``train_seconds``: time in the training loop;
        ``spooled``: its MLflow records wait in this spool for ``python -m lstm_exp.sync``; ``line``: its outcome
        in words, for the sweep's console)."""
        return {
            "job": self.job_num,
            "overrides": self.overrides,
            "outcome": outcome,
            "metric": metric,
            "error": error,
            "mlflow_run_id": run_id,
            "train_seconds": seconds,
            "spooled": spooled,
            "line": line,
        }

    def write_status(
        self, outcome: str, metric=None, error=None, run_id=None, seconds=None, spooled=None, line=None
    ) -> None:
        """Leave ``job_status.json`` in the output folder (atomically; nothing outside Hydra)."""
        if self.output_dir:
            record = masked(self.status_record(outcome, metric, error, run_id, seconds, spooled, line))
            try:
                atomic_write(Path(self.output_dir) / STATUS_FILE, json.dumps(record, indent=2))
            except (OSError, Unwritable) as e:  # a full disk, a deleted folder: said, and the job's own error stands
                warn(f"{STATUS_FILE} could not be written in {self.output_dir} ({first_line(e)})")

    def tags(self) -> dict:
        """The MLflow tags that place a run in its sweep and folder."""
        return {
            "hydra.overrides": self.overrides,
            "sweep.id": self.sweep_id,
            "sweep.job": self.job_num,
            "mlflow.parentRunId": self.parent_run_id,
            "run.dir": self.output_dir,
        }

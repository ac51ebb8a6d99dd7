"""A job of a sweep that is being finished (``resume=<sweep folder>``): what is left for it to do, read from its own
folder — ``keep`` a finished job (its run stays as it is), ``resume`` an interrupted one from its checkpoint into
its own run, ``rerun`` one that failed or never finished (its earlier runs in the sweep are deleted, so the sweep
holds each job once), or ``skip`` a failed one under ``resume_failed=skip``."""

from __future__ import annotations

import json
from pathlib import Path

from lstm_exp.runner.checkpoint import FILENAME
from lstm_exp.runner.context import STATUS_FILE
from lstm_exp.runner.resume import DONE


def status_of(job_dir) -> dict:
    """The job's status record, or {} when it has none (it never started, or died before writing one)."""
    try:
        record = json.loads((Path(job_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def plan(job_dir, failed: str = "run") -> str:
    """keep | resume | rerun | skip (see the module doc); ``failed``: the ``resume_failed`` setting."""
    outcome = status_of(job_dir).get("outcome")
    if outcome in DONE:
        return "keep"
    if outcome == "killed" and (Path(job_dir) / FILENAME).is_file():
        return "resume"
    if outcome in ("failed", "killed") and failed == "skip":
        return "skip"
    return "rerun"


def continues_sweep(resume: str | None, sweep_id: str | None) -> bool:
    """Whether ``resume=`` names this job's own sweep folder (so the job is a sweep's, being finished)."""
    if not resume or not sweep_id:
        return False
    return Path(resume).expanduser().resolve() == Path(sweep_id).expanduser().resolve()

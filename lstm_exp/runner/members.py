"""The jobs of a population (``hydra/launcher=population``), each a job of its own but trained together.

Each member goes through what a job alone goes through (``lstm_exp.runner.job``), split where the training is:
``prepare`` (inside Hydra's ``run_job``, so its folder, ``.hydra/`` files and context are a job's) validates its
config, builds its task and model, locks its folder and opens its MLflow run; ``train_and_record`` then trains the
members as one computation (``lstm_exp.runner.population``) and records each one: its summary, its MLflow run
finished with its outcome, its ``job_status.json``. A member whose config is refused fails alone, as a job does; a
crash of the training fails every member with the cause; Ctrl-C or SIGTERM checkpoints each and ends it KILLED.
"""

from __future__ import annotations

import logging
import traceback
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import DictConfig

from lstm_exp.common.atomic import mask_files
from lstm_exp.common.credentials import mask
from lstm_exp.common.signals import EXIT_INTERRUPTED
from lstm_exp.runner import train
from lstm_exp.runner.console import job_console
from lstm_exp.runner.context import JobContext
from lstm_exp.runner.job import experiment_of, guarded, monitored, open_run, owned, prepared_model, recorded
from lstm_exp.runner.population import Member, PopulationInterrupted, run_population
from lstm_exp.runner.validation import validate
from lstm_exp.tracking.lifecycle import tracked
from lstm_exp.tracking.run import share_system_metrics

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A member ready to train: its config, its job context, task, model and MLflow run (None: not tracked)."""

    typed: object
    ctx: JobContext
    task: object
    model: object
    live: object


def prepare(cfg: DictConfig, held: ExitStack) -> Prepared | None:
    """Hydra's task function for a member: its job up to training (its folder's lock held in ``held``); None when
    its job failed (its status written, as a job's)."""
    ctx = JobContext.from_hydra(experiment_of(cfg))
    if ctx.output_dir:
        mask_files((Path(ctx.output_dir) / ".hydra").glob("*.yaml"))

    def body(cfg, ctx):
        typed = replace(validate(cfg), progress=False)
        task = train.build_task(typed)
        model = prepared_model(typed, task)
        held.enter_context(owned(ctx.output_dir))
        return Prepared(typed, ctx, task, model, open_run(typed, ctx) if typed.tracking.enabled else None)

    return guarded(cfg, ctx, body)


def run_id(p: Prepared) -> str | None:
    return p.live.run_id if p.live is not None else None


def train_and_record(prepared: list[Prepared]) -> None:
    """Train the members together, then record each one as its job would."""
    if not prepared:
        return
    members = [Member(p.typed, p.live or train.NullLogger(), p.task, p.model, p.ctx.output_dir, job_console(p.ctx))
               for p in prepared]  # fmt: skip
    try:
        lives = [p.live for p in prepared if p.live is not None]
        watched = lives[0] if lives and prepared[0].typed.tracking.system_metrics else None
        with ExitStack() as runs:
            for p in prepared:  # an exception ends every member's run FAILED, an interrupt KILLED
                runs.enter_context(tracked(p.live, end_clean=False))
            for live in lives:
                live.set_tags({"population.size": len(prepared)})
                live.flush_every *= len(prepared)  # the population writes as often as one run would
            runs.enter_context(monitored(watched, True))  # one machine, one monitor: shared below
            results = run_population(members)
        if watched is not None and not watched.offline:
            share_system_metrics(watched, lives)
    except PopulationInterrupted as e:
        for m, p in enumerate(prepared):
            where = e.checkpoints.get(m)
            p.ctx.write_status("killed", error=str(e), run_id=run_id(p))
            job_console(p.ctx).say(f"interrupted after step {e.step}; checkpoint: {where}", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except Exception as e:
        for p in prepared:
            p.ctx.write_status("failed", error=f"{type(e).__name__}: {e}", run_id=run_id(p))
        log.error("population failed:\n%s", mask("".join(traceback.format_exception(e))))
        return
    for p, result in zip(prepared, results, strict=True):
        try:
            recorded(p.typed, p.ctx, result, p.live)
        except Exception as e:  # this member's record failed (its store, its disk): the others are recorded
            p.ctx.write_status("failed", error=f"{type(e).__name__}: {e}", run_id=run_id(p))
            log.error("job %s failed:\n%s", p.ctx.job_num, mask("".join(traceback.format_exception(e))))

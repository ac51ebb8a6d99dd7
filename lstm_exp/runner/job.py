"""One Hydra job: validate the composed config, then train (tracked in MLflow), gradient-check or diagnose.

Everything a user can get wrong in a config ends here as one readable line and a non-zero exit, before any
training or logging starts. A run that diverges is a result (MLflow status FINISHED); a crash is recorded as FAILED
with its error, and an interrupt as KILLED (``lstm_exp.tracking.lifecycle``). Under multirun a failing job is
recorded and reported but does not raise, so the other jobs and the sweep summary go on; every job leaves
``job_status.json`` in its output directory.

The return value is what a sweeper minimises: the final (eval) loss of a run that finished, and None — a failed
trial for Optuna, never a NaN objective — for a run that diverged or failed.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil
from omegaconf import DictConfig, OmegaConf

from lstm_exp.common.atomic import atomic_write, mask_files
from lstm_exp.common.credentials import is_masked, mask
from lstm_exp.common.errors import EXIT_NOT_RECORDED, UserError, complain, refuse
from lstm_exp.common.ownership import RunLock
from lstm_exp.common.signals import EXIT_INTERRUPTED
from lstm_exp.core.network import param_shapes
from lstm_exp.models.seam import build_model
from lstm_exp.runner import continuation, train
from lstm_exp.runner.console import job_console
from lstm_exp.runner.context import JobContext
from lstm_exp.runner.continuation import continues_sweep
from lstm_exp.runner.record import finish_run
from lstm_exp.runner.resume import extended_steps, finished_outcome, locate, reopen_run
from lstm_exp.runner.schema import experiment_name, plain
from lstm_exp.runner.summary import short_line, summary
from lstm_exp.runner.validation import validate
from lstm_exp.tracking.dataset import dataset_input, description
from lstm_exp.tracking.lifecycle import tracked
from lstm_exp.tracking.queries import delete_runs
from lstm_exp.tracking.run import fail_run, run_link, start_offline_run, start_run
from lstm_exp.tracking.run_names import run_name
from lstm_exp.tracking.store import StoreUnreachable, check_driver, check_uri, release

# Lazy: the tracking agent's client (only a single tracked run talks to it) and the checks of mode=gradcheck|diagnose
# (the models' probes and signatures, which a training run never needs).

EXIT_CHECK_FAILED = 1  # a gradient check or diagnosis found a bug, or a run's tracking store was lost
log = logging.getLogger(__name__)


def open_run(typed, ctx: JobContext):
    """Start the job's MLflow run: params from the validated config, tags from the job's context and git.

    A single run started from the command line is written by the tracking agent (``lstm_exp.tracking.agent``), which
    has been importing MLflow since the program began: training starts without waiting for it. The URI is
    checked here first, so an unreachable server or an unusable store still stops the run before it trains.
    """
    from lstm_exp.tracking.agent import claim
    from lstm_exp.tracking.remote_run import RemoteRun

    t = typed.tracking
    tags = {"task": typed.task.name, **ctx.tags(), "outcome": "running"}
    name = t.run_name or run_name(typed.task.name, typed.optim.name, ctx.overrides.split())
    args = (experiment_name(typed), name, plain(typed), tags, t.log_every)
    if not ctx.multirun:
        check_uri(t.uri)
        check_driver(t.uri)
        agent = claim()
        if agent is not None:
            return RemoteRun.start(agent, t.uri, *args, ctx.output_dir, description(typed.task))
    try:
        live = start_run(t.uri, *args, spool_dir=ctx.output_dir)
    except StoreUnreachable as e:
        # a sweep job whose server went away after the sweep itself had reached it: an outage, not a typo
        if not (ctx.multirun and ctx.parent_run_id and ctx.output_dir):
            raise
        live = start_offline_run(t.uri, *args, spool_dir=ctx.output_dir)
        live.go_offline(str(e))
        return live
    live.log_dataset(dataset_input(typed.task))
    return live


def run_job(cfg: DictConfig) -> float | None:
    """Validate, dispatch on ``mode``, train inside an MLflow run, and return the metric to minimise."""
    ctx = JobContext.from_hydra(experiment_of(cfg))
    if ctx.output_dir:
        mask_files((Path(ctx.output_dir) / ".hydra").glob("*.yaml"))
    try:
        return guarded(cfg, ctx)
    finally:
        with contextlib.suppress(Exception):  # the store's log folded into mlflow.db by its last writer
            release(cfg.tracking.uri)


def guarded(cfg: DictConfig, ctx: JobContext, body=None):
    """The job (``body(cfg, ctx)``; by default ``_run``), its errors made what a user reads: one line and exit 2 for
    bad input, a status either way."""
    try:
        return (body or _run)(cfg, ctx)
    except train.Interrupted as e:  # its status is written where its run is known (trained)
        where = f"checkpoint: {e.checkpoint_path}" if e.checkpoint_path else "no checkpoint (no run directory)"
        say = job_console(ctx).say  # a sweep's job: in its log (the sweep says how to finish the sweep)
        say(f"interrupted after step {e.step}; {where}", err=True)
        if e.checkpoint_path:
            say(f"continue with: python -m lstm_exp resume={Path(e.checkpoint_path).parent}", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except UserError as e:
        if not ctx.multirun:
            ctx.write_status("failed", error=str(e))
            refuse(str(e))
        ctx.write_status("failed", error=str(e), run_id=_record_failed_job(cfg, ctx, e))
        log.error("job %s failed: %s", ctx.job_num, mask(str(e)))
    except Exception as e:
        ctx.write_status("failed", error=f"{type(e).__name__}: {e}")
        if not ctx.multirun:
            raise
        log.error("job %s failed:\n%s", ctx.job_num, mask("".join(traceback.format_exception(e))))
    return None


def experiment_of(cfg: DictConfig) -> str | None:
    """The MLflow experiment a composed (not yet validated) config writes to, if it can say."""
    try:
        return experiment_name(cfg)
    except Exception:  # a config too broken to say; validation will name the problem
        return None


def _record_failed_job(cfg: DictConfig, ctx: JobContext, error: Exception) -> str | None:
    """Under multirun, a job whose config was refused still gets a FAILED run saying why; its id.

    The config did not validate, so the run is opened from the raw composed config.
    """
    if not cfg.get("tracking", {}).get("enabled", False):
        return None
    t = cfg.tracking
    try:
        config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        tags = {"task": cfg.task.name, **ctx.tags(), "outcome": "running"}
        name = t.run_name or run_name(cfg.task.name, cfg.optim.name, ctx.overrides.split())
        live = start_run(t.uri, experiment_name(cfg), name, config, tags, t.log_every, spool_dir=ctx.output_dir)
        fail_run(live, error)
        return live.run_id
    except Exception as e:  # e.g. the tracking settings themselves are what was wrong
        log.error("could not record the failed job in MLflow: %s", mask(str(e)))
        return None


MEMORY_COPIES = 6  # parameters, gradients, up to two optimizer moments, the update and a clipped copy


def memory_need(typed, task) -> tuple[int, int]:
    """(bytes, weights) one run of the config needs: its weights with gradients and optimizer state, and the BPTT
    cache."""
    H, K = typed.model.hidden, task.output_dim
    B, T = task.batch(0).x.shape[:2]
    itemsize = np.dtype(typed.model.dtype.name).itemsize
    params = sum(int(np.prod(shape)) for shape in param_shapes(task.input_dim, H, K).values())
    cache = T * B * (4 * H + 3 * H + K) * 2  # the forward's cache and the backward's gradients through time
    return (MEMORY_COPIES * params + cache) * itemsize, params


def check_memory(typed, task) -> None:
    """Refuse, in one line, a model that cannot fit in this machine's free memory (instead of a MemoryError)."""
    need, params = memory_need(typed, task)
    H, itemsize = typed.model.hidden, np.dtype(typed.model.dtype.name).itemsize
    available = psutil.virtual_memory().available
    if need > available:
        raise UserError(
            f"model.hidden={H}: training needs about {need / 2**30:.1f} GiB ({params:,} weights x {itemsize} bytes "
            f"with gradients and optimizer state, plus the BPTT cache), and this machine has "
            f"{available / 2**30:.1f} GiB free; lower model.hidden or batch_size"
        )


def prepared_model(typed, task):
    """The config's model, with a user implementation already run once at its initial weights.

    Every contract break of ``model.impl`` (its file, its import, its methods, what it returns, a layout
    that does not fit) is a UserError here, before any MLflow run exists.
    """
    check_memory(typed, task)
    model = build_model(typed, task)
    if hasattr(model, "probe"):
        model.probe(model.init_params(np.random.default_rng(typed.seed)), task.batch(0))
    return model


def _run(cfg: DictConfig, ctx: JobContext) -> float | None:
    typed = validate(cfg)  # the only validation; from here on, the typed config
    if ctx.multirun:  # the sweep prints one progress line for all its jobs (sweeps/launch.py)
        typed = replace(typed, progress=False)
    if typed.mode.name == "gradcheck":
        from lstm_exp.runner.checks import check_config, run_own_gradcheck

        check = run_own_gradcheck if typed.model.impl is not None else check_config
        if not check(typed):
            raise SystemExit(EXIT_CHECK_FAILED)
        return 0.0
    if typed.mode.name == "diagnose":
        from lstm_exp.runner.checks import run_diagnosis

        if run_diagnosis(typed, ctx, plain(typed)) != "correct":
            raise SystemExit(EXIT_CHECK_FAILED)
        return 0.0
    if ctx.multirun and continues_sweep(typed.resume, ctx.sweep_id):
        return _continue(typed, ctx)
    if typed.resume is not None:
        return _resume(typed, ctx)
    return _train(typed, ctx)


def _train(typed, ctx: JobContext) -> float | None:
    """Train a fresh run in the job's folder, tracked if tracking is on."""
    task = train.build_task(typed)
    model = prepared_model(typed, task)
    with owned(ctx.output_dir):
        live = open_run(typed, ctx) if typed.tracking.enabled else None
        return recorded(typed, ctx, trained(typed, ctx, task, model, live), live)


def _continue(typed, ctx: JobContext) -> float | None:
    """This job of a sweep being finished: what its folder says is left (``lstm_exp.runner.continuation``)."""
    todo = continuation.plan(ctx.output_dir, typed.resume_failed.name)
    status = continuation.status_of(ctx.output_dir)
    if todo in ("keep", "skip"):  # Hydra has rewritten the folder's .hydra/; its status and its run stay as they were
        line = status.get("line") or status.get("outcome")
        keep = {k: status.get(k) for k in ("metric", "error", "seconds", "spooled")}
        ctx.write_status(status["outcome"], run_id=status.get("mlflow_run_id"), line=f"{line} (kept)", **keep)
        return status.get("metric")
    if todo == "resume":
        return _resume(replace(typed, resume=ctx.output_dir), ctx)
    if typed.tracking.enabled:  # its earlier attempts leave the sweep: it is recorded once, by this run
        delete_runs(typed.tracking.uri, experiment_name(typed), ctx.sweep_id, ctx.job_num)
    return _train(replace(typed, resume=None), ctx)


def owned(run_dir):
    """The run folder's lock while a job writes it (nothing to lock outside Hydra)."""
    return RunLock(run_dir) if run_dir else nullcontext()


def _resume(typed, ctx: JobContext) -> float | None:
    """Continue a run from its checkpoint, with its own (validated) config, into the same MLflow run.

    The run folder is locked first: a second resume of the same run, or a resume of a run still going, is
    refused before it writes anything.
    """

    run_dir, ckpt, original = locate(typed.resume, typed.tracking.uri)
    with owned(run_dir):
        done = finished_outcome(run_dir, ckpt, original)
        asked = [] if ctx.multirun else ctx.overrides.split()  # a sweep being finished gives its own overrides
        steps = extended_steps(asked, original, ckpt, done)
        if done is not None and steps is None:
            job_console(ctx).say(f"{run_dir} has already ended ({done}); nothing to resume")
            return None
        resumed = replace(validate(original), progress=typed.progress, resume=None)  # the progress bar is this job's
        if steps is not None:
            resumed = extend(resumed, steps, run_dir)
        if is_masked(resumed.tracking.uri):  # its password was never written down: this command gives it
            if typed.tracking.uri is None or is_masked(typed.tracking.uri):
                raise UserError(
                    f"the run's tracking.uri={resumed.tracking.uri} was saved without its password: resume with "
                    "tracking.uri=<the URI with its password>"
                )
            resumed = replace(resumed, tracking=replace(resumed.tracking, uri=typed.tracking.uri))
        task = train.build_task(resumed)
        model = prepared_model(resumed, task)
        tracked_run = resumed.tracking.enabled and ckpt.run_id
        live = reopen_run(resumed.tracking, ckpt, run_dir, typed.tracking.uri) if tracked_run else None
        into = f" into MLflow run {ckpt.run_id}" if live else ""
        job_console(ctx).say(f"resuming {run_dir} after step {ckpt.step}{into}")
        ctx = replace(ctx, output_dir=str(run_dir))
        return recorded(resumed, ctx, trained(resumed, ctx, task, model, live, ckpt), live)


def extend(resumed, steps: int, run_dir):
    """The run's config with ``steps`` more (its recorded config too, so a later resume goes on from there)."""
    config_file = Path(run_dir) / ".hydra" / "config.yaml"
    saved = OmegaConf.load(config_file)
    saved.steps = steps
    atomic_write(config_file, OmegaConf.to_yaml(saved))
    return replace(resumed, steps=steps)


def monitored(live, wanted: bool):
    """MLflow's system-metrics monitor over training, if wanted: in this process, or in the tracking agent."""
    return live.system_metrics() if wanted and live is not None else nullcontext()


def trained(typed, ctx: JobContext, task, model, live, ckpt=None) -> train.RunResult:
    """Train (from ``ckpt`` if given) under the run's system-metrics monitor; a crash or an interrupt ends the
    run FAILED or KILLED (``tracked``) and is raised."""
    try:
        # the run stays open on a clean exit: recorded() finishes it with its outcome
        with tracked(live, end_clean=False), monitored(live, typed.tracking.system_metrics):
            return train.run(typed, live, task, ctx.output_dir, ckpt, model, job_console(ctx))
    except train.Interrupted as e:
        ctx.write_status("killed", error=str(e), run_id=live.run_id if live else None)
        raise


def recorded(typed, ctx: JobContext, result: train.RunResult, live) -> float | None:
    """Print the run's summary, finish its MLflow run and write its status; the metric a sweeper minimises."""
    run_dir = ctx.output_dir
    text, say = summary(result), job_console(ctx).say
    say(text)
    line = short_line(result)
    if live is not None:
        hydra_dir = Path(run_dir) / ".hydra" if run_dir else None
        title = f"{typed.task.name}: {ctx.overrides}"
        with tracked(live):
            finish_run(live, result, OmegaConf.to_yaml(plain(typed)), hydra_dir, title, text, curve=not ctx.multirun)
        if live.store_lost():
            lost = f"the tracking store {live.store} was deleted or replaced while this run wrote to it"
            ctx.write_status("failed", error=lost, run_id=live.run_id)
            complain(
                f"{lost}: its params, metrics, tags and run status are gone (artifacts, if any, are in the store's "
                f"artifact folder); the run folder {run_dir} still holds config.yaml, job_status.json and the "
                f"last checkpoint"
            )
            if not ctx.multirun:  # under a sweep this job counts as failed and the others go on
                raise SystemExit(EXIT_CHECK_FAILED)
            return None
        if live.offline:  # the store went away, or the tracking agent did: the records wait in the spool
            created = "" if live.run_id is None else f" into MLflow run {live.run_id}"
            say(f"mlflow run: not fully recorded; upload the rest{created} with: python -m lstm_exp.sync {run_dir}")
            metric = result.metric if result.outcome in ("converged", "finished") else None
            spool = str(Path(run_dir) / "mlflow_spool.jsonl") if run_dir else None
            ctx.write_status(
                result.outcome, metric, run_id=live.run_id, seconds=result.wall_time, spooled=spool, line=line
            )
            if not ctx.multirun:
                raise SystemExit(EXIT_NOT_RECORDED)
            return metric
        else:
            say(f"mlflow run: {live.run_id} (experiment '{experiment_name(typed)}')")
            if not live.tracking_uri.startswith(("http://", "https://")):
                say(f"view it:    mlflow ui --backend-store-uri {mask(live.tracking_uri)}   # then open")
            say(f"            {run_link(live)}")
    metric = result.metric if result.outcome in ("converged", "finished") else None
    run_id = live.run_id if live else None
    ctx.write_status(result.outcome, metric, run_id=run_id, seconds=result.wall_time, line=line)
    return metric

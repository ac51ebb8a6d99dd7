"""The training loop: ``run(cfg, logger) -> RunResult``. It knows nothing about Hydra or MLflow.

One step: batch -> LSTM forward -> head and loss -> BPTT backward -> finite check -> clip -> update.
All randomness comes from one ``np.random.Generator`` seeded by ``cfg.seed`` (parameters, samples) and
from the task's per-step generators, so the same config and seed give the same numbers, bit for bit.

Divergence is a result, not a crash: a non-finite loss or gradient is handled by ``cfg.nan.policy``
(``stop`` ends the run, ``skip`` drops the update and counts it, ``continue`` applies it anyway), and
a loss that climbs to ``cfg.nan.loss_ratio`` times its first value ends the run as ``diverged_loss``.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from lstm_exp.common.credentials import mask
from lstm_exp.common.errors import DiskFull, Unwritable
from lstm_exp.common.ownership import process_age
from lstm_exp.core import optim
from lstm_exp.core.forensics import History, divergence_report
from lstm_exp.core.health import first_nonfinite
from lstm_exp.core.lstm import init_state
from lstm_exp.models.seam import Model, build_model
from lstm_exp.runner.checkpoint import Checkpoint, flatten_tree, unflatten_tree
from lstm_exp.runner.checkpoint import save as save_checkpoint
from tasks import make_task


class Logger(Protocol):
    """What the loop reports to; tracking backends implement it."""

    def log_metrics(self, metrics: dict, step: int) -> None: ...

    def log_text(self, text: str, name: str) -> None: ...


class NullLogger:
    def log_metrics(self, metrics: dict, step: int) -> None:
        pass

    def log_text(self, text: str, name: str) -> None:
        pass


@dataclass
class RunResult:
    outcome: str  # converged | finished | diverged_nan | diverged_loss
    steps: int  # steps run (updates applied or skipped)
    first_loss: float
    final_loss: float  # mean train loss over the last logging window
    best_loss: float
    final_eval: float | None
    wall_time: float  # seconds in the training loop
    startup: float = 0.0  # seconds from the process's start (a sweep job's: its fork) to the first step
    divergence: dict | None = None  # lstm_exp.core.forensics.divergence_report plus "where"
    skipped: int = 0
    losses: np.ndarray = field(default_factory=lambda: np.empty(0))  # per-step train loss
    grad_norms: np.ndarray = field(default_factory=lambda: np.empty(0))  # per-step pre-clip norm
    samples: list = field(default_factory=list)
    params: dict = field(default_factory=dict)
    baseline: float | None = None  # a task's reference loss, e.g. the char corpus's unigram entropy

    @property
    def metric(self) -> float:
        """What a sweeper minimises: the final eval loss, or the final train loss."""
        return self.final_eval if self.final_eval is not None else self.final_loss


def evaluate(params: dict, task, model: Model, dtype=np.float64) -> float | None:
    """The model's loss on the task's held-out batch (no update), or None when the task has none."""
    batch = task.eval_batch()
    if batch is None:
        return None
    h0, c0 = init_state(len(batch.x), model.hidden, dtype)
    return model.loss(params, batch.x, batch.y, h0, c0)


def build_task(cfg):
    """The config's task with its data loaded (bad corpus files and sizes raise UserError here)."""
    return make_task(cfg.task, cfg.batch_size, cfg.seed, np.dtype(cfg.model.dtype.name))


def run(
    cfg,
    logger: Logger | None = None,
    task=None,
    run_dir=None,
    resume: Checkpoint | None = None,
    model: Model | None = None,
) -> RunResult:
    """Train on the composed config ``cfg`` (a validated ``lstm_exp.runner.schema.Config``).

    - task: the task already built (``build_task``), so that input errors surface before tracking starts
    - model: the model already built (``lstm_exp.models.seam.build_model``); by default the config's
    - run_dir: where checkpoints go (every ``cfg.checkpoint.every`` steps, and on Ctrl-C / SIGTERM)
    - resume: a checkpoint to continue from, bit for bit
    - checkpoints record the MLflow run they belong to: the logger's ``run_id``, once it is known
    """
    # overflow and NaN are detected and reported as divergence events, not as floating-point warnings
    with threadpool_limits(limits=cfg.blas_threads, user_api="blas"), np.errstate(all="ignore"):
        task = task if task is not None else build_task(cfg)
        model = model if model is not None else build_model(cfg, task)
        return _train(cfg, logger or NullLogger(), task, model, run_dir, resume)


class StopRequest:
    """While active, SIGINT and SIGTERM ask the loop to stop after the current step (a second one stops now).

    A signal already held for it (``lstm_exp.common.signals``: a sweep's job that got one while starting up) counts as
    the first: the loop stops after its first step.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        from lstm_exp.common.signals import held

        try:
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        except ValueError:  # not the main thread: signals cannot be caught here
            self._previous = {}
        self.requested = held(self._previous.values()) is not None
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during training, after the latest state was checkpointed (if checkpointing)."""

    def __init__(self, step: int, checkpoint_path):
        super().__init__(f"interrupted after step {step}")
        self.step, self.checkpoint_path = step, checkpoint_path


def _window_start(step: int, log_every: int) -> int:
    """First step averaged into the metrics logged at ``step``: the step after the previous logged one."""
    return 0 if step == 0 else ((step - 1) // log_every) * log_every + 1


def _train(cfg, logger: Logger, task, model: Model, run_dir=None, resume: Checkpoint | None = None) -> RunResult:
    rng = np.random.default_rng(cfg.seed)
    dtype = np.dtype(cfg.model.dtype.name)
    H = model.hidden
    params = model.init_params(rng)
    oc = cfg.optim
    clip, clip_mode = oc.clip, oc.clip_mode.name
    opt = optim.build(oc.name, oc.lr, clip, clip_mode, **oc.hyper())  # clipping is the chain's first transform
    opt_state = opt.init(params)
    history = History(cfg.nan.history)
    every = cfg.checkpoint.every if run_dir is not None else 0
    sample_every = getattr(cfg.task, "sample_every", 0)  # only the char task samples

    losses = np.full(cfg.steps, np.nan)
    grad_norms = np.full(cfg.steps, np.nan)
    outcome, divergence, skipped, clipped_steps = "finished", None, 0, 0
    samples: list[str] = []
    state = None
    first = 0
    if resume is not None:  # continue exactly where the checkpoint left off
        params, state = resume.params, resume.state
        opt_state = unflatten_tree(opt_state, resume.opt_leaves)
        rng.bit_generator.state = resume.rng_state
        first = resume.step + 1
        losses[:first], grad_norms[:first] = resume.losses[:first], resume.grad_norms[:first]
        skipped, clipped_steps = resume.counters["skipped"], resume.counters["clipped_steps"]

    def snapshot(step: int):
        """Checkpoint the state after ``step``."""
        counters = {"skipped": skipped, "clipped_steps": int(clipped_steps)}
        ckpt = Checkpoint(
            step,
            params,
            flatten_tree(opt_state),
            rng.bit_generator.state,
            state,
            losses[: step + 1],
            grad_norms[: step + 1],
            counters,
            getattr(logger, "run_id", None),  # the MLflow run, once it exists
            mask(getattr(logger, "tracking_uri", None) or "") or None,  # and its store
        )
        try:
            return save_checkpoint(run_dir, ckpt)
        except Unwritable as e:
            then = (
                f"the last checkpoint and what MLflow holds are kept (free space, then python -m lstm_exp "
                f"resume={run_dir})"
                if isinstance(e, DiskFull)
                else "its checkpoints went with it"
            )
            raise type(e)(f"{e}: training stopped after step {step}; {then}") from None

    def explain(kind: str, reason: str, fallback: str) -> dict:
        """Replay this step (params and state are still its inputs) to name the first non-finite tensor."""
        trace = model.trace(params, batch.x, batch.y, *state)
        report = divergence_report(step, kind, trace, history, reason)
        return {**report, "where": trace["tensor"] if trace else fallback}

    t0 = t_window = time.perf_counter()
    startup = process_age()  # launch (or a sweep job's fork) -> first step
    bar = tqdm(total=cfg.steps, initial=first, disable=not cfg.progress, dynamic_ncols=True, mininterval=0.5)
    step = first - 1
    with StopRequest() as stop:
        for step in range(first, cfg.steps):
            batch = task.batch(step)
            if batch.reset or state is None:
                state = init_state(len(batch.x), H, dtype)
            r = model.step(params, batch.x, batch.y, *state)
            gnorm = optim.global_norm(r.grads)
            losses[step], grad_norms[step] = r.loss, gnorm
            health = model.health(r)
            history.record(step, r.loss, gnorm, health.get("max_abs_c", np.nan))

            bad = first_nonfinite(r.loss, r.grads)
            if bad is not None:
                divergence = divergence or explain("diverged_nan", f"non-finite {bad}", bad)
                outcome = "diverged_nan"
                if cfg.nan.policy.name == "stop":
                    break
                if cfg.nan.policy.name == "skip":
                    skipped += 1
                    state = None  # a non-finite state must not leak into the next chunk
                    bar.update()
                    continue
            elif cfg.nan.loss_ratio > 0 and r.loss >= cfg.nan.loss_ratio * losses[0] and step > 0:
                if divergence is None:
                    reason = f"loss {r.loss:.4g} reached {cfg.nan.loss_ratio:g}x its first value {losses[0]:.4g}"
                    divergence = explain("diverged_loss", reason, "loss")
                    outcome = "diverged_loss"
                if cfg.nan.policy.name == "stop":
                    break

            clipped_steps += optim.clips(r.grads, gnorm, clip, clip_mode)
            updates, opt_state = opt.update(r.grads, opt_state, params)
            params = optim.apply_updates(params, updates)
            state = r.state

            if step % cfg.log_every == 0 or step == cfg.steps - 1:
                now = time.perf_counter()
                start = _window_start(step, cfg.log_every)
                metrics = {
                    "train_loss": float(np.mean(losses[start : step + 1])),
                    "grad_norm": gnorm,
                    "grad_norm_clipped": optim.clipped_norm(r.grads, gnorm, clip, clip_mode),
                    "clip_fraction": clipped_steps / (step + 1),
                    **health,
                    "param_norm": optim.global_norm(params),
                    "update_ratio": optim.global_norm(updates) / max(optim.global_norm(params), 1e-30),
                    "lr": float(oc.lr),
                    "steps_per_sec": (step + 1 - start) / max(now - t_window, 1e-9),
                    "skipped_steps": float(skipped),
                }
                if step % cfg.eval_every == 0 or step == cfg.steps - 1:
                    eval_loss = evaluate(params, task, model, dtype)
                    if eval_loss is not None:
                        metrics["eval_loss"] = eval_loss
                logger.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)}, step)
                bar.set_postfix(loss=f"{metrics['train_loss']:.4g}", gnorm=f"{gnorm:.3g}", refresh=False)
                t_window = now
            if sample_every and step > 0 and step % sample_every == 0:
                samples += _sample(task, model.fused(params), rng, cfg, step, bar, logger)
            if every and (step + 1) % every == 0:
                snapshot(step)
            bar.update()
            if stop.requested:  # Ctrl-C / SIGTERM: the step is complete, so its state is consistent
                bar.close()
                raise Interrupted(step, snapshot(step) if run_dir is not None else None)
    bar.close()

    ran = step + 1
    if hasattr(task, "sample") and outcome == "finished":
        samples += _sample(task, model.fused(params), rng, cfg, ran, None, logger)
    finite = losses[:ran][np.isfinite(losses[:ran])]
    tail = finite[-cfg.log_every :] if len(finite) else np.array([np.nan])
    final_eval = evaluate(params, task, model, dtype) if outcome == "finished" else None
    if outcome == "finished" and np.mean(tail) <= cfg.converge_ratio * losses[0]:
        outcome = "converged"
    return RunResult(
        outcome=outcome,
        steps=ran,
        first_loss=float(losses[0]),
        final_loss=float(np.mean(tail)),
        best_loss=float(finite.min()) if len(finite) else float("nan"),
        final_eval=final_eval,
        wall_time=time.perf_counter() - t0,
        startup=startup,
        divergence=divergence,
        skipped=skipped,
        losses=losses[:ran],
        grad_norms=grad_norms[:ran],
        samples=samples,
        params=params,
        baseline=getattr(task, "unigram_entropy", None),
    )


def _sample(task, fused, rng, cfg, step, bar, logger) -> list[str]:
    """Text generated from the current weights in the core's layout (by the core's forward), printed and handed to
    the logger; none when the model has no fused view (a user model without a layout)."""
    if fused is None:
        return []
    text = task.sample(fused, rng, cfg.task.sample_length, cfg.task.temperature)
    shown = "".join(ch if ch.isprintable() or ch in "\n\t" else ch.encode("unicode_escape").decode() for ch in text)
    (bar.write if bar is not None else print)(f"--- sample at step {step} ---\n{shown}\n---")  # no raw control chars
    logger.log_text(text, f"samples/step_{step:06d}.txt")
    return [text]

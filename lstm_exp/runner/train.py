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
from functools import partial
from typing import Protocol

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from lstm_exp.common.credentials import mask
from lstm_exp.common.errors import DiskFull, Unwritable, UserError
from lstm_exp.common.ownership import process_age
from lstm_exp.common.signals import held
from lstm_exp.core import optim
from lstm_exp.core.forensics import History, divergence_report
from lstm_exp.core.health import first_nonfinite
from lstm_exp.core.lstm import init_state
from lstm_exp.core.sampling import sample_ids
from lstm_exp.models.seam import Model, build_model
from lstm_exp.runner.checkpoint import Checkpoint, flatten_tree, unflatten_tree
from lstm_exp.runner.checkpoint import save as save_checkpoint
from lstm_exp.runner.console import Console
from tasks import TaskError, make_task


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
    final_loss: float  # the last train_loss point: the last logging window's mean (a diverged run: its last step's)
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
    per_symbol: float | None = None  # the char task: the factor that turns its loss into nats per character
    clipped_steps: int = 0  # steps at which the clip acted
    clip: tuple | None = None  # (clip_mode, clip) when a clip was set

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
    try:
        return make_task(cfg.task, cfg.batch_size, cfg.seed, np.dtype(cfg.model.dtype.name))
    except TaskError as e:
        raise UserError(str(e)) from None


def run(
    cfg,
    logger: Logger | None = None,
    task=None,
    run_dir=None,
    resume: Checkpoint | None = None,
    model: Model | None = None,
    console: Console | None = None,
) -> RunResult:
    """Train on the composed config ``cfg`` (a validated ``lstm_exp.runner.schema.Config``).

    - task: the task already built (``build_task``), so that input errors surface before tracking starts
    - model: the model already built (``lstm_exp.models.seam.build_model``); by default the config's
    - run_dir: where checkpoints go (every ``cfg.checkpoint.every`` steps, and on Ctrl-C / SIGTERM)
    - resume: a checkpoint to continue from, bit for bit
    - checkpoints record the MLflow run they belong to: the logger's ``run_id``, once it is known
    - console: where the run's samples are said (by default, printed)
    """
    # overflow and NaN are detected and reported as divergence events, not as floating-point warnings
    with threadpool_limits(limits=cfg.blas_threads, user_api="blas"), np.errstate(all="ignore"):
        task = task if task is not None else build_task(cfg)
        model = model if model is not None else build_model(cfg, task)
        return _train(cfg, logger or NullLogger(), task, model, run_dir, resume, console or Console())


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


@dataclass
class State:
    """Everything a run changes as it trains, in one place; a checkpoint is a copy of it."""

    params: dict
    opt_state: object
    rng: np.random.Generator
    losses: np.ndarray  # per step (NaN where not run yet)
    grad_norms: np.ndarray
    history: History
    carry: tuple | None = None  # (h, c) into the next chunk; None: the next batch starts from zeros
    first: int = 0  # the first step this process runs
    skipped: int = 0
    clipped_steps: int = 0  # steps at which the clip acted
    last_logged: int = -1  # the step of the last train_loss point written by this process
    last_train_loss: float = float("nan")  # and its value
    outcome: str = "finished"
    divergence: dict | None = None
    samples: list = field(default_factory=list)


class Loop:
    """One run's fixed parts (config, task, model, optimizer, logger, folder) and the named steps of its loop:
    ``batch`` -> ``step`` -> ``guard`` -> ``update`` (clip and optimizer) -> ``log`` -> ``sample`` ->
    ``checkpoint``."""

    def __init__(self, cfg, logger: Logger, task, model: Model, run_dir=None, console: Console | None = None):
        self.cfg, self.logger, self.task, self.model, self.run_dir = cfg, logger, task, model, run_dir
        self.console = console or Console()
        self.dtype = np.dtype(cfg.model.dtype.name)
        oc = cfg.optim
        self.optimizer = optim.build(oc.name, oc.lr, oc.clip, oc.clip_mode.name, **oc.hyper())  # clip first
        self.checkpoint_every = cfg.checkpoint.every if run_dir is not None else 0
        self.sample_every = getattr(cfg.task, "sample_every", 0)  # only the char task samples
        self.per_symbol = per_symbol(cfg, task)
        self.t_window = time.perf_counter()

    def start(self, resume: Checkpoint | None) -> State:
        """The state at the first step: fresh weights from the seed, or the checkpoint's, bit for bit."""
        cfg = self.cfg
        rng = np.random.default_rng(cfg.seed)
        params = self.model.init_params(rng)
        s = State(
            params,
            self.optimizer.init(params),
            rng,
            np.full(cfg.steps, np.nan),
            np.full(cfg.steps, np.nan),
            History(cfg.nan.history),
        )
        if resume is not None:  # continue exactly where the checkpoint left off
            s.params, s.carry = resume.params, resume.state
            s.opt_state = unflatten_tree(s.opt_state, resume.opt_leaves)
            rng.bit_generator.state = resume.rng_state
            s.first = resume.step + 1
            s.losses[: s.first], s.grad_norms[: s.first] = resume.losses[: s.first], resume.grad_norms[: s.first]
            s.skipped, s.clipped_steps = resume.counters["skipped"], resume.counters["clipped_steps"]
        return s

    def batch(self, s: State, step: int):
        """The step's batch; the carried state starts from zeros where the task says so (a new epoch)."""
        batch = self.task.batch(step)
        if batch.reset or s.carry is None:
            s.carry = init_state(len(batch.x), self.model.hidden, self.dtype)
        return batch

    def step(self, s: State, batch, step: int):
        """Forward, loss and backward; the loss, the gradient norm and the health measures recorded."""
        r = self.model.step(s.params, batch.x, batch.y, *s.carry)
        gnorm = optim.global_norm(r.grads)
        s.losses[step], s.grad_norms[step] = r.loss, gnorm
        health = self.model.health(r)
        s.history.record(step, r.loss, gnorm, health.get("max_abs_c", np.nan))
        return r, gnorm, health

    def guard(self, s: State, r, batch, step: int) -> str:
        """``go``, ``skip`` (the update is dropped) or ``stop``, by ``nan.policy``; a divergence is explained once."""
        nan = self.cfg.nan
        bad = first_nonfinite(r.loss, r.grads)
        if bad is not None:
            if s.divergence is None:
                s.divergence = self._explain(s, batch, step, "diverged_nan", f"non-finite {bad}", bad)
                self.log_blowup(s, step)
            s.outcome = "diverged_nan"
            if nan.policy.name == "skip":
                s.skipped += 1
                s.carry = None  # a non-finite state must not leak into the next chunk
            return {"stop": "stop", "skip": "skip"}.get(nan.policy.name, "go")
        if nan.loss_ratio > 0 and r.loss >= nan.loss_ratio * s.losses[0] and step > 0:
            if s.divergence is None:
                reason = f"loss {r.loss:.4g} reached {nan.loss_ratio:g}x its first value {s.losses[0]:.4g}"
                s.divergence = self._explain(s, batch, step, "diverged_loss", reason, "loss")
                s.outcome = "diverged_loss"
                self.log_blowup(s, step)
            if nan.policy.name == "stop":
                return "stop"
        return "go"

    def _explain(self, s: State, batch, step: int, kind: str, reason: str, fallback: str) -> dict:
        """Replay this step (the params and the carry are still its inputs) to name the first non-finite tensor."""
        trace = self.model.trace(s.params, batch.x, batch.y, *s.carry)
        report = divergence_report(step, kind, trace, s.history, reason)
        return {**report, "where": trace["tensor"] if trace else fallback}

    def update(self, s: State, r) -> tuple[dict, optim.ClipStats]:
        """Clip and take the optimizer's step; the updates and what the clip did (the gradient transform's record,
        or the BPTT carries' clamp)."""
        updates, s.opt_state = self.optimizer.update(r.grads, s.opt_state, s.params)
        s.params = optim.apply_updates(s.params, updates)
        s.carry = r.state
        clip = optim.clip_stats(s.opt_state)
        if clip is None:  # no gradient transform: the state clip (if any) acted inside the backward
            clamped = r.clamped or 0.0
            clip = optim.ClipStats(clamped > 0, clamped)
        s.clipped_steps += bool(clip.acted)
        return updates, clip

    def log(self, s: State, step: int, gnorm: float, health: dict, updates: dict, clip: optim.ClipStats) -> None:
        """The step's metrics, every ``log_every`` steps and at the last (the loss averaged over the window)."""
        cfg = self.cfg
        if step % cfg.log_every and step != cfg.steps - 1:
            return
        now = time.perf_counter()
        logged = s.last_logged >= step  # a blow-up's points already hold this step's loss
        start = min(max(_window_start(step, cfg.log_every), s.last_logged + 1), step)  # no window overlaps another
        param_norm = optim.global_norm(s.params)
        train_loss = s.last_train_loss if logged else float(np.mean(s.losses[start : step + 1]))
        metrics = {
            **({} if logged else {"train_loss": train_loss, **self.per_char("train", train_loss)}),
            "grad_norm": gnorm,
            "grad_norm_clipped": gnorm if np.isnan(clip.norm_after) else clip.norm_after,
            "clip_fraction": s.clipped_steps / (step + 1),
            "clipped_entries": float(clip.fraction),
            **health,
            "param_norm": param_norm,
            "update_ratio": optim.global_norm(updates) / max(param_norm, 1e-30),
            "lr": float(cfg.optim.lr),
            "steps_per_sec": (step + 1 - start) / max(now - self.t_window, 1e-9),
            "skipped_steps": float(s.skipped),
        }
        if step % cfg.eval_every == 0 or step == cfg.steps - 1:
            eval_loss = evaluate(s.params, self.task, self.model, self.dtype)
            if eval_loss is not None:
                metrics.update({"eval_loss": eval_loss, **self.per_char("eval", eval_loss)})
        self.logger.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)}, step)
        s.last_logged, s.last_train_loss = step, train_loss
        self.t_window = now

    def per_char(self, split: str, loss: float) -> dict:
        """The char task's loss per character, in nats and bits (comparable with the corpus's unigram entropy)."""
        if self.per_symbol is None:
            return {}
        nats = loss * self.per_symbol
        return {f"{split}_loss_per_char": nats, f"{split}_bits_per_char": nats / np.log(2)}

    def log_blowup(self, s: State, step: int) -> None:
        """Every step of the divergence history not logged yet, up to the divergence step, as metric points: the
        charts reach the explosion instead of stopping at the last ``log_every`` step before it. A non-finite value
        is left out (MLflow would store NaN as 0); each point's train_loss is its own step's (a window of one)."""
        first = max(s.last_logged + 1, step - len(s.history) + 1, s.first)
        max_c = {r.step: r.max_abs_c for r in s.history}
        for k in range(first, step + 1):
            loss = float(np.mean(s.losses[s.last_logged + 1 : k + 1]))
            points = {"train_loss": loss, **self.per_char("train", loss), "grad_norm": float(s.grad_norms[k])}
            points["max_abs_c"] = max_c.get(k, np.nan)
            self.logger.log_metrics({key: v for key, v in points.items() if np.isfinite(v)}, k)
            if np.isfinite(loss):
                s.last_train_loss = loss
            s.last_logged = k

    def sample(self, s: State, step: int, bar=None) -> None:
        if self.sample_every and step > 0 and step % self.sample_every == 0:
            say = partial(self.console.say, via=bar.write if bar else None)  # above the progress bar, not through it
            s.samples += _sample(self.task, self.model.fused(s.params), s.rng, self.cfg, step, say, self.logger)

    def checkpoint(self, s: State, step: int):
        """Write the state after ``step`` to the run folder; its path (None without a folder)."""
        if self.run_dir is None:
            return None
        ckpt = Checkpoint(
            step,
            s.params,
            flatten_tree(s.opt_state),
            s.rng.bit_generator.state,
            s.carry,
            s.losses[: step + 1],
            s.grad_norms[: step + 1],
            {"skipped": s.skipped, "clipped_steps": int(s.clipped_steps)},
            getattr(self.logger, "run_id", None),  # the MLflow run, once it exists
            mask(getattr(self.logger, "tracking_uri", None) or "") or None,  # and its store
        )
        try:
            return save_checkpoint(self.run_dir, ckpt)
        except Unwritable as e:
            then = (
                f"the last checkpoint and what MLflow holds are kept (free space, then python -m lstm_exp "
                f"resume={self.run_dir})"
                if isinstance(e, DiskFull)
                else "its checkpoints went with it"
            )
            raise type(e)(f"{e}: training stopped after step {step}; {then}") from None

    def result(self, s: State, ran: int, wall_time: float, startup: float) -> RunResult:
        """The run's outcome once the loop has ended after ``ran`` steps."""
        cfg = self.cfg
        if self.sample_every and s.outcome == "finished":  # sample_every=0: no samples at all
            s.samples += _sample(self.task, self.model.fused(s.params), s.rng, cfg, ran, self.console.say, self.logger)
        losses = s.losses[:ran]
        finite = losses[np.isfinite(losses)]
        tail = finite[-cfg.log_every :] if len(finite) else np.array([np.nan])
        final_eval = evaluate(s.params, self.task, self.model, self.dtype) if s.outcome == "finished" else None
        if s.outcome == "finished" and np.mean(tail) <= cfg.converge_ratio * s.losses[0]:
            s.outcome = "converged"
        stopped = s.divergence is not None and cfg.nan.policy.name == "stop"
        return RunResult(
            outcome=s.outcome,
            steps=s.divergence["step"] if stopped else ran,  # updates applied: the divergence step's was not
            first_loss=float(s.losses[0]),
            final_loss=s.last_train_loss if np.isfinite(s.last_train_loss) else float(np.mean(tail)),
            best_loss=float(finite.min()) if len(finite) else float("nan"),
            final_eval=final_eval,
            wall_time=wall_time,
            startup=startup,
            divergence=s.divergence,
            skipped=s.skipped,
            losses=losses,
            grad_norms=s.grad_norms[:ran],
            samples=s.samples,
            params=s.params,
            baseline=getattr(self.task, "unigram_entropy", None),
            per_symbol=self.per_symbol,
            clipped_steps=int(s.clipped_steps),
            clip=(cfg.optim.clip_mode.name, float(cfg.optim.clip)) if cfg.optim.clip else None,
        )


def per_symbol(cfg, task) -> float | None:
    """For a task that reads text (it can decode), what turns its loss into nats per character: 1 / seq_len under
    ``task.reduction=sum`` (summed over the chunk), 1 under ``mean``; None for the other tasks."""
    if not hasattr(task, "decode"):
        return None
    return 1.0 / cfg.task.seq_len if cfg.task.reduction.name == "sum" else 1.0


def _train(
    cfg, logger: Logger, task, model: Model, run_dir=None, resume: Checkpoint | None = None, console=None
) -> RunResult:
    loop = Loop(cfg, logger, task, model, run_dir, console)
    s = loop.start(resume)
    t0 = time.perf_counter()
    startup = process_age()  # launch (or a sweep job's fork) -> first step
    bar = tqdm(total=cfg.steps, initial=s.first, disable=not cfg.progress, dynamic_ncols=True, mininterval=0.5)
    step = s.first - 1
    with StopRequest() as stop:
        for step in range(s.first, cfg.steps):
            batch = loop.batch(s, step)
            r, gnorm, health = loop.step(s, batch, step)
            action = loop.guard(s, r, batch, step)
            if action == "stop":
                break
            if action == "go":
                updates, clip = loop.update(s, r)
                loop.log(s, step, gnorm, health, updates, clip)
                loop.sample(s, step, bar)
                if loop.checkpoint_every and (step + 1) % loop.checkpoint_every == 0:
                    loop.checkpoint(s, step)
            bar.set_postfix(loss=f"{r.loss:.4g}", gnorm=f"{gnorm:.3g}", refresh=False)
            bar.update()
            if stop.requested:  # Ctrl-C / SIGTERM: the step is complete, so its state is consistent
                bar.close()
                raise Interrupted(step, loop.checkpoint(s, step))
    bar.close()
    if loop.checkpoint_every and s.divergence is None and (step + 1) % loop.checkpoint_every:
        loop.checkpoint(s, step)  # the end, too: a finished run can be extended (resume= with more steps)
    return loop.result(s, step + 1, time.perf_counter() - t0, startup)


def _sample(task, fused, rng, cfg, step, say, logger) -> list[str]:
    """Text generated from the current weights in the core's layout (by the core's forward), said and handed to
    the logger; none when the model has no fused view (a user model without a layout)."""
    if fused is None:
        return []
    text = task.decode(sample_ids(fused, task.seed_token(rng), cfg.task.sample_length, rng, cfg.task.temperature))
    shown = "".join(ch if ch.isprintable() or ch in "\n\t" else ch.encode("unicode_escape").decode() for ch in text)
    say(f"--- sample at step {step} ---\n{shown}\n---")  # no raw control chars
    logger.log_text(text, f"samples/step_{step:06d}.txt")
    return [text]

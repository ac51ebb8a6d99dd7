"""A population's training: many members (a seed sweep of one small model) trained as one computation.

Each member is a run of its own: its config (its seed, learning rate, clip value, ...), task and data stream, logger,
folder and ``lstm_exp.runner.train.Loop``, which keeps its state, explains its divergence, logs, samples,
checkpoints and sums it up exactly as it does for a run alone. Only the arithmetic is shared: the members' forward,
backward and optimizer step run on stacked arrays (``lstm_exp.core.members``), and since each member's arithmetic is
the arithmetic it has alone, so are its numbers, bit for bit (``tests/test_population.py``).

A member that diverges under ``nan.policy=stop`` leaves the population at that step (the others go on, a smaller
stack); under ``continue`` it stays. ``nan.policy=skip`` is not stacked: a skipped update would hold one member's
optimizer back while the others' step counts go on (``lstm_exp.sweeps.populations`` runs such jobs alone).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
from threadpoolctl import threadpool_limits

from lstm_exp.common.ownership import process_age
from lstm_exp.core import optim
from lstm_exp.core.forensics import History
from lstm_exp.core.health import SATURATION
from lstm_exp.core.members import member, stack
from lstm_exp.core.network import StepResult, loss_and_grads
from lstm_exp.runner.console import Console
from lstm_exp.runner.train import Logger, Loop, RunResult, StopRequest

VARYING = ("seed", "optim.lr", "optim.clip", "init.std", *(f"optim.{h}" for h in ("beta", "decay", "b1", "b2", "eps")))


@dataclass
class Member:
    """One member: what ``lstm_exp.runner.train.run`` takes for a run alone."""

    cfg: object  # its validated config
    logger: Logger
    task: object
    model: object  # the core (lstm_exp.models.seam.CoreModel)
    run_dir: str | None = None
    console: Console | None = None


class PopulationInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: every member still training was checkpointed after ``step`` (paths by member index)."""

    def __init__(self, step: int, checkpoints: dict):
        super().__init__(f"interrupted after step {step}")
        self.step, self.checkpoints = step, checkpoints


def unstackable(cfg) -> str | None:
    """Why a config's run cannot be a member of a population, or None."""
    if cfg.model.impl is not None:
        return "model.impl: a user's model runs its own code"
    if cfg.model.fault is not None:
        return "model.fault: a deliberately wrong backward is trained alone"
    if cfg.nan.policy.name == "skip":
        return "nan.policy=skip: a skipped update would hold one member's optimizer back"
    if cfg.mode.name != "train" or cfg.resume is not None:
        return f"mode={cfg.mode.name}" if cfg.mode.name != "train" else "resume= continues one run"
    return None


def per_member(values: list):
    """One value per member as an array, or the one value they share."""
    return values[0] if len(set(values)) == 1 else np.asarray(values, dtype=np.float64)


class Joint:
    """The members still training, stacked: their parameters, optimizer state, clips and hyper-parameters."""

    def __init__(self, loops: list[Loop], params: list[dict]):
        self.loops = loops
        self.alive = list(range(len(loops)))
        self.params = stack(params)
        self.carry = None  # the (h, c) the last step ended with, stacked
        self.optimizer, self.state_clip = self.build(), self.carries_clamp()
        self.opt_state = self.optimizer.init(self.params)

    def configs(self) -> list:
        return [self.loops[m].cfg for m in self.alive]

    def build(self) -> optim.Optimizer:
        cfgs = self.configs()
        oc = cfgs[0].optim
        hyper = {k: per_member([c.optim.hyper()[k] for c in cfgs]) for k in oc.hyper()}
        lr = per_member([c.optim.lr for c in cfgs])
        clip = per_member([c.optim.clip or 0.0 for c in cfgs]) if oc.clip_mode.name != "state" else None
        return optim.build(oc.name, lr, clip, oc.clip_mode.name, members=True, **hyper)

    def carries_clamp(self):
        """The BPTT carries' clamp (``optim.clip_mode=state``), one per member, or None."""
        clips = [self.loops[m].model.options.state_clip for m in self.alive]
        return None if clips[0] is None else np.asarray(clips, dtype=np.float64)[:, None, None]

    def keep(self, rows: list[int]) -> None:
        """Only these rows (positions in ``alive``) go on training."""
        self.alive = [self.alive[i] for i in rows]
        if not rows:
            return
        self.params = {k: v[rows] for k, v in self.params.items()}
        self.opt_state = take_rows(self.opt_state, rows)
        self.carry = None if self.carry is None else (self.carry[0][rows], self.carry[1][rows])
        self.optimizer, self.state_clip = self.build(), self.carries_clamp()


def take_rows(tree, rows):
    """An optimizer state with only ``rows`` of every per-member array (a member's own: ``rows`` an int)."""
    if isinstance(tree, dict):
        return {k: take_rows(v, rows) for k, v in tree.items()}
    if isinstance(tree, tuple):
        parts = [take_rows(v, rows) for v in tree]
        return type(tree)(*parts) if hasattr(tree, "_fields") else tuple(parts)
    if isinstance(tree, np.ndarray) and tree.ndim > 0:
        return tree[rows]
    return tree


def member_result(r: StepResult, i: int) -> StepResult:
    """Row ``i`` of a population's step, as a run alone sees its step."""
    clamped = None if r.clamped is None else float(r.clamped[i])
    return StepResult(float(r.loss[i]), member(r.grads, i), (r.state[0][i], r.state[1][i]), None, None, None, clamped)


def health(cache) -> tuple[np.ndarray, np.ndarray]:
    """Each member's largest |c_t| and gate saturation (``lstm_exp.core.health``'s measures, a member at a time)."""
    G = cache.gates  # (T, S, B, 4H)
    H = G.shape[-1] // 4
    each = (0, 2, 3)
    max_c = np.abs(cache.cs[1:]).max(axis=each)
    sig = np.concatenate([G[..., : 2 * H], G[..., 3 * H :]], axis=-1)
    saturated = np.count_nonzero((sig < SATURATION) | (sig > 1 - SATURATION), axis=each)
    saturated += np.count_nonzero(np.abs(G[..., 2 * H : 3 * H]) > 1 - 2 * SATURATION, axis=each)
    return max_c, saturated / (G.size // G.shape[1])


def finite_rows(r: StepResult) -> np.ndarray:
    """Which members' loss and gradients are all finite."""
    ok = np.isfinite(r.loss)
    for g in r.grads.values():
        ok &= np.isfinite(g.reshape(len(g), -1)).all(axis=1)
    return ok


def run_population(members: list[Member]) -> list[RunResult]:
    """Train every member; each one's RunResult, as ``lstm_exp.runner.train.run`` returns it for a run alone."""
    cfg = members[0].cfg
    with threadpool_limits(limits=cfg.blas_threads, user_api="blas"), np.errstate(all="ignore"):
        loops = [Loop(replace(m.cfg, progress=False), m.logger, m.task, m.model, m.run_dir, m.console) for m in members]
        return _train(loops)


class Records:
    """Every member's per-step loss, gradient norm and max |c| as rows of arrays (a member's State holds views of
    its rows), so a step records all members at once; a member's ``History`` is built from its rows when it is
    read (a divergence to explain), with the very records a run alone would hold."""

    def __init__(self, states: list, steps: int):
        self.losses, self.grad_norms = np.full((len(states), steps), np.nan), np.full((len(states), steps), np.nan)
        self.max_c = np.full((len(states), steps), np.nan)
        self.clipped = np.zeros(len(states), dtype=np.int64)
        for m, s in enumerate(states):
            s.losses, s.grad_norms = self.losses[m], self.grad_norms[m]

    def history(self, m: int, step: int, length: int) -> History:
        history = History(length)
        for k in range(max(0, step - length + 1), step + 1):
            history.record(k, self.losses[m, k], self.grad_norms[m, k], self.max_c[m, k])
        return history


def carries_in(joint: Joint, batches: list, shape: tuple, dtype) -> tuple[np.ndarray, np.ndarray]:
    """The states the step starts from: the last step's (h, c), zeros for a member whose batch starts afresh."""
    if joint.carry is None or all(b.reset for b in batches):
        return np.zeros(shape, dtype=dtype), np.zeros(shape, dtype=dtype)
    h0, c0 = joint.carry[0].copy(), joint.carry[1].copy()
    for i, b in enumerate(batches):
        if b.reset:
            h0[i], c0[i] = 0, 0
    return h0, c0


def _train(loops: list[Loop]) -> list[RunResult]:
    states = [loop.start(None) for loop in loops]
    joint = Joint(loops, [s.params for s in states])
    rec = Records(states, loops[0].cfg.steps)
    options, steps, dtype, hidden = loops[0].model.options, loops[0].cfg.steps, loops[0].dtype, loops[0].model.hidden
    ratios = np.array([loop.cfg.nan.loss_ratio for loop in loops], dtype=np.float64)
    ended: dict[int, int] = {}  # member -> steps it ran
    t0, startup = time.perf_counter(), process_age()
    step = -1
    with StopRequest() as stop:
        for step in range(steps):
            alive = np.array(joint.alive)
            batches = [loops[m].task.batch(step) for m in joint.alive]
            x, y = np.stack([b.x for b in batches]), np.stack([b.y for b in batches])
            h0, c0 = carries_in(joint, batches, (len(alive), len(batches[0].x), hidden), dtype)
            params = joint.params
            r = loss_and_grads(params, x, y, h0, c0, options.loss, options.reduction, state_clip=joint.state_clip)
            gnorms = optim.global_norm(r.grads, members=True)
            max_c, saturation = health(r.cache)
            rec.losses[alive, step], rec.grad_norms[alive, step], rec.max_c[alive, step] = r.loss, gnorms, max_c
            firsts = rec.losses[alive, 0]
            suspect = ~finite_rows(r) | ((ratios[alive] > 0) & (step > 0) & (r.loss >= ratios[alive] * firsts))
            stopped = []
            for i in np.flatnonzero(suspect):  # a run alone's guard, for the members that may have diverged
                m, s = alive[i], states[alive[i]]
                s.params, s.carry = member(params, i), (h0[i], c0[i])  # the step's inputs, for its replay
                s.history = rec.history(m, step, loops[m].cfg.nan.history)
                if loops[m].guard(s, member_result(r, i), batches[i], step) == "stop":
                    stopped.append(i)
                    ended[m] = step + 1
            updates, joint.opt_state = joint.optimizer.update(r.grads, joint.opt_state, params)
            joint.params, joint.carry = optim.apply_updates(params, updates), r.state
            clip = optim.clip_stats(joint.opt_state)
            acted = clip_acted(clip, r)
            acted[stopped] = False  # a member that stopped took no update
            rec.clipped[alive] += acted
            for i, m in enumerate(alive):
                loop, s = loops[m], states[m]
                logs = step % loop.cfg.log_every == 0 or step == steps - 1
                samples = loop.sample_every and step > 0 and step % loop.sample_every == 0
                keeps = loop.checkpoint_every and (step + 1) % loop.checkpoint_every == 0
                if i in stopped or not (logs or samples or keeps):
                    continue
                s.params, s.clipped_steps = member(joint.params, i), int(rec.clipped[m])
                if logs:
                    health_i = {"max_abs_c": float(max_c[i]), "gate_saturation": float(saturation[i])}
                    loop.log(s, step, float(gnorms[i]), health_i, member(updates, i), clip_of(clip, r, i))
                loop.sample(s, step)
                if keeps:
                    s.opt_state, s.carry = take_rows(joint.opt_state, i), (joint.carry[0][i], joint.carry[1][i])
                    loop.checkpoint(s, step)
            if stopped:
                joint.keep([i for i in range(len(alive)) if i not in stopped])
            if not joint.alive:
                break
            if stop.requested:  # Ctrl-C / SIGTERM: every member's step is complete, so its state is consistent
                raise PopulationInterrupted(step, checkpoint_all(loops, states, joint, rec, step))
    wall = time.perf_counter() - t0
    for i, m in enumerate(joint.alive):
        s = states[m]
        s.params, s.opt_state = member(joint.params, i), take_rows(joint.opt_state, i)
        s.carry, s.clipped_steps = (joint.carry[0][i], joint.carry[1][i]), int(rec.clipped[m])
        if loops[m].checkpoint_every and (step + 1) % loops[m].checkpoint_every:
            loops[m].checkpoint(s, step)  # the end, too: a member can be extended like any run
        ended[m] = step + 1
    for m, s in enumerate(states):
        s.clipped_steps = int(rec.clipped[m])
    return [loop.result(s, ended[m], wall, startup) for m, (loop, s) in enumerate(zip(loops, states, strict=True))]


def clip_acted(clip: optim.ClipStats | None, r: StepResult) -> np.ndarray:
    """Whether the clip acted on each member's step (the gradient transform's record, or the carries' clamp)."""
    if clip is not None:
        return np.array(clip.acted, dtype=bool)  # a copy: the optimizer state keeps its record
    return np.zeros(len(r.loss), dtype=bool) if r.clamped is None else np.asarray(r.clamped) > 0


def clip_of(clip: optim.ClipStats | None, r: StepResult, i: int) -> optim.ClipStats:
    """What the clip did to member ``i``'s step: the gradient transform's record, or the BPTT carries' clamp."""
    if clip is None:
        clamped = 0.0 if r.clamped is None else float(r.clamped[i])
        return optim.ClipStats(clamped > 0, clamped)
    return optim.ClipStats(bool(clip.acted[i]), float(clip.fraction[i]), float(clip.norm_after[i]))


def checkpoint_all(loops, states, joint: Joint, rec: Records, step: int) -> dict:
    """Checkpoint every member still training, after ``step``; their checkpoints' paths."""
    paths = {}
    for i, m in enumerate(joint.alive):
        s = states[m]
        s.params, s.opt_state = member(joint.params, i), take_rows(joint.opt_state, i)
        s.carry, s.clipped_steps = (joint.carry[0][i], joint.carry[1][i]), int(rec.clipped[m])
        paths[m] = loops[m].checkpoint(s, step)
    return paths

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


def _train(loops: list[Loop]) -> list[RunResult]:
    states = [loop.start(None) for loop in loops]
    joint = Joint(loops, [s.params for s in states])
    options = loops[0].model.options
    steps = loops[0].cfg.steps
    ended: dict[int, int] = {}  # member -> steps it ran
    t0, startup = time.perf_counter(), process_age()
    step = -1
    with StopRequest() as stop:
        for step in range(steps):
            batches = [loops[m].batch(states[m], step) for m in joint.alive]
            h0 = np.stack([states[m].carry[0] for m in joint.alive])
            c0 = np.stack([states[m].carry[1] for m in joint.alive])
            x, y = np.stack([b.x for b in batches]), np.stack([b.y for b in batches])
            params = joint.params
            r = loss_and_grads(params, x, y, h0, c0, options.loss, options.reduction, state_clip=joint.state_clip)
            gnorms = optim.global_norm(r.grads, members=True)
            max_c, saturation = health(r.cache)
            finite = finite_rows(r)
            stopped = []
            for i, m in enumerate(joint.alive):
                s, loss = states[m], float(r.loss[i])
                s.losses[step], s.grad_norms[step] = loss, float(gnorms[i])
                s.history.record(step, loss, float(gnorms[i]), float(max_c[i]))
                ratio = loops[m].cfg.nan.loss_ratio
                if not finite[i] or (ratio > 0 and step > 0 and loss >= ratio * s.losses[0]):
                    s.params, s.carry = member(params, i), (h0[i], c0[i])  # the step's inputs, for its replay
                    if loops[m].guard(s, member_result(r, i), batches[i], step) == "stop":
                        stopped.append(i)
            updates, joint.opt_state = joint.optimizer.update(r.grads, joint.opt_state, params)
            joint.params = optim.apply_updates(params, updates)
            clip = optim.clip_stats(joint.opt_state)
            for i, m in enumerate(joint.alive):
                if i in stopped:
                    ended[m] = step + 1
                    continue
                s = states[m]
                s.carry = (r.state[0][i], r.state[1][i])
                stats = clip_of(clip, r, i)
                s.clipped_steps += bool(stats.acted)
                loop = loops[m]
                logs = step % loop.cfg.log_every == 0 or step == steps - 1
                if logs or loop.sample_every or loop.checkpoint_every:
                    s.params = member(joint.params, i)
                if logs:
                    health_i = {"max_abs_c": float(max_c[i]), "gate_saturation": float(saturation[i])}
                    loop.log(s, step, float(gnorms[i]), health_i, member(updates, i), stats)
                loop.sample(s, step, None)
                if loop.checkpoint_every and (step + 1) % loop.checkpoint_every == 0:
                    s.opt_state = take_rows(joint.opt_state, i)
                    loop.checkpoint(s, step)
            if stopped:
                joint.keep([i for i in range(len(joint.alive)) if i not in stopped])
            if not joint.alive:
                break
            if stop.requested:  # Ctrl-C / SIGTERM: every member's step is complete, so its state is consistent
                raise PopulationInterrupted(step, checkpoint_all(loops, states, joint, step))
    wall = time.perf_counter() - t0
    for i, m in enumerate(joint.alive):
        s = states[m]
        s.params, s.opt_state = member(joint.params, i), take_rows(joint.opt_state, i)
        if loops[m].checkpoint_every and (step + 1) % loops[m].checkpoint_every:
            loops[m].checkpoint(s, step)  # the end, too: a member can be extended like any run
        ended[m] = step + 1
    return [loop.result(s, ended[m], wall, startup) for m, (loop, s) in enumerate(zip(loops, states, strict=True))]


def clip_of(clip: optim.ClipStats | None, r: StepResult, i: int) -> optim.ClipStats:
    """What the clip did to member ``i``'s step: the gradient transform's record, or the BPTT carries' clamp."""
    if clip is None:
        clamped = 0.0 if r.clamped is None else float(r.clamped[i])
        return optim.ClipStats(clamped > 0, clamped)
    if np.ndim(clip.acted) == 0:  # nothing clipped yet: the transform's initial record
        return clip
    return optim.ClipStats(bool(clip.acted[i]), float(clip.fraction[i]), float(clip.norm_after[i]))


def checkpoint_all(loops, states, joint: Joint, step: int) -> dict:
    """Checkpoint every member still training, after ``step``; their checkpoints' paths."""
    paths = {}
    for i, m in enumerate(joint.alive):
        s = states[m]
        s.params, s.opt_state = member(joint.params, i), take_rows(joint.opt_state, i)
        paths[m] = loops[m].checkpoint(s, step)
    return paths

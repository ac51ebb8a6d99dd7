"""Gradient transforms and optimizers over flat parameter dicts (name -> ndarray), in the shape of optax.

An ``Optimizer`` is a pair of pure functions: ``init(params) -> state`` and
``update(grads, state, params=None) -> (updates, new_state)``. Updates are *added* to the parameters
(``apply_updates``), so plain SGD returns ``-lr * g``. States are NamedTuples of dicts and scalars and are
never modified in place, so an old state stays valid (checkpoint/resume). Every update keeps the dtype of
the gradients (float64 or float32).

What ``clip`` means in ``build``, by ``clip_mode``:
- ``norm``: if the global L2 norm of all gradients exceeds ``clip``, scale them all by ``clip / norm``
  (Pascanu et al. 2013), so the norm is then exactly ``clip``.
- ``value``: clamp every gradient entry to ``[-clip, clip]`` (min-char-rnn).
- ``state``: no gradient transform here; ``clip`` bounds the BPTT carries dh and dc inside the LSTM
  backward instead.
``clip`` of ``None`` or ``<= 0`` means no clipping in any mode.

A clip transform records what it did in its state (``ClipStats``: whether it acted, the fraction of gradient
entries it changed, the norm after it), so the loop logs it without computing the clipping again.

A population (``lstm_exp.core.members``): ``build(..., members=True)`` takes every tree with a leading member axis;
``lr``, ``clip`` and the hyper-parameters may then be one value per member (arrays of shape (S,)), a clip's norm and
statistics are each member's, and each member's update is, bit for bit, the one it gets alone.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

CLIP_MODES = ("norm", "value", "state")


class Optimizer(NamedTuple):
    """Pure functions ``init(params) -> state`` and ``update(grads, state, params) -> (updates, state)``."""

    init: Callable[[dict], Any]
    update: Callable[[dict, Any, dict | None], tuple[dict, Any]]


class EmptyState(NamedTuple):
    """State of a stateless transform."""


class ClipStats(NamedTuple):
    """What a clip transform did to the last gradients: whether it acted, the fraction of their entries it changed,
    and their global norm after it."""

    acted: bool = False
    fraction: float = 0.0
    norm_after: float = math.nan


class MomentumState(NamedTuple):
    velocity: dict


class AdagradState(NamedTuple):
    sum_sq: dict  # running sum of squared gradients


class RMSPropState(NamedTuple):
    avg_sq: dict  # exponential moving average of squared gradients


class AdamState(NamedTuple):
    count: int  # number of updates taken so far
    mu: dict  # first-moment estimate
    nu: dict  # second-moment estimate


def tree_map(fn: Callable, tree: dict, *rest: dict) -> dict:
    """Apply ``fn`` leafwise to ``tree`` and the matching entries of ``rest``; returns a new dict."""
    return {k: fn(v, *(r[k] for r in rest)) for k, v in tree.items()}


def _zeros_like(tree: dict) -> dict:
    return tree_map(np.zeros_like, tree)


def global_norm(tree: dict, members: bool = False):
    """L2 norm over all tensors of ``tree``, accumulated in float64 (``members``: one per member, each as alone)."""
    if not members:
        return math.sqrt(sum(float(np.sum(np.square(v, dtype=np.float64))) for v in tree.values()))
    # a contiguous row summed along its axis adds the same numbers in the same (pairwise) order as np.sum of it alone
    return np.sqrt(sum(np.square(v, dtype=np.float64).reshape(len(v), -1).sum(axis=1) for v in tree.values()))


def power(base, exponent: int):
    """``base ** exponent`` as Python computes it, for a number or each of one-per-member values (NumPy's power
    takes shortcuts, x * x for x**2, that Python's does not: a member must get the bias correction it gets alone)."""
    return base**exponent if np.ndim(base) == 0 else np.array([b**exponent for b in base.tolist()])


def each(value, like: np.ndarray):
    """A hyper-parameter as a factor for ``like``: a number as it is; one value per member (shape (S,)) shaped to
    broadcast over that member's slice of ``like``."""
    return value if np.ndim(value) == 0 else np.reshape(value, (-1,) + (1,) * (like.ndim - 1))


def entries(g: np.ndarray, members: bool):
    """How many entries of ``g`` are non-zero: in all of it, or (``members``) in each member's slice."""
    return int(np.count_nonzero(g)) if not members else np.count_nonzero(g.reshape(len(g), -1), axis=1)


def apply_updates(params: dict, updates: dict) -> dict:
    """Return ``params + updates`` as new arrays in the dtype of each parameter."""
    return tree_map(lambda p, u: (p + u).astype(p.dtype, copy=False), params, updates)


def _stateless(transform: Callable[[dict], dict]) -> Optimizer:
    """Wrap a pure ``grads -> updates`` function as an Optimizer with an empty state."""

    def init(params):
        return EmptyState()

    def update(grads, state, params=None):
        return transform(grads), state

    return Optimizer(init, update)


def sgd(lr: float) -> Optimizer:
    """Plain gradient descent: ``-lr * g``."""
    return _stateless(lambda grads: tree_map(lambda g: -each(lr, g) * g, grads))


def _recording(transform: Callable[[dict], tuple[dict, ClipStats]]) -> Optimizer:
    """Wrap a ``grads -> (clipped, stats)`` function as an Optimizer whose state is the last ``ClipStats``."""

    def init(params):
        return ClipStats()

    def update(grads, state, params=None):
        return transform(grads)

    return Optimizer(init, update)


def clip_by_value(max_value: float, members: bool = False) -> Optimizer:
    """Clamp every gradient entry to ``[-max_value, max_value]``."""

    def transform(grads):
        changed = sum(entries(np.abs(g) > each(max_value, g), members) for g in grads.values())
        clipped = tree_map(lambda g: np.clip(g, -each(max_value, g), each(max_value, g)), grads)
        total = sum(g[0].size if members else g.size for g in grads.values())
        return clipped, ClipStats(changed > 0, changed / max(total, 1), global_norm(clipped, members))

    return _recording(transform)


def clip_by_global_norm(max_norm: float, members: bool = False) -> Optimizer:
    """Scale all gradients by ``max_norm / norm`` when their global norm exceeds ``max_norm``."""

    def transform(grads):
        norm = global_norm(grads, members)
        if members:
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.where(norm > max_norm, max_norm / norm, 1.0)
        else:
            scale = max_norm / norm if norm > max_norm else 1.0
        acted = scale != 1.0
        clipped = tree_map(lambda g: g * each(scale, g), grads)
        return clipped, ClipStats(acted, acted * 1.0 if members else float(acted), norm * scale)

    return _recording(transform)


def chain(*transforms: Optimizer) -> Optimizer:
    """Apply ``transforms`` in order; the state is the tuple of their states."""

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(grads, state, params=None):
        new_state = []
        for transform, part in zip(transforms, state, strict=True):
            grads, part = transform.update(grads, part, params)
            new_state.append(part)
        return grads, tuple(new_state)

    return Optimizer(init, update)


def momentum(lr: float, beta: float = 0.9) -> Optimizer:
    """Heavy-ball momentum: ``v = beta * v + g``; update ``-lr * v``."""

    def init(params):
        return MomentumState(_zeros_like(params))

    def update(grads, state, params=None):
        velocity = tree_map(lambda v, g: each(beta, v) * v + g, state.velocity, grads)
        return tree_map(lambda v: -each(lr, v) * v, velocity), MomentumState(velocity)

    return Optimizer(init, update)


def _square_scaled(lr: float, state_cls: type, accumulate: Callable, denominator: Callable) -> Optimizer:
    """Optimizer keeping one statistic ``s`` of squared gradients; update ``-lr * g / denominator(s)``."""

    def init(params):
        return state_cls(_zeros_like(params))

    def update(grads, state, params=None):
        stat = tree_map(accumulate, state[0], grads)
        return tree_map(lambda g, s: -each(lr, g) * g / denominator(s), grads, stat), state_cls(stat)

    return Optimizer(init, update)


def adagrad(lr: float, eps: float = 1e-8) -> Optimizer:
    """Adagrad as in min-char-rnn: ``mem += g*g``; update ``-lr * g / sqrt(mem + eps)``."""
    return _square_scaled(lr, AdagradState, lambda s, g: s + g * g, lambda s: np.sqrt(s + each(eps, s)))


def rmsprop(lr: float, decay: float = 0.9, eps: float = 1e-8) -> Optimizer:
    """RMSProp: ``s = decay * s + (1 - decay) * g*g``; update ``-lr * g / (sqrt(s) + eps)``."""

    def accumulate(s, g):
        d = each(decay, s)
        return d * s + (1 - d) * g * g

    return _square_scaled(lr, RMSPropState, accumulate, lambda s: np.sqrt(s) + each(eps, s))


def adam(lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """Adam (Kingma & Ba 2015) with bias-corrected moments: ``-lr * m_hat / (sqrt(v_hat) + eps)``."""

    def init(params):
        return AdamState(0, _zeros_like(params), _zeros_like(params))

    def update(grads, state, params=None):
        count = int(state.count) + 1
        mu = tree_map(lambda m, g: each(b1, m) * m + (1 - each(b1, m)) * g, state.mu, grads)
        nu = tree_map(lambda v, g: each(b2, v) * v + (1 - each(b2, v)) * g * g, state.nu, grads)
        c1, c2 = 1 - power(b1, count), 1 - power(b2, count)

        def update_of(m, v):
            return -each(lr, m) * (m / each(c1, m)) / (np.sqrt(v / each(c2, v)) + each(eps, v))

        return tree_map(update_of, mu, nu), AdamState(count, mu, nu)

    return Optimizer(init, update)


OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "sgd": sgd,
    "momentum": momentum,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adam": adam,
}


def _hyper_names(factory: Callable) -> list[str]:
    return [name for name in inspect.signature(factory).parameters if name != "lr"]


def build(
    name: str, lr: float, clip: float | None = None, clip_mode: str = "norm", members: bool = False, **hyper
) -> Optimizer:
    """Optimizer ``name`` at learning rate ``lr``, preceded by the gradient clipping of ``clip_mode``; ``members``:
    for a population, whose ``lr``, ``clip`` and hyper-parameters may be one per member."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(OPTIMIZERS)}")
    if clip_mode not in CLIP_MODES:
        raise ValueError(f"unknown clip_mode {clip_mode!r}; valid modes: {', '.join(CLIP_MODES)}")
    factory = OPTIMIZERS[name]
    accepted = _hyper_names(factory)
    unknown = sorted(set(hyper) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) or "none"
        raise ValueError(f"unknown hyper-parameter(s) {', '.join(unknown)} for {name}; accepted: {valid}")
    opt = factory(number(lr), **{k: number(v) for k, v in hyper.items()})
    clipper = clipping(clip, clip_mode, members)
    return opt if clipper is None else chain(clipper, opt)


def number(value):
    """A hyper-parameter as a float, or (one per member) a float64 array."""
    return float(value) if np.ndim(value) == 0 else np.asarray(value, dtype=np.float64)


def clipping(clip: float | None, clip_mode: str = "norm", members: bool = False) -> Optimizer | None:
    """The gradient transform of ``clip_mode``, or None when it transforms nothing (off, or ``state``). A
    population's clip is on for every member or for none (``clip``: one value, or one > 0 per member)."""
    if clip_mode not in CLIP_MODES:
        raise ValueError(f"unknown clip_mode {clip_mode!r}; valid modes: {', '.join(CLIP_MODES)}")
    on = np.asarray(clip if clip is not None else 0.0) > 0
    if on.any() and not on.all():
        raise ValueError("a population's clip is on for every member or for none")
    if not on.any() or clip_mode == "state":
        return None
    clip = number(clip)
    return clip_by_global_norm(clip, members) if clip_mode == "norm" else clip_by_value(clip, members)


def clip_stats(state) -> ClipStats | None:
    """What the clip transform of an optimizer built by ``build`` did at its last update (None: it has none)."""
    return state[0] if isinstance(state, tuple) and state and isinstance(state[0], ClipStats) else None

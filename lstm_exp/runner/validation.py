"""``validate``: a composed config as the schema's typed objects (types and ranges checked: ``schema.typed_config``),
then every setting that would do nothing in it refused or, under ``-m``, warned about (``DEAD``: ``optim.clip_mode``
without ``optim.clip``, ``layout=`` without ``model.impl``, ...) — all before any training or logging starts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import dataclass, fields
from enum import Enum

from omegaconf import MISSING, DictConfig

from lstm_exp.common.errors import UserError, warn
from lstm_exp.runner.schema import Config, InitScheme, Mode, typed_config


@dataclass(frozen=True)
class Usage:
    """How a config is run, which decides what is said of a setting that does nothing: under ``-m`` (a sweep crosses
    settings, so some of its jobs legitimately hold one that does nothing: only a warning), and which keys the
    command line set (``explicit``; a preset's value is not the user's doing)."""

    multirun: bool = False
    explicit: frozenset[str] = frozenset()
    job: int | None = None  # a sweep job's number, which its warnings name

    @classmethod
    def of(cls, overrides, multirun: bool = False, job: int | None = None) -> Usage:
        """From a command line's overrides (``+optim.clip=6`` sets ``optim.clip``; ``task=char`` sets ``task``)."""
        return cls(multirun, frozenset(str(o).partition("=")[0].lstrip("+~") for o in overrides), job)

    @classmethod
    def from_hydra(cls) -> Usage:
        """The running Hydra job's (a single run, nothing explicit, outside Hydra: tests, the API)."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return cls()
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        return cls.of(hc.overrides.task, multirun, hc.job.get("num") if multirun else None)


@dataclass(frozen=True)
class Dead:
    """A setting that does nothing in some configs: ``key`` has no effect when ``when(cfg)`` (``dead_when`` in words,
    for docs/config.md); ``why`` (formatted with ``c``, the config) says so and what to do. Refused in a single run
    (``warn_only``: only a warning), a warning under ``-m``; ``explicit``: only when the command line sets it."""

    key: str
    when: Callable[[Config], bool]
    dead_when: str
    why: str
    warn_only: bool = False
    explicit: bool = False


ABSENT = object()  # a key this config does not have (task.temperature of task=sin)
TRACKED = ("uri", "experiment", "run_name", "log_every", "system_metrics")
TRAINING_ONLY = (  # what mode=gradcheck and mode=diagnose never read: they train nothing, on small sizes of their own
    "steps", "batch_size", "log_every", "eval_every", "converge_ratio", "blas_threads", "checkpoint.every",
    "nan.policy", "nan.loss_ratio", "nan.history", "model.hidden", "model.dtype", "optim.lr",
)  # fmt: skip
NOT_TRAINING = "does nothing with mode={c.mode.name}, which trains nothing (it checks a small problem of its own)"
NO_SAMPLES = "does nothing with task.sample_every=0 (no samples are drawn); give task.sample_every=<steps> or drop it"


def records_nothing(mode: Mode, keys, what: str) -> list[Dead]:
    """Rules for the tracking settings ``mode`` never reads (warned about, only when the command line sets them)."""
    name = f"mode={mode.name}"
    return [
        Dead(f"tracking.{key}", lambda c: c.mode == mode, name, f"does nothing with {name}, {what}", True, True)
        for key in keys
    ]


DEAD = [  # docs/config.md lists them; the first one that applies to a key is said
    Dead(
        "optim.clip_mode",
        lambda c: not c.optim.clip,
        "optim.clip is 0 or null",
        "does nothing without optim.clip: give optim.clip=<value>",
    ),
    Dead(
        "layout",
        lambda c: c.model.impl is None,
        "model.impl is null (the core)",
        "does nothing without model.impl: a layout maps your own LSTM's parameters onto the core's, and the core "
        "needs none; give model.impl=<file.py>:<Name> or drop layout=",
    ),
    Dead(
        "init.std",
        lambda c: c.init.scheme != InitScheme.normal,
        "init is not normal",
        "does nothing with init={c.init.scheme.name}: only init=normal draws N(0, std^2); give init=normal or drop "
        "init.std",
    ),
    Dead("task.temperature", lambda c: c.task.sample_every == 0, "task.sample_every=0", NO_SAMPLES),
    Dead("task.sample_length", lambda c: c.task.sample_every == 0, "task.sample_every=0", NO_SAMPLES),
    Dead(
        "task.max_corpus_mb",
        lambda c: c.task.corpus is None,
        "task.corpus is null (the built-in text)",
        "does nothing without task.corpus: it limits the size of a corpus file; give task.corpus=<file> or drop it",
    ),
    Dead(
        "checkpoint.every",
        lambda c: c.checkpoint.every > c.steps and c.mode == Mode.train,
        "it is more than steps",
        "is more than steps={c.steps}: no checkpoint would be written except on Ctrl-C / SIGTERM (as with "
        "checkpoint.every=0); give checkpoint.every=<at most steps>, or 0",
    ),
    Dead(
        "resume_failed",
        lambda c: c.resume is None,
        "resume is null",
        "does nothing without resume=<a sweep folder>: it says what finishing a sweep does with its failed jobs",
    ),
    *(
        Dead(
            f"tracking.{key}",
            lambda c: not c.tracking.enabled,
            "tracking.enabled=false",
            "does nothing with tracking.enabled=false (nothing is recorded)",
            warn_only=True,
        )
        for key in TRACKED
    ),
    *records_nothing(Mode.gradcheck, ("enabled", *TRACKED), "which records nothing"),
    *records_nothing(Mode.diagnose, ("log_every", "system_metrics"), "which records a verdict, not metrics"),
    *(
        Dead(key, lambda c: c.mode != Mode.train, "mode=gradcheck or diagnose", NOT_TRAINING, True, True)
        for key in TRAINING_ONLY
    ),
]


def setting(cfg, key: str):
    """The value of a dotted key in a validated config (ABSENT if this config has no such key)."""
    node = cfg
    for part in key.split("."):
        node = getattr(node, part, ABSENT)
    return node


def default(cfg, key: str):
    """The schema's default of a dotted key, in the schema class this config uses for it (ABSENT if it has none)."""
    parent, _, name = key.rpartition(".")
    owner = setting(cfg, parent) if parent else cfg
    found = {f.name: f.default for f in fields(owner)}.get(name, ABSENT)
    return ABSENT if found is NO_DEFAULT or isinstance(found, str) and found == MISSING else found


def shown(value) -> str:
    """A setting's value as the command line writes it (an enum or a layout by its name, true, null)."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, Enum):
        return value.name
    return str(getattr(value, "name", value))


def chosen(cfg, rule: Dead, usage: Usage) -> bool:
    """The config has the rule's key and someone chose its value: the command line, or (unless the rule counts only
    the command line) a preset or the API, by giving it a value other than the schema's default."""
    value = setting(cfg, rule.key)
    if value is ABSENT:
        return False
    return rule.key in usage.explicit or (not rule.explicit and value != default(cfg, rule.key))


def dead_settings(cfg: Config, usage: Usage) -> list[tuple[bool, str]]:
    """(refused, one line) for every chosen setting that does nothing in ``cfg`` (a key's first rule only).

    A resume continues a run (or a sweep) whose config was judged when it started: nothing is said again.
    """
    if "resume" in usage.explicit:
        return []
    found, said = [], set()
    for rule in DEAD:
        if rule.key in said or not chosen(cfg, rule, usage) or not rule.when(cfg):
            continue
        said.add(rule.key)
        refused = not (rule.warn_only or usage.multirun)
        message = f"{rule.key}={shown(setting(cfg, rule.key))} {rule.why.format(c=cfg)}"
        found.append((refused, message + ("" if refused or not usage.multirun else " (this job runs without it)")))
    return found


def judge(cfg: Config, usage: Usage) -> None:
    """Refuse the first setting that does nothing (UserError), else warn about each one only warned about."""
    found = dead_settings(cfg, usage)
    refused = [message for refuse, message in found if refuse]
    if refused:
        raise UserError(refused[0])
    job = f"job #{usage.job}: " if usage.job is not None else ""
    for _, message in found:
        warn(job + message)


def validate(cfg: DictConfig, usage: Usage | None = None) -> Config:
    """The composed config as typed objects, every range checked and every setting that would do nothing refused
    (or warned about: ``judge``); raises UserError. ``usage``: the running Hydra job's (``Usage.from_hydra``)."""
    typed = typed_config(cfg)
    judge(typed, usage or Usage.from_hydra())
    return typed

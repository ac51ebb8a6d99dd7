"""The configuration reference (``docs/config.md``), generated from the schema so it cannot drift from it.

Every setting of every schema dataclass (``lstm_exp.runner.schema``): its dotted key, its type, its default and the
comment written beside it in the schema. ``tests/test_docs.py`` fails when the page is stale; regenerate it with
``python -c "from lstm_exp.runner.reference import write; write()"``.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
from pathlib import Path

from lstm_exp.runner import schema

PAGE = Path(__file__).resolve().parents[2] / "docs" / "config.md"
SECTIONS = [  # (title, dotted prefix, schema class), in the order a reader meets them
    ("Top level", "", schema.Config),
    ("`task=x2`", "task.", schema.X2Config),
    ("`task=sin`", "task.", schema.SinConfig),
    ("`task=char`", "task.", schema.CharConfig),
    ("`model`", "model.", schema.ModelConfig),
    ("`init`", "init.", schema.InitConfig),
    ("`optim` (every optimizer)", "optim.", schema.OptimConfig),
    ("`optim=sgd`", "optim.", schema.SGDConfig),
    ("`optim=momentum`", "optim.", schema.MomentumConfig),
    ("`optim=adagrad`", "optim.", schema.AdagradConfig),
    ("`optim=rmsprop`", "optim.", schema.RMSPropConfig),
    ("`optim=adam`", "optim.", schema.AdamConfig),
    ("`nan`", "nan.", schema.NanConfig),
    ("`tracking`", "tracking.", schema.TrackingConfig),
    ("`checkpoint`", "checkpoint.", schema.CheckpointConfig),
    ("`layout` (your own LSTM's parameters; see own_lstm.md)", "layout.", schema.LayoutConfig),
]
NESTED = (schema.TaskConfig, schema.ModelConfig, schema.InitConfig, schema.OptimConfig, schema.TrackingConfig)


def comments(cls) -> dict:
    """field name -> the comment written beside it in ``cls``'s own source (inherited fields: their class's)."""
    found = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        for line in inspect.getsource(klass).splitlines():
            match = re.match(r"\s+(\w+): [^=#]+(?:=[^#]*)?#\s*(.+)$", line)
            if match:
                found[match[1]] = match[2].strip()
    return found


def type_name(annotation) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    return text.replace("typing.", "").replace(" | None", " or null")


def default_of(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        return "(see its section)"
    else:
        return "(required)"
    if isinstance(value, enum.Enum):
        return f"`{value.name}`"
    if value is None:
        return "`null`"
    if value == "???":
        return "(each option's)"
    return f"`{value}`"


def choices(annotation: str) -> str:
    """The options of an enum-typed field (``Reduction`` -> mean, sum)."""
    name = annotation.removesuffix(" or null")
    kind = getattr(schema, name, None)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return ", ".join(f"`{m.name}`" for m in kind)
    return ""


def section(title: str, prefix: str, cls) -> list[str]:
    notes = comments(cls)
    own = [f for f in dataclasses.fields(cls) if cls is not schema.Config or f.name not in ("task", "model", "init")]
    if cls is not schema.OptimConfig and issubclass(cls, schema.OptimConfig):
        own = [f for f in own if f.name not in {g.name for g in dataclasses.fields(schema.OptimConfig)}]
    own = [f for f in own if f.name != "name" or cls is schema.LayoutConfig]  # a task's, an optimizer's: its choice
    lines = [f"## {title}", "", "| setting | type | default | meaning |", "|---|---|---|---|"]
    for f in own:
        annotation = type_name(f.type)
        nested = any(t.__name__ in annotation for t in NESTED) or f.name in ("nan", "checkpoint", "tracking", "layout")
        if nested and cls is schema.Config:
            continue
        options = choices(annotation)
        meaning = notes.get(f.name, "")
        if options:
            meaning = f"{meaning} ({options})" if meaning else options
        lines.append(f"| `{prefix}{f.name}` | {annotation} | {default_of(f)} | {meaning.replace('|', chr(92) + '|')} |")
    if len(lines) == 4:
        return [f"## {title}", "", "No settings of its own.", ""]
    return [*lines, ""]


GROUPS = [  # (config group, what choosing it does), in the order a reader meets them
    ("task", "the task: data, loss and its own settings below"),
    ("init", "the weight scheme (sets init.scheme)"),
    ("optim", "the optimizer, with its own settings below"),
    ("layout", "how your own LSTM's parameters map onto the core's (with model.impl; see own_lstm.md)"),
    ("experiment", "a seed case's own setup; each file's header says what the case reported and what fixes it"),
    ("hparams_search", "an Optuna search over lr, clip and init (with -m; see sweeps.md)"),
]
CONF = PAGE.parents[1] / "conf"


def groups() -> list[str]:
    """The config groups and their options, read from ``conf/`` (an option is a YAML file of the group)."""
    lines = ["## Config groups", "", "| group | options | what it chooses |", "|---|---|---|"]
    for group, meaning in GROUPS:
        options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
        lines.append(f"| `{group}` | {', '.join(f'`{o}`' for o in options)} | {meaning} |")
    launchers = (
        "`hydra/launcher=` chooses where a sweep's jobs run: `pool` (lstm_exp's, the default), Hydra's `basic` and "
        "`joblib`, `slurm` or `submitit_local` (the `slurm` extra), `ray` or `ray_cluster` (the `ray` extra)."
    )
    return [*lines, "", launchers, ""]


def page() -> str:
    """The whole reference page."""
    head = [
        "# Configuration reference",
        "",
        "Every setting is a Hydra override (`python -m lstm_exp optim.clip=6 seed=3`); `python -m lstm_exp --cfg job`",
        "prints the composed config. A misspelt key, a wrong type or an out-of-range value stops the run before it",
        "starts, with one line naming the key. This page is generated from the schema (`lstm_exp/runner/schema.py`)",
        "by `lstm_exp/runner/reference.py`; a test fails when it is stale.",
        "",
    ]
    body = groups() + [line for title, prefix, cls in SECTIONS for line in section(title, prefix, cls)]
    return "\n".join(head + body).rstrip() + "\n"


def write() -> Path:
    PAGE.write_text(page(), encoding="utf-8")
    return PAGE

"""The configuration reference (``docs/config.md``), generated from the schema so it cannot drift from it.

Every setting of every schema dataclass (``lstm_exp.runner.schema``): its dotted key, its type, its default, its valid
values (``ranges.RANGES``) and the comment written beside it in the schema; then the settings that do nothing in some
configs (``validation.DEAD``) and what is said of them. The config groups listed here (``groups.GROUPS``) are also
``--help``'s. ``tests/test_docs.py`` fails when
the page is stale; regenerate it with ``python -c "from lstm_exp.runner.reference import write; write()"``.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
from pathlib import Path

from lstm_exp.runner import schema
from lstm_exp.runner.groups import GROUPS, LAUNCHERS, options
from lstm_exp.runner.ranges import RANGES
from lstm_exp.runner.validation import DEAD

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
    lines = [f"## {title}", "", "| setting | type | default | valid | meaning |", "|---|---|---|---|---|"]
    for f in own:
        annotation = type_name(f.type)
        nested = any(t.__name__ in annotation for t in NESTED) or f.name in ("nan", "checkpoint", "tracking", "layout")
        if nested and cls is schema.Config:
            continue
        options = choices(annotation)
        meaning = notes.get(f.name, "")
        if options:
            meaning = f"{meaning} ({options})" if meaning else options
        valid = RANGES[prefix + f.name].values if prefix + f.name in RANGES else ""
        meaning = meaning.replace("|", chr(92) + "|")
        lines.append(f"| `{prefix}{f.name}` | {annotation} | {default_of(f)} | {valid} | {meaning} |")
    if len(lines) == 4:
        return [f"## {title}", "", "No settings of its own.", ""]
    return [*lines, ""]


def groups() -> list[str]:
    """The config groups and their options, read from ``conf/`` (an option is a YAML file of the group)."""
    lines = ["## Config groups", "", "| group | options | what it chooses |", "|---|---|---|"]
    for group, meaning in GROUPS:
        lines.append(f"| `{group}` | {', '.join(f'`{o}`' for o in options(group))} | {meaning} |")
    launchers = "`hydra/launcher=` chooses where a sweep's jobs run: " + re.sub(
        r"\b(pool|basic|joblib|slurm|submitit_local|ray_cluster|ray)\b", r"`\1`", LAUNCHERS
    )
    return [*lines, "", launchers + ".", ""]


def dead_settings() -> list[str]:
    """The table of ``validation.DEAD``: rules saying the same of several keys make one row."""
    rows: dict[tuple, list[str]] = {}
    for rule in DEAD:
        said = "warned" if rule.warn_only else "refused"
        who = "set on the command line" if rule.explicit else "set (on the command line or by a preset)"
        rows.setdefault((rule.dead_when, said, who), []).append(f"`{rule.key}`")
    lines = [
        "## Settings that do nothing",
        "",
        "A setting that would have no effect in the composed config is refused in one line naming it, or only warned",
        "about where refusing would stand in the way of a legitimate command; under `-m` every one is only a warning",
        "naming the job (a sweep crosses settings: `optim.clip=0,6 optim.clip_mode=state` holds its no-clip baseline).",
        "A value left at its default is never judged; a resume is not judged again.",
        "",
        "| setting | does nothing when | when | single run |",
        "|---|---|---|---|",
    ]
    lines += [f"| {', '.join(keys)} | {when} | {who} | {said} |" for (when, said, who), keys in rows.items()]
    not_judged = (
        "Not judged, because they act: `log_every`, `eval_every`, `tracking.log_every` or `task.sample_every` above "
        "`steps` (each still acts at the first or the last step); `init.forget_bias`, `init.bias` and `init.output` "
        "(with every scheme); `nan.history` and `nan.loss_ratio` with any `nan.policy` (the first divergence is "
        "explained and marked whatever the policy). Not judged, because it cannot be known from the config: `init.*` "
        "with a `model.impl` that has its own `init_params` (known once its code is loaded); nor `progress` (a sweep "
        "turns the bar off itself). `hydra.launcher.n_jobs` must be >= 1 or "
        "-1 (one job per core) and `hydra.launcher.timeout` > 0 or null; the search sweeper's `n_jobs` and `n_trials` "
        ">= 1: a sweep that breaks one is refused before it starts."
    )
    return [*lines, "", not_judged, ""]


def page() -> str:
    """The whole reference page."""
    head = [
        "# Configuration reference",
        "",
        "Every setting is a Hydra override (`python -m lstm_exp optim.clip=6 seed=3`); `python -m lstm_exp --cfg job`",
        "prints the composed config. A misspelt key, a wrong type, a value outside its valid range or a setting that",
        "would do nothing (see the last section) stops the run before it starts, with one line naming the key. This",
        "page is generated from the schema (`lstm_exp/runner/schema.py`)",
        "by `lstm_exp/runner/reference.py`; a test fails when it is stale.",
        "",
    ]
    body = groups() + [line for title, prefix, cls in SECTIONS for line in section(title, prefix, cls)]
    body += dead_settings()
    return "\n".join(head + body).rstrip() + "\n"


def write() -> Path:
    PAGE.write_text(page(), encoding="utf-8")
    return PAGE

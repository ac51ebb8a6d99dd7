"""``layout=path/to/my_layout.yaml``: a layout file from the user's own folder, used like a preset.

Hydra chooses a config group's option by name from ``conf/``; a layout the user writes beside their code is not
there. Before Hydra composes anything, every ``layout=`` override whose value is a path (it ends in ``.yaml`` or
``.yml``, or names a folder) is read, stored in Hydra's ConfigStore under the file's own name, and the override
becomes ``layout=<name>``: from then on it is validated against the layout schema, recorded and swept like any
preset. A file that is missing, not YAML, or named like a preset it is not is one line naming it.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from lstm_exp.common.errors import UserError

PRESETS = Path(__file__).resolve().parents[2] / "conf" / "layout"
SCHEMA_DEFAULTS = ["/schema/layout@_here_", "_self_"]
HOW = "give layout=<preset> (conf/layout/) or layout=path/to/your_layout.yaml"


def is_path(value: str) -> bool:
    return value.endswith((".yaml", ".yml")) or "/" in value or "\\" in value


def register_file(value: str) -> str:
    """Store the layout file ``value`` in Hydra's ConfigStore; the name to choose it by."""
    path = Path(value).expanduser()
    if not path.is_file():
        raise UserError(f"layout={value}: no such file ({HOW})")
    name = path.stem
    preset = PRESETS / f"{name}.yaml"
    if preset.is_file() and preset.resolve() != path.resolve():
        raise UserError(f"layout={value}: its name '{name}' is a built-in preset's; rename the file")
    try:
        node = OmegaConf.load(path)
    except Exception as e:  # the YAML parser's own errors (scanner, parser, encoding)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"layout={value}: not a readable YAML file ({first}); {HOW}") from None
    if not OmegaConf.is_dict(node):
        raise UserError(f"layout={value}: a layout file is a YAML mapping (name, concat, gates, output, ...); {HOW}")
    node.defaults = SCHEMA_DEFAULTS  # validated against the layout schema, whatever the file says
    ConfigStore.instance().store(group="layout", name=name, node=node, provider="lstm_exp")
    return name


def resolve(overrides: list[str]) -> list[str]:
    """The overrides with every ``layout=<path>`` (or a sweep's ``layout=<path>,<preset>``) made a stored name."""
    out = []
    for arg in overrides:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+~") == "layout" and any(is_path(v) for v in value.split(",")):
            value = ",".join(register_file(v) if is_path(v) else v for v in value.split(","))
            arg = f"{key}={value}"
        out.append(arg)
    return out

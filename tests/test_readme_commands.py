"""The README's and the docs' commands run as written: every ``python -m lstm_exp ...`` line of their bash blocks
composes, through what the command line itself does before Hydra runs it (``layout_files.resolve``,
``preflight.expand_home``, ``preflight.composed``), and validates: no range error, no setting that does nothing.

A sweep (``-m``) cannot be composed whole (Hydra's ``--cfg job`` refuses ``-m``), so its jobs are: the first value of
every sweep, then each other value of each list sweep beside the others' first (a range sweep: its last value too);
its launcher and sweeper settings are checked as the sweep's start checks them (``preflight.plugin_problem``). A
sweep's job may only be warned about (``optim.clip=0,6 optim.clip_mode=state`` holds its no-clip baseline); a single
run may not even be warned about. Composition reads no file a command names (a corpus, a model's code), so
``~/books/alice.txt`` need not exist. Lines with a placeholder (``<date>``, ``...``) are skipped.
"""

import re
import shlex
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import RangeSweep
from omegaconf import open_dict

from lstm_exp.runner import layout_files
from lstm_exp.runner.preflight import composed, expand_home, plugin_problem
from lstm_exp.runner.validation import Usage, validate

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FLAGS = ("-m", "--multirun")


def bash_blocks(text: str) -> list[str]:
    """The fenced bash blocks of a markdown page, backslash continuations joined."""
    return [re.sub(r"\\\n\s*", " ", block) for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S)]


def app_commands(line: str) -> list[list[str]]:
    """The arguments of every ``python -m lstm_exp`` command of a shell line (``a && b; c``, comments dropped)."""
    words = shlex.split(line, comments=True)
    commands, current = [], []
    for word in [*words, "&&"]:
        if word in ("&&", "||", ";", "|"):
            if current[:3] == ["python", "-m", "lstm_exp"]:
                commands.append(current[3:])
            current = []
        else:
            current.append(word)
    return commands


def placeholder(args: list[str]) -> bool:
    return any("<" in a or a == "..." for a in args)


def documented() -> list:
    """(page:line, arguments) of every command the pages show."""
    found = []
    for page in PAGES:
        for block in bash_blocks(page.read_text(encoding="utf-8")):
            for line in block.splitlines():
                for args in app_commands(line):
                    if not placeholder(args):
                        found.append(pytest.param(args, id=f"{page.name}: {' '.join(args)}"[:100]))
    return found


COMMANDS = documented()


def jobs(overrides: list[str]) -> list[list[str]]:
    """A sweep's command line as jobs: every sweep at its first value, then each other value of each sweep in turn
    (a range sweep: its last value only)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    values = []
    for o in parsed:
        if not o.is_sweep_override():
            values.append([o.input_line])
            continue
        items = [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
        values.append(items[:1] + items[-1:] if isinstance(o.value(), RangeSweep) else items)
    first = [v[0] for v in values]
    return [first] + [[*first[:i], v, *first[i + 1 :]] for i, vs in enumerate(values) for v in vs[1:]]


def test_the_pages_show_the_commands_this_test_checks():
    shown = [p.values[0] for p in COMMANDS]
    assert len(shown) >= 20
    assert any(FLAGS[0] in args for args in shown) and any("task.corpus=~/books/alice.txt" in args for args in shown)


@pytest.mark.parametrize("args", COMMANDS)
def test_a_documented_command_composes_and_validates(args, capsys):
    multirun = any(a in FLAGS for a in args)
    overrides = expand_home(layout_files.resolve([a for a in args if a not in FLAGS]))
    assert not [a for a in overrides if a.startswith("-")], "a flag this test does not know"
    each = jobs(overrides) if multirun else [overrides]
    if multirun:
        assert plugin_problem(composed(each[0], hydra=True).hydra) is None
    for job in each:
        cfg = composed(job)
        validate(cfg, Usage.of(job, multirun))  # raises UserError for a range or a refused setting
    if not multirun:
        assert capsys.readouterr().err == "", "a documented single run is warned about"


def test_jobs_takes_each_value_of_a_list_sweep_and_the_ends_of_a_range():
    assert jobs(["task=sin", "seed=range(0,20)", "optim.clip=0,1,5"]) == [
        ["task=sin", "seed=0", "optim.clip=0"],
        ["task=sin", "seed=19", "optim.clip=0"],
        ["task=sin", "seed=0", "optim.clip=1"],
        ["task=sin", "seed=0", "optim.clip=5"],
    ]


def test_a_command_with_a_setting_that_does_nothing_would_fail_this_test():
    """The check above can fail: a documented single run with a dead setting is refused."""
    from lstm_exp.common.errors import UserError

    with pytest.raises(UserError, match="optim.clip_mode=value does nothing without optim.clip"):
        validate(composed(["optim.clip_mode=value"]), Usage.of(["optim.clip_mode=value"]))


def test_a_sweep_composes_without_its_hydra_node_for_the_job():
    cfg = composed(["task=sin"], hydra=True)
    with open_dict(cfg):
        del cfg["hydra"]
    assert validate(cfg).task.name == "sin"


def test_shell_lines_are_split_into_the_apps_commands():
    line = "pip install -e . && python -m lstm_exp task=sin 'seed=range(0,2)'  # a comment; python -m lstm_exp x=1"
    assert app_commands(line) == [["task=sin", "seed=range(0,2)"]]
    assert app_commands("python -m lstm_exp.report --by optim.clip") == []

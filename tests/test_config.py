"""Composition: every task x optimizer x init composes and trains; bad overrides fail before training."""

import contextlib
import dataclasses
import io
import itertools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from lstm_exp.common.errors import UserError
from lstm_exp.runner import train

CONF = Path(__file__).resolve().parents[1] / "conf"
TASKS = ["x2", "sin", "char"]
OPTIMIZERS = ["sgd", "momentum", "adagrad", "rmsprop", "adam"]
INITS = ["xavier", "normal", "randn", "he", "orthogonal"]
SMALL = ["steps=3", "batch_size=2", "model.hidden=8", "log_every=1", "eval_every=2"]
SMALL_TASK = {
    "x2": ["task.timesteps=10"],
    "sin": ["task.seq_len=8"],
    "char": ["task.seq_len=8", "task.sample_length=5"],
}


@pytest.mark.parametrize("task,opt,init", list(itertools.product(TASKS, OPTIMIZERS, INITS)))
def test_every_task_optimizer_and_init_composes_and_trains(make_cfg, task, opt, init):
    cfg = make_cfg(f"task={task}", f"optim={opt}", f"init={init}", *SMALL, *SMALL_TASK[task])
    assert (cfg.task.name, cfg.optim.name, cfg.init.scheme.name) == (task, opt, init)
    result = train.run(cfg)
    assert result.steps == 3
    assert np.isfinite(result.losses).all()


@pytest.mark.parametrize("preset", ["case000_char", "case001_x2", "case002_sin"])
def test_seed_presets_compose(make_cfg, preset):
    cfg = make_cfg(f"experiment={preset}")
    assert cfg.optim.name == "sgd" and cfg.optim.clip is None
    assert cfg.task.reduction.name == "sum" and cfg.batch_size == 1


def test_seed000_preset_sets_what_the_question_describes(make_cfg):
    cfg = make_cfg("experiment=case000_char")
    assert (cfg.model.hidden, cfg.task.seq_len, cfg.optim.lr, cfg.steps) == (100, 100, 0.1, 300)
    assert (cfg.init.scheme.name, cfg.init.bias.name) == ("he", "randn")


@pytest.mark.parametrize("override", ["optim.clipp=6", "optim.lr=abc", "task=sine", "mode=fit", "optim.beta=0.5"])
def test_bad_override_fails_at_composition(make_cfg, override):
    with pytest.raises((HydraException, OmegaConfBaseException)):
        make_cfg(override)


@pytest.mark.parametrize(
    "override,message",
    [
        ("optim.lr=-0.1", "optim.lr=-0.1: must be > 0"),
        ("model.hidden=0", "model.hidden=0: must be > 0"),
        ("batch_size=0", "batch_size=0: must be > 0"),
        ("optim.clip=-1", "optim.clip=-1.0: must be >= 0"),
    ],
)
def test_out_of_range_value_fails_validation_naming_the_key(make_cfg, override, message):
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        make_cfg(override)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "lstm_exp", *args], capture_output=True, text=True, timeout=120)


def test_cli_reports_a_range_error_in_one_line_and_exits_non_zero(tmp_path):
    proc = run_cli("optim.lr=-1", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: optim.lr=-1.0: must be > 0"
    assert "Traceback" not in proc.stderr


def test_cli_reports_a_misspelt_key_without_a_traceback(tmp_path):
    proc = run_cli("optim.clipp=6", f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0
    assert "optim.clipp" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_cli_gradcheck_passes_for_each_task(tmp_path, task):
    proc = run_cli("mode=gradcheck", f"task={task}", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gradient check: all tensors pass" in proc.stdout


def test_every_option_list_of_the_schema_is_its_registry():
    from lstm_exp.core import faults, heads, init, optim
    from lstm_exp.runner import schema
    from tasks import TASKS

    assert [m.name for m in schema.InitScheme] == list(init.SCHEMES)
    assert [m.name for m in schema.BiasInit] == list(init.BIAS_INITS)
    assert [m.name for m in schema.OutputInit] == list(init.OUTPUT_INITS)
    assert [m.name for m in schema.Reduction] == list(heads.REDUCTIONS)
    assert [m.name for m in schema.ClipMode] == list(optim.CLIP_MODES)
    assert [m.name for m in schema.Fault] == list(faults.PIECEWISE)
    assert set(schema.OPTIM_SCHEMAS) == set(optim.OPTIMIZERS)
    assert set(schema.TASK_SCHEMAS) == set(TASKS)


def test_every_config_group_option_has_a_yaml_file_and_no_more():
    from lstm_exp.core import optim
    from lstm_exp.runner import schema
    from tasks import TASKS

    conf = Path(__file__).resolve().parents[1] / "conf"
    assert {p.stem for p in (conf / "optim").glob("*.yaml")} == set(optim.OPTIMIZERS)
    assert {p.stem for p in (conf / "task").glob("*.yaml")} == set(TASKS)
    assert {p.stem for p in (conf / "init").glob("*.yaml")} <= {m.name for m in schema.InitScheme}


@pytest.mark.parametrize(
    "old,new", [("seed000_char", "case000_char"), ("seed001_x2", "case001_x2"), ("seed002_sin", "case002_sin")]
)
def test_the_old_preset_names_compose_exactly_the_renamed_presets(make_cfg, old, new):
    assert make_cfg(f"experiment={old}", typed=False) == make_cfg(f"experiment={new}", typed=False)


# ---- every numeric setting has its range; every setting that would do nothing is said ----

NEW_RANGES = [  # (overrides, the line's start): a value each new range refuses
    (["nan.loss_ratio=-1"], "nan.loss_ratio=-1.0: must be 0 (off) or > 1"),
    (["nan.loss_ratio=0.5"], "nan.loss_ratio=0.5: must be 0 (off) or > 1"),
    (["converge_ratio=2"], "converge_ratio=2.0: must be in (0, 1)"),
    (["converge_ratio=0"], "converge_ratio=0.0: must be in (0, 1)"),
    (["optim=momentum", "optim.beta=1"], "optim.beta=1.0: must be in [0, 1)"),
    (["optim=momentum", "optim.beta=-0.1"], "optim.beta=-0.1: must be in [0, 1)"),
    (["optim=rmsprop", "optim.decay=1.5"], "optim.decay=1.5: must be in [0, 1)"),
    (["optim=adam", "optim.b1=1"], "optim.b1=1.0: must be in [0, 1)"),
    (["optim=adam", "optim.b2=-1"], "optim.b2=-1.0: must be in [0, 1)"),
    (["optim=adam", "optim.eps=0"], "optim.eps=0.0: must be > 0"),
    (["optim=adagrad", "optim.eps=-1e-8"], "optim.eps=-1e-08: must be > 0"),
    (["optim=rmsprop", "optim.eps=inf"], "optim.eps=inf: must be a finite number"),
    (["optim.clip=inf"], "optim.clip=inf: must be a finite number"),
    (["blas_threads=0"], "blas_threads=0: must be > 0"),
    (["seed=4294967296"], "seed=4294967296: must be >= 0 and < 2**32"),
    (["init.forget_bias=nan"], "init.forget_bias=nan: must be a finite number"),
    (["init=normal", "init.std=inf"], "init.std=inf: must be a finite number"),
    (["task=x2", "task.width=0"], "task.width=0: must be > 0"),
    (["task=x2", "task.noise=-0.1"], "task.noise=-0.1: must be >= 0"),
    (["task=sin", "task.period=inf"], "task.period=inf: must be a finite number"),
    (["task=char", "task.temperature=0"], "task.temperature=0.0: must be > 0"),
    (["task=char", "task.max_corpus_mb=inf", "task.corpus=x.txt"], "task.max_corpus_mb=inf: must be a finite number"),
    (["nan.history=0"], "nan.history=0: must be > 0"),
    (["tracking.log_every=0"], "tracking.log_every=0: must be > 0"),
    (["checkpoint.every=-1"], "checkpoint.every=-1: must be >= 0"),
]


@pytest.mark.parametrize("overrides,line", NEW_RANGES, ids=[" ".join(o) for o, _ in NEW_RANGES])
def test_a_value_out_of_its_range_is_refused_in_one_line_naming_the_key(make_cfg, overrides, line):
    with pytest.raises(UserError) as refused:
        make_cfg(*overrides)
    message = str(refused.value)
    assert message.startswith(line) and "\n" not in message


def test_every_numeric_setting_of_every_schema_has_a_range_and_every_range_a_setting():
    from lstm_exp.runner import ranges, reference

    numeric = {
        prefix + f.name
        for _, prefix, cls in reference.SECTIONS
        for f in dataclasses.fields(cls)
        if re.search(r"\b(int|float)\b", str(f.type))
    }
    assert numeric == set(ranges.RANGES)


def test_the_values_at_the_edges_of_the_ranges_are_accepted(make_cfg):
    make_cfg("nan.loss_ratio=0", "converge_ratio=0.99", "optim=momentum", "optim.beta=0", "seed=4294967295")
    make_cfg("nan.loss_ratio=1.01", "init.forget_bias=-5", "checkpoint.every=0", "task=char", "task.sample_every=0")


def validated(overrides, multirun=False):
    """validate() as a job with this command line runs it."""
    from hydra import compose, initialize_config_dir

    from lstm_exp.runner.preflight import CONF
    from lstm_exp.runner.validation import Usage, validate

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return validate(cfg, Usage.of(overrides, multirun))


DEAD = [  # (overrides, refused in a single run, the line)
    (["optim.clip_mode=value"], True, "optim.clip_mode=value does nothing without optim.clip: give optim.clip=<value>"),
    (["optim.clip_mode=state", "optim.clip=0"], True, "optim.clip_mode=state does nothing without optim.clip"),
    (["optim.clip_mode=norm", "optim.clip=null"], True, "optim.clip_mode=norm does nothing without optim.clip"),
    (["layout=seed000"], True, "layout=seed000 does nothing without model.impl"),
    (["init.std=0.5"], True, "init.std=0.5 does nothing with init=xavier: only init=normal draws N(0, std^2)"),
    (["init=he", "init.std=0.1"], True, "init.std=0.1 does nothing with init=he"),
    (["task=char", "task.sample_every=0", "task.temperature=0.5"], True, "task.temperature=0.5 does nothing with"),
    (["experiment=case000_char", "task.sample_length=50"], True, "task.sample_length=50 does nothing with task.sam"),
    (["task=char", "task.max_corpus_mb=10"], True, "task.max_corpus_mb=10.0 does nothing without task.corpus"),
    (["steps=100", "checkpoint.every=500"], True, "checkpoint.every=500 is more than steps=100: no checkpoint"),
    (["resume_failed=skip"], True, "resume_failed=skip does nothing without resume=<a sweep folder>"),
    (["tracking.enabled=false", "tracking.uri=sqlite:///x.db"], False, "tracking.uri=sqlite:///x.db does nothing"),
    (["tracking.enabled=false", "tracking.experiment=e"], False, "tracking.experiment=e does nothing with tracking"),
    (["mode=gradcheck", "tracking.enabled=false"], False, "tracking.enabled=false does nothing with mode=gradcheck"),
    (["mode=diagnose", "tracking.log_every=5"], False, "tracking.log_every=5 does nothing with mode=diagnose"),
    (["mode=gradcheck", "steps=50"], False, "steps=50 does nothing with mode=gradcheck, which trains nothing"),
    (["mode=diagnose", "model.hidden=8"], False, "model.hidden=8 does nothing with mode=diagnose"),
]


@pytest.mark.parametrize("overrides,refused,line", DEAD, ids=[" ".join(o) for o, _, _ in DEAD])
def test_a_setting_that_does_nothing_is_refused_or_warned_about_in_one_line(overrides, refused, line, capsys):
    if refused:
        with pytest.raises(UserError) as error:
            validated(overrides)
        assert str(error.value).startswith(line) and "\n" not in str(error.value)
        assert capsys.readouterr().err == ""
    else:
        validated(overrides)
        (warning,) = capsys.readouterr().err.splitlines()
        assert warning.startswith(f"warning: {line}")


@pytest.mark.parametrize("overrides,refused,line", DEAD, ids=[" ".join(o) for o, _, _ in DEAD])
def test_under_multirun_a_setting_that_does_nothing_is_only_a_warning(overrides, refused, line, capsys):
    validated(overrides, multirun=True)
    (warning,) = capsys.readouterr().err.splitlines()
    assert warning.startswith(f"warning: {line}")


@pytest.mark.parametrize(
    "overrides,line",
    [
        (["model.impl=x.py:Cell", "model.fault=dh_prev_one_gate"], "model.fault=dh_prev_one_gate: injects a bug into"),
        (["model.impl=x.py:Cell", "optim.clip=6", "optim.clip_mode=state"], "optim.clip_mode=state: clamps the core's"),
    ],
)
def test_what_the_core_alone_has_is_refused_with_a_users_model(overrides, line):
    with pytest.raises(UserError) as refused:
        validated(overrides, multirun=True)  # no sweep can make them mean something
    assert str(refused.value).startswith(line)


def test_a_sweep_job_says_which_job_it_is():
    from lstm_exp.runner.validation import Usage, dead_settings, judge

    typed = validated(["optim.clip_mode=state", "optim.clip=6"])
    assert dead_settings(typed, Usage.of(["optim.clip_mode=state"], multirun=True, job=3)) == []
    no_clip = validated(["optim.clip_mode=state", "optim.clip=0"], multirun=True)
    found = dead_settings(no_clip, Usage.of(["optim.clip=0", "optim.clip_mode=state"], multirun=True, job=3))
    assert found == [(False, found[0][1])] and found[0][1].endswith("(this job runs without it)")
    with contextlib.redirect_stderr(io.StringIO()) as err:
        judge(no_clip, Usage.of(["optim.clip=0", "optim.clip_mode=state"], multirun=True, job=3))
    assert err.getvalue().startswith("warning: job #3: optim.clip_mode=state does nothing")


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["optim.clip=6", "optim.clip_mode=state"],
        ["optim.clip=1", "optim.clip_mode=value"],
        ["init=normal", "init.std=0.5"],
        ["layout=seed000", "model.impl=examples/seed000.py:Seed000Cell"],
        ["task=char", "task.sample_every=10", "task.temperature=0.5"],
        ["task=char", "task.corpus=x.txt", "task.max_corpus_mb=1"],
        ["steps=100", "checkpoint.every=100"],
        ["steps=3", "log_every=10", "eval_every=100", "task=char", "task.sample_every=500"],  # they act at the end
        ["tracking.enabled=false"],
        ["experiment=case000_char"],
        ["experiment=case001_x2", "mode=gradcheck"],  # the preset's steps are not the user's doing
        ["mode=diagnose", "tracking.enabled=false"],
        ["resume=outputs/runs/x", "optim.clip_mode=value"],  # a resume is not judged again
    ],
    ids=" ".join,
)
def test_a_setting_that_acts_is_neither_refused_nor_warned_about(overrides, capsys):
    validated(overrides)
    assert capsys.readouterr().err == ""


GROUP_OPTIONS = [f"task={t}" for t in TASKS] + [f"optim={o}" for o in OPTIMIZERS] + [f"init={i}" for i in INITS]


@pytest.mark.parametrize("option", GROUP_OPTIONS + [f"experiment={p.stem}" for p in CONF.glob("experiment/*.yaml")])
def test_no_group_option_nor_preset_is_judged(option, capsys):
    from lstm_exp.runner.validation import Usage, dead_settings

    assert dead_settings(validated([option]), Usage.of([option])) == [] and capsys.readouterr().err == ""


def test_what_a_rule_calls_dead_does_nothing_indeed(make_cfg):
    """The measured defect: optim.clip_mode=value without optim.clip trained exactly as unclipped (and was accepted).
    Typed without the judgement, the two configs still train to the same numbers; with it, the first is refused."""
    from lstm_exp.runner.schema import typed_config

    small = ["task=sin", "steps=5", "batch_size=2", "model.hidden=4"]
    with pytest.raises(UserError, match="optim.clip_mode=value does nothing without optim.clip"):
        make_cfg(*small, "optim.clip_mode=value")
    dead = train.run(typed_config(make_cfg(*small, "optim.clip_mode=value", typed=False)))
    unclipped = train.run(make_cfg(*small))
    np.testing.assert_array_equal(dead.losses, unclipped.losses)


# ---- the command line: ~ in a value, an override Hydra cannot read, the sweep's own settings, --help ----


@pytest.mark.parametrize(
    "arg,expected",
    [
        ("task.corpus=~/books/alice.txt", "task.corpus='{home}/books/alice.txt'"),
        ("+task.corpus=~", "+task.corpus='{home}'"),
        ("model.impl=~/cells/it's.py:Cell", "model.impl='{home}/cells/it\\'s.py:Cell'"),
        ("task.corpus=a.txt,~/b.txt", "task.corpus=a.txt,'{home}/b.txt'"),
        ("~task.corpus", "~task.corpus"),  # Hydra's deletion
        ("~task.corpus=~/x", "~task.corpus=~/x"),
        ("task.corpus=a~b", "task.corpus=a~b"),  # not a home: Hydra's error says how to quote it
        ("--cfg", "--cfg"),
        ("seed=3", "seed=3"),
    ],
)
def test_a_value_starting_with_a_tilde_becomes_the_path_it_names(arg, expected):
    from lstm_exp.runner.preflight import expand_home

    assert expand_home([arg]) == [expected.format(home=str(Path.home()))]


@pytest.mark.parametrize("path", ["/h/a b.txt", "/h/it's.txt", "/h/back\\slash", "/h/tail\\", "/h/a\\'b", "/h/a,b"])
def test_a_quoted_value_reads_back_as_the_value(path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from lstm_exp.runner.preflight import quoted

    assert OverridesParser.create().parse_override(f"task.corpus={quoted(path)}").value() == path


def test_a_corpus_under_home_composes_once_expanded(make_cfg):
    from lstm_exp.runner.preflight import composition_error, expand_home

    overrides = expand_home(["task=char", "task.corpus=~/books/alice.txt"])
    assert composition_error(overrides) is None
    assert make_cfg(*overrides).task.corpus == str(Path.home() / "books" / "alice.txt")


@pytest.mark.parametrize(
    "arg,line",
    [
        (
            "task.corpus=~/books/alice.txt",
            "task.corpus=~/books/alice.txt: Hydra's override grammar cannot read '~' in a value; write "
            '"task.corpus=$HOME/books/alice.txt" (the shell expands $HOME in double quotes), or quote the value for '
            "Hydra inside the shell's quotes: \"task.corpus='~/books/alice.txt'\"",
        ),
        (
            "tracking.experiment=a~b",
            "tracking.experiment=a~b: Hydra's override grammar cannot read '~' in a value; quote the value for Hydra "
            "inside the shell's quotes: \"tracking.experiment='a~b'\"",
        ),
    ],
)
def test_an_override_hydra_cannot_read_says_how_to_write_it(arg, line):
    from lstm_exp.runner.preflight import composition_error

    assert composition_error([arg]) == line


@pytest.mark.parametrize(
    "overrides,line",
    [
        (["hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0: must be >= 1, or -1 (one job per core)"),
        (["hydra.launcher.n_jobs=-2"], "hydra.launcher.n_jobs=-2: must be >= 1, or -1 (one job per core)"),
        (["hydra.launcher.timeout=0"], "hydra.launcher.timeout=0.0: must be > 0 seconds, or null (no limit)"),
        (["hparams_search=stability", "hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs=0: must be >= 1"),
        (["hparams_search=stability", "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0: must be >= 1"),
        (["hydra.launcher.n_jobs=-1"], None),
        (["hydra.launcher.n_jobs=3", "hydra.launcher.timeout=60"], None),
        (["hparams_search=stability"], None),
        (["hydra/launcher=basic"], None),
    ],
)
def test_the_pool_launchers_and_the_search_sweepers_settings_are_checked(overrides, line):
    from lstm_exp.runner.preflight import composed, plugin_problem

    problem = plugin_problem(composed(overrides, hydra=True).hydra)
    assert problem is None if line is None else problem.startswith(line)


def test_help_says_what_lstm_exp_is_and_lists_the_groups_a_user_chooses():
    from lstm_exp.runner import groups

    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("lstm_exp: a bench for studying how hand-written LSTMs train and why they blow up.")
    assert "schema/" not in text and "powered by Hydra" not in text and "__main__" not in text
    assert "python -m lstm_exp -m experiment=case000_char" in text and "mode=diagnose" in text
    for group, _ in groups.GROUPS:
        assert f"\n  {group} " in text
        assert all(option in text for option in groups.options(group))
    assert "hydra/launcher" in text and "pool" in text
    assert all(where in text for where in ("docs/config.md", "docs/running.md", "--cfg job"))


def test_the_command_line_takes_a_corpus_under_home_as_written(tmp_path):
    import os

    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "alice.txt").write_text("Alice was beginning to get very tired. " * 20, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "lstm_exp", "task=char", "task.corpus=~/books/alice.txt", "--cfg", "job"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    assert f"corpus: {tmp_path}/books/alice.txt" in proc.stdout


@pytest.mark.parametrize(
    "overrides,line",
    [
        (["optim.clip_mode=value"], "optim.clip_mode=value does nothing without optim.clip"),
        (["optim.lr=-1"], "optim.lr=-1.0: must be > 0"),
        (["+optim.clipp=6"], "unknown setting optim.clipp (did you mean optim.clip?)"),
        (["tracking.enabled=false", "tracking.uri=sqlite:///x.db"], None),  # a warning: the run says it
        (["resume=outputs/runs/x", "optim.clip_mode=value"], None),  # judged when the run started
        (["-m", "optim.clip_mode=value"], None),  # a sweep's jobs are judged each in its own process
    ],
)
def test_preflight_refuses_what_the_run_would_refuse_before_hydra_makes_its_folder(overrides, line, capsys):
    from lstm_exp.runner.preflight import composition_error

    problem = composition_error(overrides)
    assert problem is None if line is None else problem.startswith(line)
    assert capsys.readouterr().err == ""


def test_a_refused_run_leaves_no_folder(tmp_path):
    proc = run_cli("optim.clip_mode=value", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2 and proc.stderr.startswith("error: optim.clip_mode=value does nothing")
    assert not (tmp_path / "run").exists()

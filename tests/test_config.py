"""Composition: every task x optimizer x init composes and trains; bad overrides fail before training."""

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from lstm_exp.common.errors import UserError
from lstm_exp.runner import train

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

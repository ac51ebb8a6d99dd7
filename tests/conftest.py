"""Shared fixtures: compose configs the way the app does, from the real conf/ directory."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from lstm_exp.runner.schema import register
from lstm_exp.runner.validation import validate

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="session")
def make_cfg():
    """compose(overrides) -> the validated config object, as ``python -m lstm_exp`` would build it."""
    register()

    def _make(*overrides, typed=True):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=["progress=false", *overrides])
        return validate(cfg) if typed else cfg

    return _make


class App:
    """``python -m lstm_exp`` in a subprocess, run from a folder the way a user runs it (MLflow's default store
    lands in that folder); ``progress=false`` always."""

    ROOT = Path(__file__).resolve().parents[1]

    @staticmethod
    def run(cwd, *overrides, timeout=600) -> subprocess.CompletedProcess:
        flags = [o for o in overrides if o.startswith("-")]  # Hydra's flags (-m) go before the overrides
        cmd = [sys.executable, "-m", "lstm_exp", *flags, "progress=false", *(o for o in overrides if o not in flags)]
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)

    def multirun(self, cwd, *overrides, timeout=600) -> subprocess.CompletedProcess:
        return self.run(cwd, "-m", "hydra.sweep.dir=outputs/sweep", *overrides, timeout=timeout)


@pytest.fixture(scope="session")
def app():
    """The CLI as a user runs it (see App)."""
    return App()


@pytest.fixture(scope="session")
def conf_dir() -> Path:
    """The project's conf/ folder."""
    return CONF


@pytest.fixture(scope="session")
def step_metrics() -> set:
    """The health metrics the core's training loop logs at every logged step."""
    return {
        "grad_norm",
        "grad_norm_clipped",
        "clip_fraction",
        "max_abs_c",
        "gate_saturation",
        "param_norm",
        "update_ratio",
        "lr",
        "steps_per_sec",
        "eval_loss",
    }

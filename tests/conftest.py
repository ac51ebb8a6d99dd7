"""Shared fixtures: compose configs the way the app does, from the real conf/ directory."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from lstm_exp.schema import register, validate

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

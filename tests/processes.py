"""Helpers for tests that drive ``python -m lstm_exp`` as a real process and read the store it writes."""

import subprocess
import sys
import time

from mlflow.tracking import MlflowClient


def start(cwd, *overrides, **popen) -> subprocess.Popen:
    """``python -m lstm_exp`` with ``overrides`` in ``cwd``, its output captured as text."""
    flags = [o for o in overrides if o.startswith("-")]  # Hydra's flags (-m) go before the overrides
    cmd = [sys.executable, "-m", "lstm_exp", *flags, "progress=false", *(o for o in overrides if o not in flags)]
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def wait_for(predicate, timeout=60.0) -> bool:
    """Whether ``predicate()`` came true within ``timeout`` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def runs(uri) -> list:
    """Every run of every experiment in the store at ``uri``."""
    client = MlflowClient(uri)
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]

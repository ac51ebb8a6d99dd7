"""``resume=<run dir | checkpoint file | MLflow run id>``: find the checkpoint, the run's own config, and
the MLflow run to continue."""

from __future__ import annotations

import json
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lstm_exp.common.errors import UserError
from lstm_exp.runner.checkpoint import FILENAME, Checkpoint, load
from lstm_exp.runner.context import STATUS_FILE
from lstm_exp.runner.schema import restore

RUN_ID = re.compile(r"[0-9a-f]{32}")  # MLflow's run ids


def _run_dir_from_mlflow(target: str, uri: str | None) -> Path:
    not_found = UserError(
        f"resume={target}: not a run directory, a checkpoint file, or an MLflow run id in the "
        f"tracking store; give the run's output directory (outputs/...)"
    )
    default_store = Path("mlflow.db")
    if not RUN_ID.fullmatch(target) or (uri is None and not default_store.is_file()):
        raise not_found  # do not create a tracking store just to look for a run in it
    from lstm_exp.tracking.store import connect

    client = connect(uri)
    try:
        run = client.get_run(target)
    except Exception:
        raise not_found from None
    run_dir = run.data.tags.get("run.dir")
    if not run_dir:
        raise UserError(f"resume={target}: MLflow run {target} has no run.dir tag (not started by lstm_exp)")
    return Path(run_dir)


def locate(target: str, uri: str | None) -> tuple[Path, Checkpoint, DictConfig]:
    """(run directory, checkpoint, the run's composed config) for ``resume=target``; UserError if not ours."""
    path = Path(target).expanduser()
    if path.is_file():
        run_dir, ckpt_path = path.parent, path
    elif path.is_dir():
        run_dir, ckpt_path = path, path / FILENAME
    else:
        run_dir = _run_dir_from_mlflow(target, uri)
        ckpt_path = run_dir / FILENAME
    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise UserError(f"resume={target}: '{run_dir}' is not an lstm_exp run directory (no .hydra/config.yaml)")
    if not ckpt_path.is_file():
        raise UserError(
            f"resume={target}: no {FILENAME} in '{run_dir}' (written every checkpoint.every steps "
            f"and on Ctrl-C / SIGTERM)"
        )
    try:
        ckpt = load(ckpt_path)
    except ValueError as e:
        raise UserError(f"resume={target}: {e}") from None
    return run_dir, ckpt, restore(OmegaConf.load(config_file))


DONE = ("converged", "finished", "diverged_nan", "diverged_loss")  # outcomes after which nothing is left to run


def finished_outcome(run_dir: Path, ckpt: Checkpoint, config: DictConfig) -> str | None:
    """The outcome of a run that has nothing left to do (its status file says it ended, or its checkpoint is
    of the last step), else None."""
    status = run_dir / STATUS_FILE
    try:
        outcome = json.loads(status.read_text()).get("outcome") if status.is_file() else None
    except (OSError, ValueError):
        outcome = None
    if outcome in DONE:
        return outcome
    return "finished" if ckpt.step + 1 >= int(config.steps) else None


def reopen_run(tracking_cfg, run_id: str, run_dir=None):
    """The MLflow run a checkpoint belongs to, set RUNNING again to take the rest of the metrics."""
    from lstm_exp.common.ownership import owner_tags
    from lstm_exp.tracking.run import MlflowRun
    from lstm_exp.tracking.store import connect

    client = connect(tracking_cfg.uri)
    client.update_run(run_id, status="RUNNING")
    live = MlflowRun(client, run_id, tracking_cfg.log_every, run_dir)
    live.set_tags({"outcome": "running", "resumed": "true", **owner_tags()})  # this process owns it now
    return live

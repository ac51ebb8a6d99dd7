"""``resume=<run dir | checkpoint file | MLflow run id>``: find the checkpoint, the run's own config, and
the MLflow run to continue."""

from __future__ import annotations

import json
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lstm_exp.common.credentials import is_masked
from lstm_exp.common.errors import UserError
from lstm_exp.common.ownership import owner_tags
from lstm_exp.runner.checkpoint import FILENAME, Checkpoint, load
from lstm_exp.runner.context import STATUS_FILE
from lstm_exp.runner.schema import restore
from lstm_exp.tracking.run import MlflowRun
from lstm_exp.tracking.store import connect, resolve_uri, sqlite_file

RUN_ID = re.compile(r"[0-9a-f]{32}")  # MLflow's run ids


def _run_dir_from_mlflow(target: str, uri: str | None) -> Path:
    not_found = UserError(
        f"resume={target}: not a run directory, a checkpoint file, or an MLflow run id in the "
        f"tracking store; give the run's output directory (outputs/...)"
    )
    default_store = Path("mlflow.db")
    if not RUN_ID.fullmatch(target) or (uri is None and not default_store.is_file()):
        raise not_found  # do not create a tracking store just to look for a run in it

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


def store_of(tracking_cfg, ckpt: Checkpoint, asked: str | None) -> str | None:
    """Where the run's MLflow run is: the store given now (``tracking.uri=``: it moved), else the one the checkpoint
    recorded (whatever folder the resume is launched from), else the run's config's."""

    if asked:
        return asked
    if ckpt.store and not is_masked(ckpt.store):
        return ckpt.store
    return tracking_cfg.uri


def reopen_run(tracking_cfg, ckpt: Checkpoint, run_dir, asked: str | None = None):
    """The MLflow run a checkpoint belongs to, set RUNNING again to take the rest of the metrics; UserError in one
    line if its store or the run is not where it was (never a new, empty store made by looking)."""

    uri = store_of(tracking_cfg, ckpt, asked)
    moved = f"if the store moved, resume with tracking.uri=<where it is now> (resume={run_dir})"
    local = sqlite_file(resolve_uri(uri))
    if local is not None and not local.is_file():
        raise UserError(f"the run's MLflow store {local} is not there; {moved}")
    client = connect(uri)
    try:
        experiment_id = client.get_run(ckpt.run_id).info.experiment_id
    except Exception:
        raise UserError(f"MLflow run {ckpt.run_id} is not in {client.tracking_uri}; {moved}") from None
    client.update_run(ckpt.run_id, status="RUNNING")
    live = MlflowRun(client, ckpt.run_id, tracking_cfg.log_every, run_dir, experiment_id)
    live.set_tags({"outcome": "running", "resumed": "true", **owner_tags()})  # this process owns it now
    return live


# what a resume may be given beside resume=: how it runs, not what it computes (steps: see extended_steps)
HOW_IT_RUNS = ("resume", "progress", "tracking.uri", "blas_threads", "hydra.", "hydra/")


def changed_settings(overrides: list[str], original: DictConfig) -> dict:
    """The settings ``overrides`` give a value other than the run's own (``key -> value``), those that only say how
    it runs left out."""
    changed = {}
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if key.startswith(HOW_IT_RUNS):
            continue
        try:
            was = OmegaConf.select(original, key, throw_on_missing=False)
        except Exception:
            was = None
        if str(was) != value and not (was is None and value == "null"):
            changed[key] = (value, was)
    return changed


def extended_steps(overrides: list[str], original: DictConfig, ckpt: Checkpoint, done: str | None) -> int | None:
    """The step count a resume extends its run to (``steps=`` larger than the run's), or None; UserError for any
    other changed setting (a resumed run computes what it was configured to) or an extension that cannot be."""
    changed = changed_settings(overrides, original)
    steps = changed.pop("steps", None)
    if changed:
        listed = ", ".join(f"{k}={new} (the run has {old})" for k, (new, old) in changed.items())
        raise UserError(f"resume= continues the run as it was configured; only steps= may change, not {listed}")
    if steps is None:
        return None
    new, old = int(steps[0]), int(original.steps)
    if done is not None and done.startswith("diverged"):
        raise UserError(f"steps={new}: the run ended {done}; there is nothing to extend")
    if new <= old:
        raise UserError(f"steps={new}: the run has {old} steps; give more to extend it")
    if done is not None and ckpt.step + 1 < old:
        raise UserError(
            f"steps={new}: the run ended at step {old - 1} but its last checkpoint is of step {ckpt.step}; runs "
            "that checkpoint at their end (checkpoint.every > 0) can be extended"
        )
    return new

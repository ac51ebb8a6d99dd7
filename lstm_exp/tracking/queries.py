"""Reading runs back from MLflow: a sweep's or an experiment's runs as a DataFrame, and the runs left RUNNING by a
process that died (``--stale``), ended FAILED on request (``--fix-stale``) — never a run whose owner is alive."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from lstm_exp.common.errors import UserError
from lstm_exp.common.ownership import owner_alive
from lstm_exp.tracking.lifecycle import end_by_id
from lstm_exp.tracking.spool import SPOOL
from lstm_exp.tracking.store import resolve_uri

# MLflow (about 1.7 s) is imported by the queries that need it.

STALE_ERROR = "process died (marked by python -m lstm_exp.report --fix-stale)"


@contextmanager
def tracking_uri(uri: str | None):
    """Point MLflow's fluent API at ``uri`` for the block (None: the project's default store, see
    ``tracking.resolve_uri``), then restore it."""
    import mlflow

    previous = mlflow.get_tracking_uri() if mlflow.tracking.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(resolve_uri(uri))
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def quote(value: str) -> str:
    """A string literal for an MLflow filter."""
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise UserError(f"cannot filter on a value with both quote characters: {value}")


def filter_string(sweep_id: str | None = None, tags: dict | None = None) -> str:
    """The MLflow filter selecting runs by sweep id and tags (dotted tag names in backquotes)."""
    wanted = dict(tags or {})
    if sweep_id is not None:
        wanted["sweep.id"] = sweep_id
    return " and ".join(f"tags.`{key}` = {quote(value)}" for key, value in wanted.items())


def column(df: pd.DataFrame, name: str) -> pd.Series:
    """A column of ``df``, or all-missing values if MLflow returned none of that name."""
    return df[name] if name in df.columns else pd.Series(None, index=df.index, dtype=object)


def drop_parents(df: pd.DataFrame) -> pd.DataFrame:
    """The runs that are not the parent run of a sweep (tag ``sweep.role=parent``)."""
    return df[column(df, "tags.sweep.role").ne("parent")]


def search(uri: str | None, experiments=None, query: str = "") -> pd.DataFrame:
    """MLflow's search_runs DataFrame for the experiments named (None: all; unknown names match nothing).

    The frame's ``attrs["tracking_uri"]`` records the store it came from.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    names = [experiments] if isinstance(experiments, str) else list(experiments or [])
    with tracking_uri(uri):
        resolved = mlflow.get_tracking_uri()
        if names:
            client = MlflowClient(resolved)
            names = [name for name in names if client.get_experiment_by_name(name) is not None]
        if experiments and not names:  # searching with no name would fall back to the default experiment
            df = pd.DataFrame(columns=["run_id", "experiment_id", "status", "start_time", "end_time"])
        else:
            df = mlflow.search_runs(
                experiment_names=names or None,
                filter_string=query,
                search_all_experiments=not names,
                output_format="pandas",
            )
    df.attrs["tracking_uri"] = resolved
    return df


def load_runs(
    uri: str | None = None, experiments=None, sweep_id: str | None = None, tags: dict | None = None
) -> pd.DataFrame:
    """The runs matching the selection as MLflow's search_runs DataFrame, without sweep parent runs.

    ``experiments``: names (a name or a list; None: every experiment). Unknown names match nothing.
    ``sweep_id``: the ``sweep.id`` tag (the sweep's output dir); ``tags``: further tags that must match.
    The frame's ``attrs["tracking_uri"]`` records the store it came from.
    """
    df = search(uri, experiments, filter_string(sweep_id, tags))
    runs = drop_parents(df).reset_index(drop=True)
    runs.attrs["tracking_uri"] = df.attrs["tracking_uri"]
    return runs


def owner_states(df: pd.DataFrame) -> pd.Series:
    """Per RUNNING run: "gone" (its owning process has exited), "alive", or "elsewhere" (another host's)."""

    owner_cols = [c for c in df.columns if c.startswith("tags.owner.")]
    states = []
    for _, row in df.iterrows():
        tags = {c.removeprefix("tags."): row[c] for c in owner_cols if pd.notna(row[c])}
        live = owner_alive(tags)
        states.append("alive" if live else "gone" if live is False else "elsewhere")
    return pd.Series(states, index=df.index, dtype=object)


def stale_runs(uri: str | None, experiments=None) -> pd.DataFrame:
    """The runs (sweep parents included) still RUNNING whose owner is gone: a job that died hard (kill -9,
    OOM, a reboot) leaves its run so. Runs of live processes, and of other hosts' processes, are left out."""
    df = search(uri, experiments, "attributes.status = 'RUNNING'")
    if df.empty:
        return df
    df = df[owner_states(df).eq("gone")]
    keep = {
        "run_id": "run_id",
        "experiment_id": "experiment_id",
        "start_time": "started",
        "tags.mlflow.runName": "run_name",
        "tags.sweep.id": "sweep_id",
        "tags.hydra.overrides": "overrides",
    }
    out = df[[c for c in keep if c in df.columns]].rename(columns=keep).reset_index(drop=True)
    dirs = column(df, "tags.run.dir").reset_index(drop=True)
    out["waiting_for_sync"] = [spooled_in(d) for d in dirs]
    return out


def spooled_in(run_dir) -> str | None:
    """The run folder of a run whose records wait in its spool (its end is there: it is no stale run), else None."""

    if not isinstance(run_dir, str) or not run_dir:
        return None
    return run_dir if (Path(run_dir) / SPOOL).is_file() else None


def end_orphans(uri: str | None, run_ids, error: str = STALE_ERROR, status: str = "FAILED") -> list[str]:
    """End the runs still RUNNING whose owner is gone, as ``status`` (FAILED or KILLED) with tags ``outcome``
    (failed or killed) and ``error``; the ids it ended."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(resolve_uri(uri))
    ended = []
    for run_id in run_ids:
        run = client.get_run(run_id)  # read again: never end a run that ended, whose owner is alive, or that waits
        if run.info.status != "RUNNING" or owner_alive(run.data.tags) is not False:  # for sync to end it
            continue
        if spooled_in(run.data.tags.get("run.dir")):
            continue
        end_by_id(client, run_id, status, error)
        ended.append(run_id)
    return ended


def delete_runs(uri: str | None, experiment: str, sweep_id: str, job: int) -> list[str]:
    """Delete (MLflow's soft delete: ``mlflow gc`` purges, the UI restores) the runs of job ``job`` of sweep
    ``sweep_id``: a job that runs again replaces its earlier attempts. The ids deleted."""
    from mlflow.tracking import MlflowClient

    found = search(uri, experiment, filter_string(sweep_id, {"sweep.job": job}))
    client = MlflowClient(resolve_uri(uri))
    ids = list(found["run_id"]) if len(found) else []
    for run_id in ids:
        client.delete_run(run_id)
    return ids

"""A tracked run: what the loop, the job, the sweep and the agent may call on it, and the run that MLflow writes.

``TrackedRun`` is the one interface; ``MlflowRun`` writes to the store from this process and the tracking agent's
``RemoteRun`` (``lstm_exp.tracking.remote_run``) from a helper process. Both share ``RunBase``: metric points buffered
and written every ``tracking.log_every`` steps, JSON and figures as files. Everything goes through ``MlflowClient``
with an explicit run id, never MLflow's global "active run": a job that crashes cannot leave a run active for the
next job of a sweep. Non-finite values never become metric points (MLflow stores NaN as 0 and clamps inf); a
divergence is recorded as tags and ``divergence.json``.

A write that fails with the store gone sends the run offline: that write and every later one go to the spool in
the run folder (``lstm_exp.tracking.spool``) and ``python -m lstm_exp.sync <run dir>`` uploads them.
``lstm_exp.tracking.lifecycle`` ends a run right on every exit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Protocol

from lstm_exp.common.credentials import mask, split
from lstm_exp.common.errors import DiskFull, UserError, first_line, warn
from lstm_exp.common.figures import pyplot
from lstm_exp.common.ownership import owner_tags
from lstm_exp.tracking.spool import Spool
from lstm_exp.tracking.store import artifact_location, connect, git_commit, patiently, resolve_uri, sqlite_file

# MLflow and pandas are imported where they are used: this module is on the path of every start-up, MLflow is not (the
# agent imports it on the other core).

MAX_KEY = 250  # MLflow's limit on param keys
MAX_VALUE = 6000  # MLflow's limit on param values (longer ones are truncated, with a marker)
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
SYSTEM_METRICS_EVERY = 2.0  # seconds between samples of MLflow's system-metrics monitor


class TrackedRun(Protocol):
    """What may be called on a tracked run (``MlflowRun`` in this process, ``RemoteRun`` through the agent)."""

    run_id: str | None  # None while a run that began offline waits for sync to create it
    experiment_id: str | None
    tracking_uri: str
    store: str | None  # the SQLite file it writes to, None for any other store
    ended: bool

    @property
    def offline(self) -> bool: ...  # its writes go to the spool

    def store_lost(self) -> bool: ...  # the SQLite file was deleted or replaced under it

    def log_metrics(self, metrics: dict, step: int) -> None: ...  # buffered; written every flush_every steps

    def flush(self) -> None: ...

    def set_tags(self, tags: dict) -> None: ...

    def clear_tags(self, keys) -> None: ...

    def log_params(self, params: dict) -> None: ...

    def log_text(self, text: str, name: str) -> None: ...

    def log_json(self, payload: dict, name: str) -> None: ...

    def log_figure(self, fig, name: str) -> None: ...

    def log_file(self, path, artifact_dir: str | None = None) -> None: ...

    def log_dir(self, path, artifact_dir: str | None = None) -> None: ...

    def system_metrics(self): ...  # a context manager: MLflow's monitor over a block

    def end(self, status: str) -> None: ...


def flatten_params(config: dict) -> tuple[dict, list]:
    """Dotted keys -> string values within MLflow's limits (passwords masked); (params, keys skipped as too long)."""
    import pandas as pd

    flat = pd.json_normalize(config, sep=".").iloc[0].to_dict() if config else {}
    params, skipped = {}, []
    for key, value in flat.items():
        if len(key) > MAX_KEY:
            skipped.append(key)
            continue
        text = "null" if value is None else mask(str(value))
        if len(text) > MAX_VALUE:
            marker = f"...[truncated {len(text) - MAX_VALUE + 40} chars]"
            text = text[: MAX_VALUE - len(marker)] + marker
        params[key] = text
    return params, skipped


class RunBase:
    """What both kinds of run do alike: buffer metric points and write them every ``flush_every`` steps, and log
    JSON and figures as files. A subclass writes batches (``write_points``) and files (``log_file``)."""

    def __init__(self, flush_every: int):
        self.flush_every = flush_every
        self._buffer: list = []  # (key, value, timestamp in ms, step)
        self._last_flush_step = 0
        self.ended = False

    def log_metrics(self, metrics: dict, step: int) -> None:
        now = int(time.time() * 1000)  # the time it was logged, not the time it reached the store
        self.log_points([(key, float(value), now, step) for key, value in metrics.items() if math.isfinite(value)])
        if step - self._last_flush_step >= self.flush_every:
            self.flush()
            self._last_flush_step = step

    def log_points(self, points) -> None:
        """Buffer (key, value, timestamp in ms, step) points, written by the next ``flush``."""
        self._buffer.extend(points)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def flush(self) -> None:
        """Write the buffered points, at most MLflow's 1000 per call."""
        while self._buffer:
            chunk, self._buffer = self._buffer[:MAX_METRICS_PER_BATCH], self._buffer[MAX_METRICS_PER_BATCH:]
            self.write_points(chunk)

    def write_points(self, points: list) -> None:
        raise NotImplementedError

    def log_file(self, path, artifact_dir: str | None = None) -> None:
        raise NotImplementedError

    def _log_written(self, name: str, write) -> None:
        """Artifact ``name`` (a path in the run's artifacts), written to a temporary file by ``write(path)``."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(name).name
            write(path)
            folder = str(Path(name).parent)
            self.log_file(path, folder if folder != "." else None)

    def log_text(self, text: str, name: str) -> None:
        self._log_written(name, lambda path: path.write_text(text, encoding="utf-8"))

    def log_json(self, payload: dict, name: str) -> None:
        self.log_text(json.dumps(payload, indent=2, default=str), name)

    def log_figure(self, fig, name: str) -> None:
        """A matplotlib figure as a PNG artifact (then closed)."""

        try:
            self._log_written(name, lambda path: fig.savefig(path, dpi=100))
        finally:
            pyplot().close(fig)


class MlflowRun(RunBase):
    """A run this process writes to the store. With a ``spool_dir``, a write that fails (the store went away)
    sends it offline: that write and every later one go to the spool, and training goes on."""

    def __init__(self, client, run_id: str | None, flush_every: int, spool_dir=None, experiment_id=None):
        super().__init__(flush_every)
        self.client, self.run_id = client, run_id
        self.spool_dir = spool_dir
        self.spool = None  # set once offline
        self.experiment_id = experiment_id  # known when this process created the run
        self.points_logged = 0
        self.tracking_uri = client.tracking_uri if client is not None else None  # an offline run's: set by its maker
        self.store = sqlite_file(client.tracking_uri) if client is not None else None  # watched for deletion
        self._store_id = self._file_id()

    def _file_id(self):
        """(device, inode) of the SQLite store's file, None if it is not there (or the store is no file)."""
        try:
            st = os.stat(self.store) if self.store is not None else None
        except OSError:
            return None
        return None if st is None else (st.st_dev, st.st_ino)

    def store_lost(self) -> bool:
        """Whether the SQLite file this run writes to was deleted or replaced since the run began: SQLite goes on
        writing into the deleted file without an error, so everything tracked is silently gone."""
        return self.store is not None and self._store_id is not None and self._file_id() != self._store_id

    @property
    def offline(self) -> bool:
        return self.spool is not None

    def go_offline(self, reason: str) -> None:
        """From now on every write goes to the spool in the run folder (said once, with the reason)."""

        self.spool = Spool(self.spool_dir, self.run_id, self.tracking_uri)
        warn(f"{reason}; training goes on, this run's MLflow writes are queued in {self.spool.path}")

    def _send(self, online, offline) -> None:
        """Do ``online()``; if the store is gone (or was), queue the write with ``offline(spool)`` instead."""
        if self.spool is None:
            try:
                patiently(online)  # a store another writer holds is waited for, not an outage
                return
            except Exception as e:
                if "disk is full" in str(e):  # SQLite's store, on a disk with no space left
                    raise DiskFull(f"the disk of the tracking store {self.store} is full ({first_line(e)})") from None
                if self.spool_dir is None:
                    raise
                self.go_offline(f"an MLflow write failed ({type(e).__name__}: {first_line(e)[:120]})")
        offline(self.spool)

    def write_points(self, points: list) -> None:
        from mlflow.entities import Metric

        batch = [Metric(key, value, timestamp, step) for key, value, timestamp, step in points]
        self._send(
            lambda: self.client.log_batch(self.run_id, metrics=batch, synchronous=True),
            lambda spool: spool.metrics(batch),
        )
        self.points_logged += len(batch)

    def set_tags(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        tags = {k: mask(str(v)) for k, v in tags.items() if v is not None}
        items = [RunTag(k, v) for k, v in tags.items()]

        def online():
            for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
                self.client.log_batch(self.run_id, tags=items[i : i + MAX_PARAMS_PER_BATCH], synchronous=True)

        self._send(online, lambda spool: spool.tags(tags))

    def clear_tags(self, keys) -> None:
        """Remove tags that no longer hold (an interruption's ``error`` once a resumed run has finished)."""

        def online():
            present = self.client.get_run(self.run_id).data.tags
            for key in keys:
                if key in present:
                    self.client.delete_tag(self.run_id, key)

        self._send(online, lambda spool: None)  # offline: the queued writes never set them

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]

        def online():
            for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
                self.client.log_batch(self.run_id, params=items[i : i + MAX_PARAMS_PER_BATCH], synchronous=True)

        self._send(online, lambda spool: spool.params(params))

    def log_table(self, table, name: str) -> None:
        """A DataFrame as an MLflow table artifact (shown as a table in the UI); offline, as its JSON."""
        text = table.to_json(orient="split")
        self._send(lambda: self.client.log_table(self.run_id, table, name), lambda sp: self._spool_text(sp, text, name))

    def _spool_text(self, spool, text: str, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(name).name
            path.write_text(text, encoding="utf-8")
            folder = str(Path(name).parent)
            spool.file(path, folder if folder != "." else None)

    def log_dataset(self, dataset_input) -> None:
        """What the run trained on (``lstm_exp.tracking.dataset``); best effort, never spooled (the same facts are
        in the run's params). Tried twice: jobs of a sweep that log the same dataset at once race in MLflow's
        get-or-create of the experiment's dataset (a UNIQUE constraint error), and the second try finds it."""
        if self.spool is not None:
            return
        for _ in range(2):
            try:
                self.client.log_inputs(self.run_id, datasets=[dataset_input])
                return
            except Exception as e:
                problem = e
        warn(f"the run's dataset was not logged ({type(problem).__name__}: {first_line(problem)})")

    def log_file(self, path, artifact_dir: str | None = None) -> None:
        self._send(
            lambda: self.client.log_artifact(self.run_id, str(path), artifact_dir),
            lambda spool: spool.file(path, artifact_dir),
        )

    def log_dir(self, path, artifact_dir: str | None = None) -> None:
        self._send(
            lambda: self.client.log_artifacts(self.run_id, str(path), artifact_dir),
            lambda spool: spool.file(path, str(Path(artifact_dir).parent) if artifact_dir else None),
        )

    def system_metrics(self):
        """MLflow's system-metrics monitor over a block (``system_metrics`` below)."""
        return system_metrics(self)

    def end(self, status: str) -> None:
        self.flush()
        self._send(lambda: self.client.set_terminated(self.run_id, status), lambda spool: spool.end(status))
        self.ended = True
        if self.offline:
            warn(
                f"this run's MLflow writes are queued in {self.spool.path}; upload them with: "
                f"python -m lstm_exp.sync {self.spool.path.parent}"
            )


def start_run(
    uri: str | None, experiment: str, run_name: str | None, config: dict, tags: dict, flush_every: int, spool_dir=None
) -> MlflowRun:
    """Create (or reuse) the experiment, open a run with the flattened config as params and the tags."""

    client = connect(uri)
    found = patiently(lambda: client.get_experiment_by_name(experiment))
    if found is not None and found.lifecycle_stage == "deleted":
        raise UserError(
            f"the MLflow experiment '{experiment}' in {client.tracking_uri} is deleted: restore it with "
            f"mlflow experiments restore --experiment-id {found.experiment_id}, or write elsewhere with "
            f"tracking.experiment=<name>"
        )
    experiment_id = found.experiment_id if found is not None else patiently(lambda: new_experiment(client, experiment))
    run = patiently(lambda: client.create_run(experiment_id, run_name=run_name))
    live = MlflowRun(client, run.info.run_id, flush_every, spool_dir, experiment_id)
    return _described(live, config, tags)


def new_experiment(client, name: str) -> str:
    """Create the experiment ``name`` (its artifacts beside a SQLite store); its id. Two jobs creating it at once:
    the second finds the first's."""
    try:
        return client.create_experiment(name, artifact_location=artifact_location(client.tracking_uri, name))
    except Exception:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _described(live: MlflowRun, config: dict, tags: dict) -> MlflowRun:
    """A new run's first writes: the flattened config as params, the tags, the code's git commit and its owner
    (this process, unless ``tags`` name another: the tracking agent's runs are owned by the training process)."""
    params, skipped = flatten_params(config)
    live.log_params(params)
    skipped_tag = ",".join(skipped) if skipped else None
    live.set_tags({**owner_tags(), **tags, "git.commit": git_commit(), "params.skipped": skipped_tag})
    return live


def start_offline_run(
    uri: str | None, experiment: str, run_name: str | None, config: dict, tags: dict, flush_every: int, spool_dir
) -> MlflowRun:
    """A run whose server cannot be reached as it begins: every write, from the first, goes to the spool in
    ``spool_dir``; ``python -m lstm_exp.sync <spool_dir>`` creates the run and uploads them later."""

    live = MlflowRun(None, None, flush_every, spool_dir)
    live.tracking_uri = resolve_uri(uri)
    live.spool = Spool(spool_dir, None, live.tracking_uri, create={"experiment": experiment, "run_name": run_name})
    return _described(live, config, tags)


@contextlib.contextmanager
def system_metrics(live: MlflowRun | None):
    """MLflow's own monitor (CPU, memory, disk, network as ``system/*`` metrics) while the block runs, for a
    run that is online; nothing for one that is not (the monitor writes straight to the store)."""
    if live is None or live.run_id is None or live.offline:
        yield
        return

    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # not three lines per run
    monitor = SystemMetricsMonitor(
        live.run_id, sampling_interval=SYSTEM_METRICS_EVERY, tracking_uri=live.client.tracking_uri
    )
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
        tail = monitor.aggregate_metrics()  # the samples since its last write (a short run's only ones)
        if tail and not live.offline:  # best effort: a server that went away must not fail the run
            try:
                monitor.publish_metrics(tail)
                monitor.mlflow_logger.flush()
            except Exception as e:
                warn(f"the last system metrics were not logged ({first_line(e)})")


def share_system_metrics(source: MlflowRun, others: list) -> None:
    """The ``system/*`` points ``source``'s monitor logged, logged into each of ``others`` too: runs trained in one
    process at the same time (a population's members) share one machine, so one monitor measures it for all."""
    keys = [key for key in source.client.get_run(source.run_id).data.metrics if key.startswith("system/")]
    points = [
        (m.key, m.value, m.timestamp, m.step)
        for key in keys
        for m in source.client.get_metric_history(source.run_id, key)
    ]
    for run in others:
        if points and run is not None and run is not source:
            run.log_points(points)
            run.flush()


def run_link(live: TrackedRun) -> str:
    """The address that opens this run in the MLflow UI's training view (without ``workflowType`` MLflow 3
    opens an experiment on its GenAI overview): the server's own for a tracking server (without a password in
    it), else ``mlflow ui``'s default."""
    uri = live.tracking_uri
    base = split(uri)[0].rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{live.experiment_id}/runs/{live.run_id}?workflowType=machine_learning"


def fail_run(live: TrackedRun, error: BaseException, status: str = "FAILED") -> None:
    """Record a crash (or an interrupt) with its error as a tag and the traceback as an artifact, and end the run."""
    live.set_tags(
        {
            "outcome": "failed" if status == "FAILED" else "killed",
            "error": f"{type(error).__name__}: {error}"[:MAX_VALUE],
        }
    )
    live.log_text(mask("".join(traceback.format_exception(error))), "error.txt")
    live.end(status)

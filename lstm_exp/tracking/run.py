"""MLflow: one run per job, batched metrics, flattened params, tags and artifacts.

Everything goes through ``MlflowClient`` with an explicit run id, never through MLflow's global
"active run": a job that crashes cannot leave a run active for the next job of a sweep. Metrics are
buffered and written with ``log_batch`` (one call per ``tracking.log_every`` steps; per-point
``log_metric`` costs ~10 ms each on SQLite). Non-finite values never become metric points: MLflow would
store NaN as 0 and clamp inf, and its UI has broken on them; divergences are recorded as tags and a
``divergence.json`` artifact instead.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from lstm_exp.common.credentials import mask, split
from lstm_exp.common.errors import UserError, first_line
from lstm_exp.common.ownership import owner_tags

MAX_KEY = 250  # MLflow's limit on param keys
MAX_VALUE = 6000  # MLflow's limit on param values (longer ones are truncated, with a marker)
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
# MLflow's stores by URI scheme; a database's may name its driver, as SQLAlchemy does: postgresql+psycopg2://
SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
DEFAULT_STORE = "mlflow.db"  # tracking.uri null: this SQLite file in the launch folder, named (see resolve_uri)
PROBE_TIMEOUT = 5.0  # seconds to wait for a tracking server's /health before refusing to start
# MLflow's HTTP defaults retry for minutes against a dead server; fail within seconds instead. MLflow's own
# "View run at" lines are left out: each run prints its link (without the URI's password) once, at its end
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def flatten_params(config: dict) -> tuple[dict, list]:
    """Dotted keys -> string values within MLflow's limits; returns (params, keys skipped as too long)."""
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


@functools.cache
def git_commit(cwd=None) -> str | None:
    """The commit of the working tree the run was launched from, if it is a git checkout.

    Read once per process (a git call costs ~50 ms): the jobs of a sweep share their launcher's commit.
    """
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _refuse(uri: str, problem: str) -> UserError:
    return UserError(
        f"tracking.uri={mask(uri)}: {problem}; fix the URI, leave it null for the local store "
        f"(mlflow.db here), or set tracking.enabled=false"
    )


def resolve_uri(uri: str | None) -> str:
    """The store a run writes to: ``uri``, else MLflow's ``MLFLOW_TRACKING_URI``, else ``sqlite:///`` + the
    absolute path of mlflow.db in the current folder — named, never MLflow's own fallback, which switches to
    its retired file store when an old ./mlruns folder is there."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DEFAULT_STORE}"


def check_uri(uri: str | None) -> None:
    """Refuse, before anything runs, a tracking URI that is malformed or points at nothing."""
    if uri is None:
        return
    parsed = urlparse(uri)
    scheme, _, driver = parsed.scheme.partition("+")
    if scheme == "file" or not parsed.scheme:
        raise _refuse(
            uri,
            "that is MLflow's file store, which MLflow 3 refuses (its filesystem backend is in maintenance mode; "
            "`mlflow migrate-filestore` moves old ./mlruns data into a database); for a SQLite file write "
            "sqlite:///<path>, e.g. sqlite:///mlflow.db",
        )
    if scheme not in SCHEMES or (driver and scheme in ("http", "https", "sqlite", "databricks")):
        raise _refuse(
            uri,
            f"unknown scheme '{parsed.scheme}' (expected one of {', '.join(SCHEMES)}, a database's "
            f"optionally with its driver: postgresql+psycopg2://)",
        )
    if scheme == "sqlite" and uri != "sqlite:///:memory:":
        path = sqlite_file(uri)
        folder = path.parent if path is not None else None
        if folder is None or not folder.is_dir():
            raise _refuse(uri, f"the folder of the SQLite file does not exist ({folder})")
        if not os.access(folder, os.W_OK):
            raise _refuse(uri, f"the folder of the SQLite file is not writable ({folder})")
        if not is_sqlite(path):
            raise _refuse(uri, f"{path} is not a SQLite database")
    if scheme in ("http", "https"):
        bare, user, password = split(uri)  # urllib takes no user:password@ in a URL; MLflow's client does
        request = urllib.request.Request(f"{bare.rstrip('/')}/health")
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT) as response:
                response.read()
        except OSError as e:
            reason = getattr(e, "reason", e)
            raise _refuse(uri, f"no MLflow server answers there ({reason})") from None


DEFAULT_DRIVERS = {"postgresql": "psycopg2", "mysql": "MySQLdb", "mssql": "pyodbc"}  # SQLAlchemy's defaults


def check_driver(uri: str | None) -> None:
    """Refuse a database URI whose driver module is not installed (without importing it)."""
    scheme, _, driver = urlparse(uri or "").scheme.partition("+")
    module = driver or DEFAULT_DRIVERS.get(scheme)
    if module and importlib.util.find_spec(module) is None:
        raise _refuse(uri, f'its database driver {module} is not installed (pip install -e ".[db]" for PostgreSQL)')


def is_sqlite(path: Path) -> bool:
    """Whether ``path`` is a SQLite database, or nothing yet (a missing or empty file, which MLflow fills)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return head in (b"", b"SQLite format 3\x00")


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for any other store, or SQLite in memory)."""
    path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
    return Path(path) if path and path != ":memory:" else None


def remove_sqlite(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)


def connect(uri: str | None):
    """An MlflowClient for ``uri`` (None: MLflow's default), checked to work; UserError otherwise.

    A SQLite store that does not exist yet is created here (``lstm_exp.tracking.blank_store``); if that fails, nothing
    is left.
    """
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    check_uri(uri)
    from mlflow.tracking import MlflowClient

    resolved = resolve_uri(uri)
    new_file = sqlite_file(resolved)
    if new_file is not None and (new_file.exists() or not new_file.parent.is_dir()):
        new_file = None
    created = False
    try:
        if new_file is not None:
            from lstm_exp.tracking.blank_store import create

            created = create(new_file)
        client = MlflowClient(tracking_uri=resolved)
        client.search_experiments(max_results=1)  # creates a new SQLite store's tables, once, here
    except BaseException as e:  # a Ctrl-C too: a store this call created, half-made, is removed
        if created:
            remove_sqlite(new_file)
        if not isinstance(e, Exception):
            raise
        problem = f"the store does not work ({type(e).__name__}: {str(e)[:200]})"
        if isinstance(e, ModuleNotFoundError):  # a database's driver: psycopg2, pymysql, ...
            problem += '; install the database driver, e.g. pip install -e ".[db]" for PostgreSQL'
        raise _refuse(uri or resolved, problem) from None
    return client


def warm_up() -> None:
    """Import what a run's first writes need (MLflow, its SQL store, its entities and datasets: ~1.7 s here),
    so that they do not wait for it."""
    import mlflow.data.meta_dataset  # noqa: F401
    import mlflow.entities  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    from mlflow.tracking import MlflowClient  # noqa: F401

    git_commit()


def forget_inherited_connections() -> None:
    """In a forked process: drop the database connections the parent's MLflow stores pool, without closing them
    (they are the parent's), as SQLAlchemy prescribes after ``os.fork()``; this process opens its own. Two
    processes writing through one inherited SQLite connection corrupt each other's writes."""
    loaded = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    if loaded is None:  # no store was opened before the fork
        return
    for engine in list(getattr(loaded.SqlAlchemyStore, "_engine_map", {}).values()):
        engine.dispose(close=False)


class MlflowRun:
    """A live MLflow run that the training loop logs into (implements ``train.Logger``).

    With a ``spool_dir``, a write that fails (the tracking server went away) switches the run offline:
    that write and every later one go to ``lstm_exp.tracking.spool.Spool`` in the run directory, training goes on,
    and ``python -m lstm_exp.sync <run dir>`` uploads them later.
    """

    def __init__(self, client, run_id: str | None, flush_every: int, spool_dir=None, experiment_id=None):
        self.client, self.run_id, self.flush_every = client, run_id, flush_every
        self.spool_dir = spool_dir
        self.spool = None  # set once offline
        self.experiment_id = experiment_id  # known when this process created the run
        self._buffer: list = []
        self._last_flush_step = 0
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
        """Whether the SQLite file this run writes to was deleted or replaced since the run began: SQLite
        goes on writing into the deleted file without an error, so everything tracked is silently gone."""
        return self.store is not None and self._store_id is not None and self._file_id() != self._store_id

    @property
    def offline(self) -> bool:
        return self.spool is not None

    def _send(self, online, offline) -> None:
        """Do ``online()``; if the server is gone (or was), queue the write with ``offline(spool)`` instead."""
        if self.spool is None:
            try:
                online()
                return
            except Exception as e:
                if self.spool_dir is None:
                    raise
                from lstm_exp.tracking.spool import Spool

                self.spool = Spool(self.spool_dir, self.run_id, self.client.tracking_uri)
                print(
                    f"warning: MLflow write failed ({type(e).__name__}: {str(e)[:120]}); training goes on, "
                    f"writes are queued in {self.spool.path}",
                    file=sys.stderr,
                )
        offline(self.spool)

    def log_metrics(self, metrics: dict, step: int) -> None:
        now = int(time.time() * 1000)
        self.log_points([(key, float(value), now, step) for key, value in metrics.items() if math.isfinite(value)])
        if step - self._last_flush_step >= self.flush_every:
            self.flush()
            self._last_flush_step = step

    @property
    def buffered(self) -> int:
        """Points waiting for the next ``flush``."""
        return len(self._buffer)

    def log_points(self, points) -> None:
        """Buffer (key, value, timestamp in ms, step) points, written by the next ``flush``."""
        from mlflow.entities import Metric

        self._buffer.extend(Metric(key, value, timestamp, step) for key, value, timestamp, step in points)

    def flush(self) -> None:
        """Write the buffered points, at most 1000 per call (MLflow's batch limit)."""
        while self._buffer:
            chunk, self._buffer = self._buffer[:MAX_METRICS_PER_BATCH], self._buffer[MAX_METRICS_PER_BATCH:]
            self._send(
                lambda c=chunk: self.client.log_batch(self.run_id, metrics=c, synchronous=True),
                lambda spool, c=chunk: spool.metrics(c),
            )
            self.points_logged += len(chunk)

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

    @staticmethod
    def _spool_artifact(spool, name: str, write) -> None:
        """Queue artifact ``name`` (a path in the run's artifacts), written to a file by ``write(path)``."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(name).name
            write(path)
            folder = Path(name).parent
            spool.file(path, str(folder) if folder != Path(".") else None)

    def _spool_text(self, spool, text: str, name: str) -> None:
        self._spool_artifact(spool, name, lambda path: path.write_text(text, encoding="utf-8"))

    def log_text(self, text: str, name: str) -> None:
        self._send(
            lambda: self.client.log_text(self.run_id, text, name), lambda spool: self._spool_text(spool, text, name)
        )

    def log_json(self, payload: dict, name: str) -> None:
        text = json.dumps(payload, indent=2, default=str)
        self._send(
            lambda: self.client.log_dict(self.run_id, payload, name), lambda sp: self._spool_text(sp, text, name)
        )

    def log_figure(self, fig, name: str) -> None:
        """A matplotlib figure as a PNG artifact (then closed)."""
        from lstm_exp.common.figures import pyplot

        def offline(spool):
            self._spool_artifact(spool, name, lambda path: fig.savefig(path, dpi=100))

        try:
            self._send(lambda: self.client.log_figure(self.run_id, fig, name, save_kwargs={"dpi": 100}), offline)
        finally:
            pyplot().close(fig)

    def system_metrics(self):
        """MLflow's system-metrics monitor over a block (``system_metrics`` below)."""
        return system_metrics(self)

    def log_table(self, table, name: str) -> None:
        """A DataFrame as an MLflow table artifact (shown as a table in the UI); offline, as its JSON."""
        text = table.to_json(orient="split")
        self._send(lambda: self.client.log_table(self.run_id, table, name), lambda sp: self._spool_text(sp, text, name))

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
        print(
            f"warning: the run's dataset was not logged ({type(problem).__name__}: {first_line(str(problem))})",
            file=sys.stderr,
        )

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

    def end(self, status: str) -> None:
        self.flush()
        self._send(lambda: self.client.set_terminated(self.run_id, status), lambda spool: spool.end(status))
        if self.offline:
            print(
                f"the tracking server was unreachable: this run's MLflow writes are queued in {self.spool.path}; "
                f"upload them with: python -m lstm_exp.sync {self.spool.path.parent}",
                file=sys.stderr,
            )


def artifact_folder(experiment: str) -> str:
    """The folder name of an experiment's artifacts: its name with everything but letters, digits, ``.``, ``_`` and
    ``-`` replaced, and a hash of the whole name when anything was — a name, never a path (``../../tmp/x`` is not
    a way out of the store's folder)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._-")[:100]
    if safe == experiment:
        return safe
    return f"{safe or 'experiment'}-{hashlib.sha256(experiment.encode()).hexdigest()[:8]}"


def artifact_location(uri: str | None, experiment: str) -> str | None:
    """Artifacts of an explicit SQLite store live beside it, in ``mlartifacts/<folder>`` (MLflow's default is
    ./mlruns of the current directory, wherever that is); other stores keep their own default."""
    path = sqlite_file(uri) if uri is not None else None
    if path is None:
        return None
    return (path.parent / "mlartifacts" / artifact_folder(experiment)).resolve().as_uri()


def start_run(
    uri: str | None, experiment: str, run_name: str | None, config: dict, tags: dict, flush_every: int, spool_dir=None
) -> MlflowRun:
    """Create (or reuse) the experiment, open a run with the flattened config as params and the tags."""
    client = connect(uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None and found.lifecycle_stage == "deleted":
        raise UserError(
            f"the MLflow experiment '{experiment}' in {client.tracking_uri} is deleted: restore it with "
            f"mlflow experiments restore --experiment-id {found.experiment_id}, or write elsewhere with "
            f"tracking.experiment=<name>"
        )
    experiment_id = (
        found.experiment_id
        if found is not None
        else client.create_experiment(experiment, artifact_location=artifact_location(client.tracking_uri, experiment))
    )
    run = client.create_run(experiment_id, run_name=run_name)
    live = MlflowRun(client, run.info.run_id, flush_every, spool_dir, experiment_id)
    return _described(live, config, tags)


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
    from lstm_exp.tracking.spool import Spool

    live = MlflowRun(None, None, flush_every, spool_dir)
    live.tracking_uri = resolve_uri(uri)
    live.spool = Spool(spool_dir, None, live.tracking_uri, create={"experiment": experiment, "run_name": run_name})
    return _described(live, config, tags)


def summary_metrics(result) -> dict:
    """The run's outcome as numbers, so the runs table sorts and charts by them (non-finite ones are left out)."""
    metrics = {
        "first_loss": result.first_loss,
        "final_loss": result.final_loss,
        "best_loss": result.best_loss,
        "diverged": float(result.divergence is not None),
        "train_seconds": result.wall_time,
    }
    if result.startup:  # none for a run started from Python (lstm_exp.train)
        metrics["startup_seconds"] = result.startup
    if result.final_eval is not None:
        metrics["final_eval_loss"] = result.final_eval
    if result.divergence:
        metrics["first_nan_step"] = float(result.divergence["step"])
    return metrics


def finish_run(live: MlflowRun, result, config_yaml: str, hydra_dir, title: str, description: str, curve: bool) -> None:
    """Record the outcome and the artifacts of a run that ended (finished or diverged): status FINISHED.

    ``description`` becomes the run's description in the MLflow UI; ``curve``: attach loss_curve.png (a
    sweep's jobs leave it out: the sweep's report draws every run's curve once, and MLflow charts each metric).
    """
    figure = None
    if curve:  # drawn first: a run written by the agent draws it while the agent may still be starting
        from lstm_exp.common.figures import loss_curve

        figure = loss_curve(result.losses, result.grad_norms, result.divergence, title)
    live.log_metrics(summary_metrics(result), result.steps)
    live.flush()
    live.clear_tags(["error"])  # a resumed run that ends here is no longer the interrupted one
    tags = {"outcome": result.outcome, "final_loss": f"{result.final_loss:.6g}", "mlflow.note.content": description}
    if result.divergence:
        d = result.divergence
        first = d.get("first_nonfinite") or {}
        tags.update(
            {
                "nan.first_step": d["step"],
                "nan.where": first.get("tensor", d.get("where")),
                "nan.timestep": first.get("timestep"),
                "divergence": d.get("sentence", d.get("reason")),
            }
        )
        live.log_metrics({"diverged_at_step": float(d["step"])}, d["step"])
        live.log_json(d, "divergence.json")
    live.set_tags(tags)
    live.log_text(config_yaml, "config.yaml")
    for k, text in enumerate(result.samples):
        live.log_text(text, f"samples/sample_{k:03d}.txt")
    if figure is not None:
        live.log_figure(figure, "loss_curve.png")
    if hydra_dir is not None and Path(hydra_dir).is_dir():
        live.log_dir(hydra_dir, ".hydra")
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "params.npz"
        np.savez(weights, **result.params)
        live.log_file(weights)
    live.end("FINISHED")


SYSTEM_METRICS_EVERY = 2.0  # seconds between samples of MLflow's system-metrics monitor


@contextlib.contextmanager
def system_metrics(live: MlflowRun | None):
    """MLflow's own monitor (CPU, memory, disk, network as ``system/*`` metrics) while the block runs, for a
    run that is online; nothing for one that is not (the monitor writes straight to the store)."""
    if live is None or live.run_id is None or live.offline:
        yield
        return
    import logging

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
                print(f"warning: the last system metrics were not logged ({first_line(str(e))})", file=sys.stderr)


def run_link(live: MlflowRun) -> str:
    """The address that opens this run in the MLflow UI's training view (without ``workflowType`` MLflow 3
    opens an experiment on its GenAI overview): the server's own for a tracking server, else ``mlflow ui``'s
    default."""
    experiment_id = live.experiment_id or live.client.get_run(live.run_id).info.experiment_id
    uri = live.tracking_uri
    base = split(uri)[0].rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs/{live.run_id}?workflowType=machine_learning"


def fail_run(live: MlflowRun, error: BaseException, status: str = "FAILED") -> None:
    """Record a crash (or an interrupt) with its error as a tag and the traceback as an artifact."""
    live.set_tags(
        {
            "outcome": "failed" if status == "FAILED" else "killed",
            "error": f"{type(error).__name__}: {error}"[:MAX_VALUE],
        }
    )
    live.log_text(mask("".join(traceback.format_exception(error))), "error.txt")
    live.end(status)

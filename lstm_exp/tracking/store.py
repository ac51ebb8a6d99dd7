"""The tracking store: which one a run writes to, whether it works, and where its artifacts go.

``tracking.uri`` null means ``sqlite:///mlflow.db`` in the launch folder (or ``MLFLOW_TRACKING_URI`` if set), named
explicitly; any store MLflow accepts works. A store that cannot work is refused before training, in one line; a
tracking server that does not answer is ``StoreUnreachable`` (an outage, which a sweep's job rides out by spooling,
not a typo).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import importlib.util
import logging
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from lstm_exp.common.credentials import mask, split
from lstm_exp.common.errors import UserError

# Lazy: MLflow (about 1.7 s) and SQLAlchemy; Hydra (0.2 s) is not imported before the tracking agent forks.

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


class StoreUnreachable(UserError):
    """No tracking server answers at the URI (an outage, if the sweep it belongs to reached it before)."""


LOCK_PATIENCE = 120.0  # seconds a write waits for a locked SQLite store before it counts as failed


def is_locked(error: BaseException) -> bool:
    """Whether ``error`` is SQLite's "database is locked": another writer holds the store, which is no outage."""
    return "database is locked" in str(error) or "database table is locked" in str(error)


def patiently(action, patience: float = LOCK_PATIENCE):
    """``action()``, tried again (with growing pauses) while the store is locked by another writer, for up to
    ``patience`` seconds; the lock's error is raised after that, any other error at once."""
    deadline, pause = time.monotonic() + patience, 0.05
    while True:
        try:
            return action()
        except Exception as e:
            if not is_locked(e) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(2 * pause, 2.0)


def launch_dir() -> Path:
    """The folder the program was launched from, also inside a job Hydra moved into its own folder
    (``hydra.job.chdir=true``): the default store is the launch folder's, whatever the working directory."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.cwd) if HydraConfig.initialized() else Path.cwd()


def resolve_uri(uri: str | None) -> str:
    """The store a run writes to: ``uri``, else MLflow's ``MLFLOW_TRACKING_URI``, else ``sqlite:///`` + the
    absolute path of mlflow.db in the launch folder — named, never MLflow's own fallback, which switches to
    its retired file store when an old ./mlruns folder is there."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{launch_dir() / DEFAULT_STORE}"


def source_of(uri: str | None, asked_as: str = "tracking.uri") -> tuple[str, str]:
    """(where the store was chosen, its URI): ``asked_as`` (tracking.uri, or a command's --uri),
    ``MLFLOW_TRACKING_URI`` or the default store."""
    if uri:
        return asked_as, uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return "MLFLOW_TRACKING_URI", os.environ["MLFLOW_TRACKING_URI"]
    return "the default store", resolve_uri(None)


FIXES = {
    "tracking.uri": "fix the URI, leave it null for the local store (mlflow.db in the launch folder), or set "
    "tracking.enabled=false",
    "MLFLOW_TRACKING_URI": "fix or unset the environment variable MLFLOW_TRACKING_URI, set tracking.uri=..., or set "
    "tracking.enabled=false",
    "the default store": "launch from a folder you can write, set tracking.uri=..., or set tracking.enabled=false",
    "--uri": "pass --uri with a store that works",
}


def refusal(uri: str | None, problem: str, kind: type[UserError] = UserError, asked_as="tracking.uri") -> UserError:
    """The one-line error for a store that cannot work, naming where it was chosen and how to change it."""
    source, resolved = source_of(uri, asked_as)
    sep = " " if source in ("the default store", "--uri") else "="
    where = f"{source}{sep}{mask(resolved)}"
    return kind(f"{where}: {problem}; {FIXES[source]}")


def _request(url: str, user: str | None, password: str | None, body: bytes | None = None):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body else {})
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT) as response:
        return response.read()


def check_server(uri: str | None, resolved: str, asked_as: str = "tracking.uri") -> None:
    """A tracking server that answers its health check and a real API call within PROBE_TIMEOUT each."""
    bare, user, password = split(resolved)  # urllib takes no user:password@ in a URL; MLflow's client does
    try:
        _request(f"{bare.rstrip('/')}/health", user, password)
    except OSError as e:
        reason = getattr(e, "reason", e)
        raise refusal(uri, f"no MLflow server answers there ({reason})", StoreUnreachable, asked_as) from None
    try:
        _request(f"{bare.rstrip('/')}/api/2.0/mlflow/experiments/search", user, password, b'{"max_results": 1}')
    except OSError as e:
        reason = getattr(e, "reason", None) or getattr(e, "code", None) or e
        raise refusal(
            uri, f"the server answers its health check but not its API ({reason})", asked_as=asked_as
        ) from None


def check_uri(uri: str | None, asked_as: str = "tracking.uri") -> None:
    """Refuse, before anything runs, a store that is malformed or cannot work, however it was chosen (``asked_as``:
    the setting a given ``uri`` came from)."""
    refusal_ = functools.partial(refusal, asked_as=asked_as)
    resolved = resolve_uri(uri)
    parsed = urlparse(resolved)
    scheme, _, driver = parsed.scheme.partition("+")
    if scheme == "file" or not parsed.scheme:
        raise refusal_(
            uri,
            "that is MLflow's file store, which MLflow 3 refuses (its filesystem backend is in maintenance mode; "
            "`mlflow migrate-filestore` moves old ./mlruns data into a database); for a SQLite file write "
            "sqlite:///<path>, e.g. sqlite:///mlflow.db",
        )
    if scheme not in SCHEMES or (driver and scheme in ("http", "https", "sqlite", "databricks")):
        raise refusal_(
            uri,
            f"unknown scheme '{parsed.scheme}' (expected one of {', '.join(SCHEMES)}, a database's "
            f"optionally with its driver: postgresql+psycopg2://)",
        )
    if scheme == "sqlite" and resolved != "sqlite:///:memory:":
        path = sqlite_file(resolved)
        folder = path.parent if path is not None else None
        if folder is None or not folder.is_dir():
            raise refusal_(uri, f"the folder of the SQLite file does not exist ({folder})")
        if not os.access(folder, os.W_OK):
            raise refusal_(uri, f"the folder of the SQLite file is not writable ({folder})")
        if path.is_dir() or not is_sqlite(path):
            raise refusal_(uri, f"{path} is not a SQLite database")
    if scheme in ("http", "https"):
        check_server(uri, resolved, asked_as)


DRIVER_MODULES = {"mysqldb": "MySQLdb"}  # a SQLAlchemy driver's name -> the module it imports, where they differ
DATABASES = ("postgresql", "mysql", "mssql")


def driver_module(resolved: str) -> str | None:
    """The Python module a database URI's driver imports: the one it names (``postgresql+psycopg2://``), else the
    one the installed SQLAlchemy uses for the database (2.1: psycopg, version 3, for ``postgresql://``)."""
    if urlparse(resolved).scheme.partition("+")[0] not in DATABASES:
        return None
    from sqlalchemy.engine.url import make_url

    driver = make_url(resolved).get_dialect().driver
    return DRIVER_MODULES.get(driver, driver)


def check_driver(uri: str | None) -> None:
    """Refuse a database URI whose driver module is not installed (without importing it)."""
    module = driver_module(resolve_uri(uri))
    if module and importlib.util.find_spec(module) is None:
        hint = ' (pip install -e ".[db]" installs psycopg and psycopg2 for PostgreSQL)'
        raise refusal(uri, f"its database driver {module} is not installed{hint}")


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

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)  # its errors reach the user from here

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
        patiently(lambda: client.search_experiments(max_results=1))  # creates a new SQLite store's tables, once
    except BaseException as e:  # a Ctrl-C too: a store this call created, half-made, is removed
        if created:
            remove_sqlite(new_file)
        if not isinstance(e, Exception):
            raise
        problem = f"the store does not work ({type(e).__name__}: {str(e)[:200]})"
        if isinstance(e, ModuleNotFoundError):  # a database's driver: psycopg2, pymysql, ...
            problem += '; install the database driver, e.g. pip install -e ".[db]" for PostgreSQL'
        raise refusal(uri, problem) from None
    return client


def warm_up() -> None:
    """Import what a run's first writes need (MLflow, its SQL store, its entities and datasets: ~1.7 s here),
    so that they do not wait for it."""
    import mlflow.data.meta_dataset  # noqa: F401
    import mlflow.entities  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    from mlflow.tracking import MlflowClient  # noqa: F401

    git_commit()


def release(uri: str | None) -> None:
    """Close this process's connections to a SQLite store and fold its write-ahead log into the file: once the last
    writer has done so, ``mlflow.db`` alone is complete (a copy of it, without ``mlflow.db-wal``, misses nothing)."""
    path = sqlite_file(resolve_uri(uri))
    if path is None or not path.is_file():
        return
    store_class = getattr(sys.modules.get("mlflow.store.tracking.sqlalchemy_store"), "SqlAlchemyStore", None)
    for engine in list(getattr(store_class, "_engine_map", {}).values()):
        engine.dispose()
    with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def forget_inherited_connections() -> None:
    """In a forked process: drop the database connections the parent's MLflow stores pool, without closing them
    (they are the parent's), as SQLAlchemy prescribes after ``os.fork()``; this process opens its own. Two
    processes writing through one inherited SQLite connection corrupt each other's writes."""
    loaded = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    if loaded is None:  # no store was opened before the fork
        return
    for engine in list(getattr(loaded.SqlAlchemyStore, "_engine_map", {}).values()):
        engine.dispose(close=False)


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

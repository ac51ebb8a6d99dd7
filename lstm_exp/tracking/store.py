"""The tracking store: which one a run writes to, whether it works, and where its artifacts go.

``tracking.uri`` null means ``sqlite:///mlflow.db`` in the launch folder (or ``MLFLOW_TRACKING_URI`` if set), named
explicitly; any store MLflow accepts works. A store that cannot work is refused before training, in one line; a
tracking server that does not answer is ``StoreUnreachable`` (an outage, which a sweep's job rides out by spooling,
not a typo).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from lstm_exp.common.credentials import mask, split
from lstm_exp.common.errors import UserError

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


def _refuse(uri: str, problem: str, kind: type[UserError] = UserError) -> UserError:
    return kind(
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
            raise _refuse(uri, f"no MLflow server answers there ({reason})", StoreUnreachable) from None


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

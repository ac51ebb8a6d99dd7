"""New SQLite stores, copied from a blank one: MLflow builds a store by running every one of its schema
migrations (about 1.4 s here), a copy of an empty store of the same MLflow version takes milliseconds.

The blank store holds MLflow's tables and nothing else; it is built once per MLflow version, with MLflow's own
table initialisation, in the user's cache folder (``$XDG_CACHE_HOME/lstm_exp``, else ``~/.cache/lstm_exp``).
A copy has no experiment yet, so MLflow creates its Default experiment (with an artifact folder beside the
new store) the first time it opens it, as it would for a store it had built itself. If the blank store
cannot be built (a read-only home, an MLflow without that initialisation), a new store is an empty file and
MLflow builds its tables, as before.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from pathlib import Path

# MLflow and SQLAlchemy are imported only to build the blank store, once per MLflow version.


def cache_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lstm_exp"


def blank_store() -> Path | None:
    """This MLflow version's blank store, built now if it is not there yet; None if it cannot be."""
    import mlflow

    try:
        path = cache_folder() / f"mlflow-{mlflow.__version__}-blank.db"  # no home folder: RuntimeError
        if path.exists() and usable(path):
            return path
        path.unlink(missing_ok=True)  # a cached copy that is no blank store (corrupt, truncated): built again
        from mlflow.store.db.utils import _initialize_tables
        from sqlalchemy import create_engine

        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".db.tmp")
        os.close(fd)
        try:
            engine = create_engine(f"sqlite:///{tmp}")
            _initialize_tables(engine)
            engine.dispose()
            os.replace(tmp, path)  # whole or not at all, whoever builds it at the same time
        finally:
            Path(tmp).unlink(missing_ok=True)
    except Exception:
        return None
    return path


def usable(path: Path) -> bool:
    """Whether ``path`` is a blank MLflow store: a SQLite file with MLflow's schema version and an empty runs table."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            db.execute("SELECT version_num FROM alembic_version").fetchone()
            return db.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    except sqlite3.Error:
        return False


def file_mode() -> int:
    """The mode a new file gets here (0o666 less the umask), as SQLite would give the store it creates."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def create(path: Path) -> bool:
    """Create the SQLite store ``path`` unless it exists: a copy of the blank store when there is one, else an
    empty file; in write-ahead-log mode either way. The file appears whole (a reader never opens a half-copied
    store), and of two processes creating it at once, one wins and both use its store. Whether this call
    created it (the loser must not remove the winner's store if it then fails).

    In WAL mode (a property of the file, kept by every later connection) readers such as ``mlflow ui`` or the
    report never block the jobs writing to the store, nor they them, and a commit costs one fsync instead of
    three. Like any SQLite store it must stay on a local disk, not a network share.
    """
    blank = blank_store()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with contextlib.closing(sqlite3.connect(tmp)) as db:
            if blank is not None:
                with contextlib.closing(sqlite3.connect(f"file:{blank}?mode=ro", uri=True)) as source:
                    source.backup(db)
            db.execute("PRAGMA journal_mode=WAL")
        os.chmod(tmp, file_mode())  # mkstemp's file is private; a store is not (mlflow ui as another user)
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process created it first
            return False
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)

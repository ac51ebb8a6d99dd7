"""MLflow on PostgreSQL: a tracking server backed by it, and the database as tracking.uri directly.

Needs a PostgreSQL whose URI is in LSTM_EXP_TEST_POSTGRES (CI: ``eval "$(.ci/postgres start)"``); every test
gets a database of its own, created from that URI and dropped afterwards, so its counts are exact.
"""

import os
import uuid

import pytest
import sqlalchemy
from mlflow.tracking import MlflowClient

from tests.test_sweep import assert_eight_jobs_lose_nothing
from tests.test_tracking import free_port, start_server, stop_server

pytestmark = pytest.mark.slow

BASE = os.environ.get("LSTM_EXP_TEST_POSTGRES")


@pytest.fixture(scope="module")
def admin():
    """An AUTOCOMMIT engine on the base database (CREATE / DROP DATABASE refuse to run in a transaction)."""
    if not BASE:
        pytest.skip('LSTM_EXP_TEST_POSTGRES is not set (eval "$(.ci/postgres start)" sets it)')
    pytest.importorskip("psycopg2", reason='the PostgreSQL driver is not installed: pip install -e ".[db]"')
    engine = sqlalchemy.create_engine(BASE, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.OperationalError as e:
        pytest.skip(f"the database at LSTM_EXP_TEST_POSTGRES does not answer: {' '.join(str(e.orig).split())}")
    yield engine
    engine.dispose()


@pytest.fixture
def database(admin):
    """The URI of a fresh, empty database (dropped afterwards, with any connection still open to it)."""
    name = f"lstm_exp_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    yield sqlalchemy.engine.make_url(BASE).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def metric_steps(client, run, key="train_loss"):
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, key))


def test_eight_parallel_jobs_against_a_server_on_postgres_lose_nothing(tmp_path, app, database):
    with open(tmp_path / "server.log", "w") as log:
        server, url = start_server(tmp_path, free_port(), backend=database, log=log)
        try:
            assert_eight_jobs_lose_nothing(tmp_path, app, url)
        finally:
            stop_server(server)


def test_a_run_logs_straight_to_postgres(tmp_path, app, database):
    overrides = ["hydra.run.dir=outputs/run", "task=sin", "steps=50", "log_every=5", f"tracking.uri={database}"]
    proc = app.run(tmp_path, *overrides)
    assert proc.returncode == 0, f"a postgresql+psycopg2:// tracking.uri refused or failed:\n{proc.stderr[-3000:]}"
    client = MlflowClient(database)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    assert runs[0].info.status == "FINISHED"
    assert metric_steps(client, runs[0]) == list(range(0, 50, 5)) + [49]  # 11 points
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the default local store

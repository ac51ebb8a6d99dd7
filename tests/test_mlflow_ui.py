"""What a reviewer sees in MLflow: run names, descriptions, sortable summary metrics, the dataset, system
metrics, and a link that opens the run in the training view."""

import hashlib
import re

import pytest
from mlflow.tracking import MlflowClient

from lstm_exp.runner.schema import CharConfig, SinConfig
from lstm_exp.tracking.dataset import description
from lstm_exp.tracking.run_names import run_name, sweep_name
from lstm_exp.tracking.store import check_uri


def test_runs_are_named_for_what_varies():
    assert (
        run_name("sin", "adam", ["optim.clip=6", "seed=3", "progress=false", "tracking.uri=x"])
        == "sin adam clip=6 seed=3"
    )
    assert run_name("char", "sgd", []) == "char sgd"
    from datetime import datetime

    assert (
        sweep_name(datetime(2026, 12, 1, 21, 53), ["optim.clip", "seed"], 60) == "sweep 2026-12-01 21:53 clip×seed (60)"
    )


def test_the_dataset_is_the_corpus_or_the_generator(tmp_path):
    corpus = tmp_path / "alice.txt"
    corpus.write_text("down the rabbit hole\n")
    name, digest, tags = description(CharConfig(corpus=str(corpus)))
    sha = hashlib.sha256(corpus.read_bytes()).hexdigest()
    assert (name, tags["sha256"], tags["size_bytes"]) == ("char corpus", sha, "21")
    assert tags["source"] == str(corpus) and tags["seq_len"] == "25" and "sample_every" not in tags
    # the record is keyed on the data and the settings that shape it: MLflow shows each run its own settings
    assert description(CharConfig(corpus=str(corpus), seq_len=100))[1] != digest
    assert description(CharConfig(corpus=str(corpus), sample_every=0))[1] == digest
    name, digest, tags = description(SinConfig(period=12.0))
    assert name == "sin synthetic" and tags["period"] == "12.0" and tags["source"] == "tasks/sin.py"
    assert description(SinConfig(period=12.0))[1] == digest != description(SinConfig())[1]


@pytest.mark.parametrize(
    "uri", ["postgresql+psycopg2://u@127.0.0.1:5432/db", "postgresql://u@h/db", "mysql+pymysql://h/db"]
)
def test_every_database_uri_mlflow_accepts_passes_the_check(uri):
    check_uri(uri)  # no connection is made here; connect() says if the store does not work


def test_a_run_reads_well_in_mlflow(tmp_path, app):
    done = app.run(tmp_path, "task=sin", "steps=40", "log_every=5", "optim.clip=6", "seed=3")
    assert done.returncode == 0, done.stderr[-2000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (experiment,) = [e for e in client.search_experiments() if e.name == "sin"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "sin adam steps=40 log_every=5 clip=6 seed=3"
    assert run.data.tags["mlflow.note.content"].startswith("outcome: converged   steps: 40")
    metrics = run.data.metrics
    assert {"first_loss", "final_loss", "best_loss", "diverged"} <= set(metrics) and metrics["diverged"] == 0.0
    assert metrics["final_loss"] < metrics["first_loss"]
    assert any(k.startswith("system/cpu_utilization") for k in metrics)
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "sin synthetic" and dataset.tags[0].value == "train"
    assert "loss_curve.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
    link = f"#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning"
    assert re.search(re.escape(link), done.stdout)

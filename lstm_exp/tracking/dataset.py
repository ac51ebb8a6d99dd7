"""What a run trained on, as an MLflow dataset (the run's Datasets panel): the corpus file — its path, size
and SHA-256 — or the synthetic generator, with the task settings that shape the data.

MLflow keeps one dataset record per (name, digest) and shows that first record's source for every later run with
the same pair, so the digest hashes the data *and* those settings: two runs on one corpus with different chunk
lengths get records of their own, and each run's panel shows its own settings."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from tasks.char import builtin_corpus

# MLflow's dataset classes are imported when a run logs its dataset.


NOT_DATA = ("reduction", "sample_every", "sample_length", "temperature", "max_corpus_mb")  # settings that shape no data


def description(task_cfg) -> tuple[str, str, dict]:
    """(name, digest, source tags) of the data a task config trains on."""
    settings = {k: v for k, v in asdict(task_cfg).items() if k not in NOT_DATA}
    corpus = settings.get("corpus")
    if task_cfg.name != "char":  # a synthetic task: its generator's parameters are the data
        data, where = json.dumps(settings, sort_keys=True, default=str).encode(), f"tasks/{task_cfg.name}.py"
    elif corpus is None:  # Python's built-in help text
        data, where = builtin_corpus().encode(), "built-in: Python's help topics (pydoc_data)"
    else:
        path = Path(corpus).expanduser().resolve()
        data, where = path.read_bytes(), str(path)
    content = hashlib.sha256(data).hexdigest()
    tags = {"task": task_cfg.name, "source": where, **settings}
    if task_cfg.name == "char":
        tags.update(size_bytes=len(data), sha256=content)
    keyed = hashlib.sha256((content + json.dumps(settings, sort_keys=True, default=str)).encode()).hexdigest()
    kind = "corpus" if task_cfg.name == "char" else "synthetic"
    return f"{task_cfg.name} {kind}", keyed[:8], {k: str(v) for k, v in tags.items()}


def dataset_input(task_cfg):
    """The task's data as an MLflow DatasetInput (context ``train``), for ``MlflowClient.log_inputs``."""
    return as_input(*description(task_cfg))


def as_input(name: str, digest: str, tags: dict):
    """A dataset's ``description`` as an MLflow DatasetInput (context ``train``)."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    dataset = MetaDataset(source=CodeDatasetSource(tags), name=name, digest=digest)
    return DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "train")])

"""The offline spool: MLflow writes queued in the run folder while the tracking server cannot be reached.

``lstm_exp.tracking.run`` appends to it when a write fails; ``python -m lstm_exp.sync <run dir>`` uploads it later.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

SPOOL = "mlflow_spool.jsonl"
SPOOLED_ARTIFACTS = "mlflow_spool_artifacts"


class Spool:
    """Append-only JSON-lines queue of MLflow writes for one run."""

    def __init__(self, run_dir, run_id: str | None, uri: str, create: dict | None = None):
        """``run_id`` None: the run does not exist yet (its server was unreachable when it began); ``create``
        (experiment, run_name) says how ``lstm_exp.tracking.sync`` makes it before replaying the rest."""
        self.path = Path(run_dir) / SPOOL
        self.artifacts = Path(run_dir) / SPOOLED_ARTIFACTS
        if not self.path.exists():
            self._append({"kind": "run", "run_id": run_id, "uri": uri, "create": create})

    def _append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def metrics(self, points: list) -> None:
        self._append({"kind": "metrics", "points": [[m.key, m.value, m.timestamp, m.step] for m in points]})

    def tags(self, tags: dict) -> None:
        self._append({"kind": "tags", "tags": tags})

    def params(self, params: dict) -> None:
        self._append({"kind": "params", "params": params})

    def file(self, path, artifact_dir: str | None) -> None:
        target = self.artifacts / (artifact_dir or "") / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(path, target, dirs_exist_ok=True) if Path(path).is_dir() else shutil.copy2(path, target)
        self._append(
            {
                "kind": "artifact",
                "path": str(target.relative_to(self.path.parent)),
                "artifact_dir": artifact_dir,
                "is_dir": Path(path).is_dir(),
            }
        )

    def end(self, status: str) -> None:
        self._append({"kind": "end", "status": status})

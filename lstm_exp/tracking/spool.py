"""The offline spool: MLflow writes queued in the run folder while the tracking server cannot be reached.

``lstm_exp.tracking.run`` appends to it when a write fails; ``python -m lstm_exp.sync <run dir>`` uploads it later.
Each line is one JSON record, appended whole (a torn last line from a full disk or a crash is ignored). An
artifact is copied into the run folder's ``mlflow_spool_artifacts/`` with the SHA-256 of every file, so that
sync uploads only what the run itself wrote there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

from lstm_exp.common.credentials import mask
from lstm_exp.common.errors import full_disk

SPOOL = "mlflow_spool.jsonl"
SPOOLED_ARTIFACTS = "mlflow_spool_artifacts"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(root: Path, target: Path) -> dict:
    """path (relative to ``root``) -> SHA-256 of every file at or under ``target``."""
    files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): sha256(p) for p in files}


class Spool:
    """Append-only JSON-lines queue of MLflow writes for one run."""

    def __init__(self, run_dir, run_id: str | None, uri: str, create: dict | None = None):
        """``run_id`` None: the run does not exist yet (its server was unreachable when it began); ``create``
        (experiment, run_name) says how ``lstm_exp.tracking.sync`` makes it before replaying the rest; the spool's
        ``id`` tags the run it makes, so a sync run again finds it instead of making a second."""
        self.path = Path(run_dir) / SPOOL
        self.artifacts = Path(run_dir) / SPOOLED_ARTIFACTS
        if not self.path.exists():  # the URI without its password, if it had one: sync asks for it
            header = {"kind": "run", "run_id": run_id, "uri": mask(uri), "create": create, "id": uuid.uuid4().hex}
            self._append(header)

    def _append(self, record: dict) -> None:
        line = (json.dumps(record) + "\n").encode("utf-8")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)  # one write of the whole line: appended whole (a torn one is left out by sync)
            finally:
                os.close(fd)
        except OSError as e:
            full = full_disk(e, self.path)
            if full is not None:
                raise full from None
            raise

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
        root = self.path.parent
        self._append(
            {
                "kind": "artifact",
                "path": str(target.relative_to(root)),
                "artifact_dir": artifact_dir,
                "is_dir": Path(path).is_dir(),
                "sha256": manifest(root, target),
            }
        )

    def end(self, status: str) -> None:
        self._append({"kind": "end", "status": status})

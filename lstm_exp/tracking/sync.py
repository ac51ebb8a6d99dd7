"""The offline queue of a run whose tracking server went away, and its upload: ``python -m lstm_exp.sync``.

When a write to MLflow fails mid-run, the run keeps training and every later write (metric batches,
tags, artifacts, the final status) is appended to ``<run dir>/mlflow_spool.jsonl`` instead — artifacts
are copied beside it. Once the server is back, ``python -m lstm_exp.sync <run dir>`` replays the queue
in order into the same MLflow run; nothing is lost.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lstm_exp.tracking.spool import SPOOL


def replay(run_dir, uri: str | None = None) -> tuple[str, int]:
    """Upload a spooled run; returns (run id, metric points uploaded). The spool is renamed when done."""
    from mlflow.entities import Metric, Param, RunTag

    from lstm_exp.tracking.run import connect

    run_dir = Path(run_dir)
    lines = [json.loads(line) for line in (run_dir / SPOOL).read_text(encoding="utf-8").splitlines() if line]
    header = lines[0]
    client = connect(uri or header["uri"])
    run_id, points = header["run_id"], 0
    if run_id is None:  # the run began offline: make it now, then replay everything it wrote
        create = header["create"]
        found = client.get_experiment_by_name(create["experiment"])
        experiment_id = found.experiment_id if found else client.create_experiment(create["experiment"])
        run_id = client.create_run(experiment_id, run_name=create.get("run_name")).info.run_id
    for rec in lines[1:]:
        kind = rec["kind"]
        if kind == "metrics":
            batch = [Metric(k, v, ts, step) for k, v, ts, step in rec["points"]]
            for i in range(0, len(batch), 1000):
                client.log_batch(run_id, metrics=batch[i : i + 1000], synchronous=True)
            points += len(batch)
        elif kind == "tags":
            client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in rec["tags"].items()], synchronous=True)
        elif kind == "params":
            client.log_batch(run_id, params=[Param(k, v) for k, v in rec["params"].items()], synchronous=True)
        elif kind == "artifact":
            local = run_dir / rec["path"]
            if rec["is_dir"]:
                client.log_artifacts(run_id, str(local), str(Path(rec["artifact_dir"] or "") / local.name))
            else:
                client.log_artifact(run_id, str(local), rec["artifact_dir"])
        elif kind == "end":
            client.set_terminated(run_id, rec["status"])
    (run_dir / SPOOL).rename(run_dir / f"{SPOOL}.synced")
    return run_id, points


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lstm_exp.sync", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", help="the run's output folder (it holds mlflow_spool.jsonl)")
    parser.add_argument("--uri", help="tracking URI to upload to (default: the one the run used)")
    args = parser.parse_args(argv)
    from lstm_exp.common.errors import UserError, complain

    if not (Path(args.run_dir) / SPOOL).is_file():
        return complain(f"no {SPOOL} in '{args.run_dir}': nothing to upload")
    try:
        run_id, points = replay(args.run_dir, args.uri)
    except UserError as e:
        return complain(str(e))
    print(f"uploaded {points} metric points and the run's tags, artifacts and status to MLflow run {run_id}")
    return 0

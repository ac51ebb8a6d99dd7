"""The offline queue of a run whose tracking server went away, and its upload: ``python -m lstm_exp.sync``.

When a write to MLflow fails mid-run, the run keeps training and every later write (metric batches, tags,
artifacts, the final status) is appended to ``<run dir>/mlflow_spool.jsonl`` instead — artifacts are copied beside
it. Once the server is back, ``python -m lstm_exp.sync <run dir>`` replays the queue in order into the same MLflow
run. Sync is idempotent: its progress is kept in ``mlflow_spool.progress.json`` after every record, a run that began
offline is found again by its spool's id, and a point written twice is stored once (MLflow keys a point by its key,
step, timestamp and value), so a sync interrupted anywhere and run again leaves one run with every point once.

Only files the run itself spooled are uploaded: each must lie inside the run folder's ``mlflow_spool_artifacts/``
and have the SHA-256 the spool recorded for it.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path, PurePosixPath

from lstm_exp.common.atomic import atomic_write
from lstm_exp.common.credentials import is_masked, mask, split
from lstm_exp.common.errors import UserError, complain, first_line
from lstm_exp.common.ownership import RunLock
from lstm_exp.tracking.run import new_experiment
from lstm_exp.tracking.spool import SPOOL, SPOOLED_ARTIFACTS, manifest
from lstm_exp.tracking.store import connect, release

# MLflow's entities are imported when records are uploaded.

PROGRESS = "mlflow_spool.progress.json"
SPOOL_TAG = "lstm_exp.spool_id"


def read_spool(run_dir: Path) -> list[dict]:
    """The spool's records; a torn last line (a crash or a full disk mid-append) is left out."""
    lines = (run_dir / SPOOL).read_text(encoding="utf-8").splitlines()
    records = []
    for k, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if k == len(lines) - 1:
                break
            raise UserError(f"{run_dir / SPOOL}: line {k + 1} is not a spool record") from None
    if not records or records[0].get("kind") != "run":
        raise UserError(f"{run_dir / SPOOL} does not start with its run's header; it is not a spool")
    return records


def checked_artifact(run_dir: Path, rec: dict) -> Path:
    """The spooled artifact of record ``rec``, after checking that the run wrote it: inside the run folder's spooled
    artifacts, every file as the spool hashed it, and an artifact path that stays inside the run's artifacts."""
    root = run_dir.resolve()
    spooled = (root / SPOOLED_ARTIFACTS).resolve()
    local = (root / str(rec.get("path", ""))).resolve()
    if spooled not in local.parents:
        raise UserError(f"{run_dir / SPOOL}: artifact {rec.get('path')!r} is not one this run spooled; not uploaded")
    folder = PurePosixPath(rec.get("artifact_dir") or "")
    if folder.is_absolute() or ".." in folder.parts:
        raise UserError(f"{run_dir / SPOOL}: artifact folder {rec.get('artifact_dir')!r} leaves the run's artifacts")
    if not local.exists() or manifest(root, local) != rec.get("sha256"):
        raise UserError(f"{run_dir / SPOOL}: {rec.get('path')} is not the file this run spooled (missing or changed)")
    return local


def upload_uri(header: dict, uri: str | None) -> str:
    """The URI to upload to: ``--uri``, else the spool's (whose password, if it had one, was never written down)."""
    if uri:
        return uri
    if not is_masked(header["uri"]):
        return header["uri"]
    if header["uri"].startswith(("http://", "https://")) and os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        return split(header["uri"])[0]  # MLflow takes MLFLOW_TRACKING_USERNAME / _PASSWORD from the environment
    raise UserError(
        f"the run's tracking URI {header['uri']} had a password, which is never written down: give the URI with "
        "--uri (or, for a tracking server, set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)"
    )


def the_run(client, header: dict) -> str:
    """The run the spool belongs to: its own, or for a run that began offline the one made for it (found by the
    spool's id, so that a second sync makes no second run)."""
    if header["run_id"] is not None:
        return header["run_id"]
    create = header["create"]
    found = client.get_experiment_by_name(create["experiment"])
    experiment_id = found.experiment_id if found is not None else new_experiment(client, create["experiment"])
    if header.get("id"):
        made = client.search_runs([experiment_id], f"tags.`{SPOOL_TAG}` = '{header['id']}'", max_results=1)
        if made:
            return made[0].info.run_id
    run = client.create_run(experiment_id, run_name=create.get("run_name"), tags={SPOOL_TAG: header.get("id") or ""})
    return run.info.run_id


def replay(run_dir, uri: str | None = None) -> tuple[str, int]:
    """Upload a spooled run from where an earlier sync stopped; returns (run id, metric points uploaded). The spool
    is renamed when everything is in."""
    run_dir = Path(run_dir)
    with RunLock(run_dir, then="wait for it to end, then sync again"):  # one writer of a run folder at a time
        return _replay(run_dir, uri)


def _replay(run_dir: Path, uri: str | None) -> tuple[str, int]:
    from mlflow.entities import Metric, Param, RunTag

    if not (run_dir / SPOOL).is_file():  # a sync that held the folder before this one may have finished it
        raise UserError(f"no {SPOOL} in '{run_dir}': nothing to upload")
    records = read_spool(run_dir)
    header = records[0]
    progress_path = run_dir / PROGRESS
    progress = json.loads(progress_path.read_text()) if progress_path.exists() else {}
    client = connect(upload_uri(header, uri))
    run_id = progress.get("run_id") or the_run(client, header)
    done, points = progress.get("done", 1), 0
    for k in range(done, len(records)):
        rec, kind = records[k], records[k]["kind"]
        if kind == "metrics":
            batch = [Metric(key, value, ts, step) for key, value, ts, step in rec["points"]]
            for i in range(0, len(batch), 1000):
                client.log_batch(run_id, metrics=batch[i : i + 1000], synchronous=True)
            points += len(batch)
        elif kind == "tags":
            client.log_batch(
                run_id, tags=[RunTag(key, mask(str(v))) for key, v in rec["tags"].items()], synchronous=True
            )
        elif kind == "params":
            client.log_batch(run_id, params=[Param(key, v) for key, v in rec["params"].items()], synchronous=True)
        elif kind == "artifact":
            local = checked_artifact(run_dir, rec)
            if rec["is_dir"]:
                client.log_artifacts(run_id, str(local), str(PurePosixPath(rec["artifact_dir"] or "") / local.name))
            else:
                client.log_artifact(run_id, str(local), rec["artifact_dir"])
        elif kind == "end":
            client.set_terminated(run_id, rec["status"])
        atomic_write(progress_path, json.dumps({"run_id": run_id, "done": k + 1}))
    (run_dir / SPOOL).rename(run_dir / f"{SPOOL}.synced")
    progress_path.unlink(missing_ok=True)
    release(client.tracking_uri)
    return run_id, points


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lstm_exp.sync", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", help="the run's output folder (it holds mlflow_spool.jsonl)")
    parser.add_argument("--uri", help="tracking URI to upload to (default: the one the run used)")
    args = parser.parse_args(argv)
    if not (Path(args.run_dir) / SPOOL).is_file():
        return complain(f"no {SPOOL} in '{args.run_dir}': nothing to upload")
    try:
        run_id, points = replay(args.run_dir, args.uri)
    except UserError as e:
        return complain(str(e))
    except Exception as e:  # the server went away again, a full disk, ...: what is in stays in
        return complain(
            f"the upload stopped ({type(e).__name__}: {first_line(e)}); what was uploaded stays, and running "
            f"python -m lstm_exp.sync {args.run_dir} again goes on from there"
        )
    print(f"uploaded {points} metric points and the run's tags, artifacts and status to MLflow run {run_id}")
    return 0

"""Reports over MLflow runs: divergence rates with Wilson intervals, survival, final losses and loss curves per
condition.

A condition is a combination of the config values that vary across the selected runs (seeds and
run-identifying keys aside; runs of ``mode=train`` only). For each one the report counts runs, crashes and
divergences, gives the divergence rate over the runs that completed with its Wilson 95 % interval, the median,
first and last divergence step, the Kaplan-Meier median survival step, the median and IQR of the final loss over
runs that neither diverged nor crashed, and the median wall time. ``write_report`` saves it as ``report.csv`` with
three figures (divergence rate, survival, loss curves) and the data of the last two.

    python -m lstm_exp.report --experiment sin                    # every run of an experiment
    python -m lstm_exp.report --sweep-id outputs/multirun/...     # one sweep
    python -m lstm_exp.report --stale                             # runs left RUNNING by a dead process
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd

from lstm_exp.common.errors import UserError, complain, first_line
from lstm_exp.common.figures import pyplot
from lstm_exp.sweeps.figures import loss_curves, plot_divergence, plot_loss_curves, plot_survival, survival_frame
from lstm_exp.sweeps.labels import group_labels
from lstm_exp.sweeps.statistics import grouped_runs, prepare, summary_table
from lstm_exp.sweeps.survival import survival_curves
from lstm_exp.sweeps.table import format_table
from lstm_exp.tracking.queries import column, end_orphans, load_runs, stale_runs
from lstm_exp.tracking.store import HTTP_DEFAULTS, check_uri, is_sqlite, resolve_uri, sqlite_file

# MLflow (about 1.7 s) and scipy are imported when they are used: --help and a bad argument answer at once.

REPORT_FILES = {
    "csv": "report.csv",
    "divergence_rate": "divergence_rate.png",
    "survival": "survival.png",
    "survival_csv": "survival.csv",
    "loss_curves": "loss_curves.png",
    "loss_curves_csv": "loss_curves.csv",
}


def warm_up() -> None:
    """Import what a report computes and draws with (scipy.stats, matplotlib: ~1 s here) before it is needed: a
    sweep does this while its jobs run (``lstm_exp.sweeps.launch``)."""
    import scipy.stats  # noqa: F401

    pyplot()


def write_report(df: pd.DataFrame, out_dir, by: list[str] | None = None, uri: str | None = None) -> dict:
    """Write the report to ``out_dir``, print the table, return the paths: ``csv`` (report.csv, the summary),
    ``divergence_rate``, ``survival`` and ``loss_curves`` (PNG), and the data of the last two, ``survival_csv`` and
    ``loss_curves_csv`` (inf written as ``inf``). Runs of a mode other than train are left out; with none left,
    only report.csv (empty) is written.

    ``uri`` is the store to read the loss histories from (None: the one ``load_runs`` read ``df`` from).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    factors, runs = grouped_runs(df, by)
    summary = summary_table(runs, factors)
    paths = {name: out / file for name, file in REPORT_FILES.items()}
    summary.to_csv(paths["csv"], index=False)
    print(format_table(summary))
    if summary.empty:
        return {"csv": paths["csv"]}
    names = group_labels(summary)
    plot_divergence(summary, paths["divergence_rate"])
    tables = survival_curves(runs)
    survival_frame(tables, names).to_csv(paths["survival_csv"], index=False)
    plot_survival(tables, summary, paths["survival"])
    curves = loss_curves(runs, names, uri or df.attrs.get("tracking_uri"))
    curves.to_csv(paths["loss_curves_csv"], index=False)
    plot_loss_curves(curves, summary, paths["loss_curves"])
    return paths


# ---------------------------------------------------------------------------------------------------- CLI


def tag_pair(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` from the command line."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    return key, value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lstm_exp.report",
        description="Divergence rates, final losses and loss curves per condition over MLflow runs.",
    )
    parser.add_argument("--uri", help="MLflow tracking URI (default: MLflow's, sqlite:///mlflow.db here)")
    parser.add_argument(
        "--experiment", nargs="+", action="extend", default=[], metavar="NAME", help="experiment name(s) (default: all)"
    )
    parser.add_argument("--sweep-id", help="only the runs of this sweep (its output dir, the sweep.id tag)")
    parser.add_argument(
        "--tag",
        nargs="+",
        action="extend",
        default=[],
        type=tag_pair,
        metavar="KEY=VALUE",
        help="only runs with these tags",
    )
    parser.add_argument(
        "--by",
        nargs="+",
        action="extend",
        metavar="FACTOR",
        help="group by these params (default: the ones that vary, seed aside)",
    )
    parser.add_argument("--out", help="output directory (default: reports/<sweep or timestamp>)")
    stale = parser.add_mutually_exclusive_group()
    stale.add_argument("--stale", action="store_true", help="list the runs still RUNNING")
    stale.add_argument(
        "--fix-stale",
        action="store_true",
        help="mark the runs still RUNNING as FAILED (only when none of them is still training)",
    )
    return parser.parse_args(argv)


def check_store(uri: str | None) -> None:
    """Refuse, in bounded time, a store that cannot be read: a local one that does not exist (MLflow would silently
    create an empty one), a file that is no SQLite database, a folder, a server that does not answer."""

    local = sqlite_file(resolve_uri(uri))
    if local is not None:
        if not local.exists():
            raise UserError(f"no MLflow store at {local} (run from the launch directory or pass --uri)")
        if local.is_dir() or not is_sqlite(local):
            raise UserError(f"{local} is not a SQLite database: pass --uri <the store>")
    check_uri(uri, asked_as="--uri")


def default_out(sweep_id: str | None) -> Path:
    """reports/<sweep id as a file name>, or reports/<timestamp> for a selection that is not one sweep."""
    if sweep_id:
        return Path("reports") / (re.sub(r"[^\w.-]+", "_", sweep_id).strip("_.") or "sweep")
    return Path("reports") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def describe_selection(args: argparse.Namespace, unknown=()) -> str:
    """The selection, for messages: ``experiment=a,b, sweep=..., tags=k=v`` (unknown experiments marked)."""
    names = [f"{name} (no such experiment)" if name in unknown else name for name in args.experiment]
    text = f"experiment={','.join(names) or 'any'}, sweep={args.sweep_id or 'any'}"
    if args.tag:
        text += ", tags=" + ",".join(f"{k}={v}" for k, v in args.tag)
    return text


def run_stale(args: argparse.Namespace) -> int:
    """--stale / --fix-stale: list (and mark) the runs still RUNNING."""
    stale = stale_runs(args.uri, args.experiment or None)
    if stale.empty:
        print(f"no stale runs: none RUNNING without a live owner ({describe_selection(args)})")
        return 0
    waiting = stale[stale["waiting_for_sync"].notna()]
    print(stale.drop(columns="waiting_for_sync").to_string(index=False))
    for run_dir in waiting["waiting_for_sync"]:
        print(f"waiting for sync, not stale: python -m lstm_exp.sync {run_dir}")
    if args.fix_stale:
        for run_id in end_orphans(args.uri, stale["run_id"]):
            print(f"marked FAILED: {run_id}")
    return 0


def unknown_experiments(uri: str | None, names: list[str]) -> list[str]:
    """The names among ``names`` that no experiment in the store has."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return [name for name in names if client.get_experiment_by_name(name) is None]


def build_report(args: argparse.Namespace) -> int:
    """The CLI's work; raises UserError for a selection that cannot be reported on."""
    check_store(args.uri)
    if args.stale or args.fix_stale:
        return run_stale(args)
    unknown = unknown_experiments(args.uri, args.experiment)
    df = load_runs(args.uri, args.experiment or None, args.sweep_id, dict(args.tag))
    if df.empty:
        raise UserError(f"no runs match: {describe_selection(args, unknown)}")
    if prepare(df).empty:
        raise UserError(f"no training runs match: {describe_selection(args, unknown)} ({len(df)} of another mode)")
    for name in unknown:
        print(f"note: no experiment named '{name}'", file=sys.stderr)
    paths = write_report(df, args.out or default_out(args.sweep_id), args.by)
    running = int(column(df, "status").eq("RUNNING").sum())
    if running:
        print(f"note: {running} run(s) still RUNNING (python -m lstm_exp.report --stale)", file=sys.stderr)
    print(f"report written to {paths['csv'].parent}")
    return 0


def main(argv=None) -> int:
    """``python -m lstm_exp.report``: print the table and write the report; exit 2 on a user error."""
    args = parse_args(argv)
    from mlflow.exceptions import MlflowException

    for key, value in HTTP_DEFAULTS.items():  # a server that hangs is given up on in seconds, not minutes
        os.environ.setdefault(key, value)

    try:
        return build_report(args)
    except (UserError, MlflowException, OSError) as e:
        return complain(first_line(e))

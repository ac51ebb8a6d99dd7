"""Reports over MLflow runs: divergence rates with Wilson intervals, final losses and loss curves per condition.

A condition is a combination of the config values that vary across the selected runs (seeds and
run-identifying keys aside). For each one the report counts runs, crashes and divergences, gives the
divergence rate over the runs that completed with its Wilson 95 % interval, the median first-divergence
step, the median and IQR of the final loss over runs that neither diverged nor crashed, and the median
wall time. ``write_report`` saves it as ``report.csv`` with two figures.

    python -m lstm_exp.report --experiment sin                    # every run of an experiment
    python -m lstm_exp.report --sweep-id outputs/multirun/...     # one sweep
    python -m lstm_exp.report --stale                             # runs left RUNNING by a dead process
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from lstm_exp.common.errors import UserError, complain, first_line
from lstm_exp.common.figures import pyplot, save

STALE_ERROR = "process died (marked by lstm_exp.sweeps.report --fix-stale)"

# Config keys that say how a run was launched or logged, not what was trained (resume: a checkpoint to go on from).
RUN_KEYS = ("seed", "progress", "resume")
RUN_KEY_PREFIXES = ("hydra.", "tracking.")

# The summary's own columns; every other column of a summary is a factor.
STATS = (
    "runs",
    "failed",
    "completed",
    "diverged",
    "div_rate",
    "div_low",
    "div_high",
    "first_div_step",
    "loss_median",
    "loss_q25",
    "loss_q75",
    "wall_s",
)


# ----------------------------------------------------------------------------------------------- loading


@contextmanager
def tracking_uri(uri: str | None):
    """Point MLflow's fluent API at ``uri`` for the block (None: the project's default store, see
    ``tracking.resolve_uri``), then restore it."""
    import mlflow

    from lstm_exp.tracking.run import resolve_uri

    previous = mlflow.get_tracking_uri() if mlflow.tracking.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(resolve_uri(uri))
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def quote(value: str) -> str:
    """A string literal for an MLflow filter."""
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise UserError(f"cannot filter on a value with both quote characters: {value}")


def filter_string(sweep_id: str | None = None, tags: dict | None = None) -> str:
    """The MLflow filter selecting runs by sweep id and tags (dotted tag names in backquotes)."""
    wanted = dict(tags or {})
    if sweep_id is not None:
        wanted["sweep.id"] = sweep_id
    return " and ".join(f"tags.`{key}` = {quote(value)}" for key, value in wanted.items())


def column(df: pd.DataFrame, name: str) -> pd.Series:
    """A column of ``df``, or all-missing values if MLflow returned none of that name."""
    return df[name] if name in df.columns else pd.Series(None, index=df.index, dtype=object)


def drop_parents(df: pd.DataFrame) -> pd.DataFrame:
    """The runs that are not the parent run of a sweep (tag ``sweep.role=parent``)."""
    return df[column(df, "tags.sweep.role").ne("parent")]


def search(uri: str | None, experiments=None, query: str = "") -> pd.DataFrame:
    """MLflow's search_runs DataFrame for the experiments named (None: all; unknown names match nothing).

    The frame's ``attrs["tracking_uri"]`` records the store it came from.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    names = [experiments] if isinstance(experiments, str) else list(experiments or [])
    with tracking_uri(uri):
        resolved = mlflow.get_tracking_uri()
        if names:
            client = MlflowClient(resolved)
            names = [name for name in names if client.get_experiment_by_name(name) is not None]
        if experiments and not names:  # searching with no name would fall back to the default experiment
            df = pd.DataFrame(columns=["run_id", "experiment_id", "status", "start_time", "end_time"])
        else:
            df = mlflow.search_runs(
                experiment_names=names or None,
                filter_string=query,
                search_all_experiments=not names,
                output_format="pandas",
            )
    df.attrs["tracking_uri"] = resolved
    return df


def load_runs(
    uri: str | None = None, experiments=None, sweep_id: str | None = None, tags: dict | None = None
) -> pd.DataFrame:
    """The runs matching the selection as MLflow's search_runs DataFrame, without sweep parent runs.

    ``experiments``: names (a name or a list; None: every experiment). Unknown names match nothing.
    ``sweep_id``: the ``sweep.id`` tag (the sweep's output dir); ``tags``: further tags that must match.
    The frame's ``attrs["tracking_uri"]`` records the store it came from.
    """
    df = search(uri, experiments, filter_string(sweep_id, tags))
    runs = drop_parents(df).reset_index(drop=True)
    runs.attrs["tracking_uri"] = df.attrs["tracking_uri"]
    return runs


# ------------------------------------------------------------------------------------------- summarising


def param_columns(df: pd.DataFrame) -> list[str]:
    """The config keys logged as params (column names without the ``params.`` prefix)."""
    return [c.removeprefix("params.") for c in df.columns if c.startswith("params.")]


def is_condition(key: str) -> bool:
    """Whether a config key describes the experimental condition (not the seed, nor how the run was launched)."""
    return key not in RUN_KEYS and not key.startswith(RUN_KEY_PREFIXES)


def varied_factors(df: pd.DataFrame) -> list[str]:
    """The condition params whose values differ across the runs.

    A param present in only some runs with a single value where present (an option's own default, such
    as ``optim.b1`` when Adam is swept against SGD) is implied by the factor that chose the option.
    """
    factors = []
    for key in param_columns(df):
        if is_condition(key) and df[f"params.{key}"].nunique(dropna=True) > 1:
            factors.append(key)
    return factors


def natural_key(values: pd.Series) -> pd.Series:
    """Sort key: numbers by value when every value is numeric ("null" after them), otherwise text."""
    text = values.astype(str)
    known = values.notna() & text.ne("null")
    numbers = pd.to_numeric(text.where(known), errors="coerce")
    if numbers[known].notna().all():
        return numbers.mask(text.eq("null"), np.inf)
    return text


def readable(key: str, values: pd.Series) -> pd.Series:
    """Factor values as a reader wants them: ``model.impl`` as its class name (``core`` for the built-in core)."""
    if key != "model.impl":
        return values
    text = values.astype(str)
    return text.where(values.notna() & ~text.isin(["None", "null", ""]), "core").str.rpartition(":")[2]


def per_run(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """One row per run: its factor values and what the summary aggregates (flags, steps, loss, time)."""
    status = column(df, "status")
    outcome = column(df, "tags.outcome").fillna("").astype(str)
    completed = status.eq("FINISHED")
    diverged = completed & outcome.str.startswith("diverged")
    loss = pd.to_numeric(column(df, "tags.final_loss"), errors="coerce")
    if "metrics.train_loss" in df.columns:
        loss = loss.fillna(df["metrics.train_loss"])
    wall = pd.to_datetime(column(df, "end_time"), utc=True) - pd.to_datetime(column(df, "start_time"), utc=True)
    runs = pd.DataFrame({key: readable(key, column(df, f"params.{key}")) for key in by}, index=df.index)
    return runs.assign(
        failed=status.eq("FAILED"),
        completed=completed,
        diverged=diverged,
        first_div_step=pd.to_numeric(column(df, "tags.nan.first_step"), errors="coerce").where(diverged),
        final_loss=loss.where(completed & ~diverged),
        wall_s=wall.dt.total_seconds().where(completed),
    )


def warm_up() -> None:
    """Import what a report computes and draws with (scipy.stats, matplotlib: ~1 s here) before it is needed: a
    sweep does this while its jobs run (``lstm_exp.sweeps.launch``)."""
    import scipy.stats  # noqa: F401

    pyplot()


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (NaNs when n is 0)."""
    from scipy.stats import binomtest

    if n == 0:
        return float("nan"), float("nan")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def resolve_factors(df: pd.DataFrame, by: list[str] | None) -> list[str]:
    """The grouping factors: ``by`` (with or without the ``params.`` prefix) checked, or the varied ones."""
    if by is None:
        return varied_factors(df)
    known = set(param_columns(df))
    factors = [key.removeprefix("params.") for key in by]
    for key in factors:
        if known and key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"did you mean {' or '.join(close)}?" if close else f"params: {', '.join(sorted(known))}"
            raise UserError(f"unknown factor {key} ({hint})")
    return factors


def quantile(q: float):
    """An aggregation taking the q-quantile of the non-missing values."""

    def agg(values: pd.Series) -> float:
        return values.quantile(q)

    agg.__name__ = f"q{round(q * 100)}"
    return agg


def summarise(df: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """One row per condition (by default the varied factors; one row "all" when nothing varies).

    Columns: the factors, then runs; failed (crashed: status FAILED); completed (status FINISHED, the
    divergence rate's denominator); diverged (completed with outcome ``diverged_*``); div_rate with its
    Wilson 95 % bounds div_low/div_high; first_div_step (median ``nan.first_step`` of the diverged runs);
    loss_median/loss_q25/loss_q75 (final loss of the completed runs that did not diverge); wall_s
    (median wall time of the completed runs, seconds).
    """
    factors = resolve_factors(df, by)
    runs = per_run(df, factors)
    if not factors:
        runs, factors = runs.assign(group="all"), ["group"]
    summary = (
        runs.groupby(factors, dropna=False, sort=False)
        .agg(
            runs=("failed", "size"),
            failed=("failed", "sum"),
            completed=("completed", "sum"),
            diverged=("diverged", "sum"),
            first_div_step=("first_div_step", "median"),
            loss_median=("final_loss", "median"),
            loss_q25=("final_loss", quantile(0.25)),
            loss_q75=("final_loss", quantile(0.75)),
            wall_s=("wall_s", "median"),
        )
        .reset_index()
    )
    counts = summary[["runs", "failed", "completed", "diverged"]].astype(int)
    bounds = [wilson(k, n) for k, n in zip(counts["diverged"], counts["completed"], strict=True)]
    summary[counts.columns] = counts
    summary["div_rate"] = (counts["diverged"] / counts["completed"].where(counts["completed"] > 0)).astype(float)
    summary["div_low"] = [low for low, _ in bounds]
    summary["div_high"] = [high for _, high in bounds]
    summary = summary.sort_values(factors, key=natural_key, na_position="last", ignore_index=True)
    return summary[[*factors, *STATS]]


def factor_columns(summary: pd.DataFrame) -> list[str]:
    """The factor columns of a summary (everything that is not one of its statistics)."""
    return [c for c in summary.columns if c not in STATS]


def group_labels(summary: pd.DataFrame) -> list[str]:
    """A label per summary row from its factor values, e.g. ``optim.clip=5, init.scheme=he``."""
    factors = factor_columns(summary)
    if factors == ["group"]:
        return summary["group"].astype(str).tolist()
    return [label(factors, [row[k] for k in factors]) for _, row in summary.iterrows()]


def label(factors: list[str], values) -> str:
    """``k=v, ...`` for a condition; a param the runs did not log shows as ``(unset)``."""
    return ", ".join(f"{k}={'(unset)' if pd.isna(v) else v}" for k, v in zip(factors, values, strict=True))


def number(fmt: str):
    """A cell formatter: ``fmt`` for numbers, "-" for missing values."""

    def cell(value) -> str:
        return "-" if pd.isna(value) else format(value, fmt)

    return cell


FORMATS = {
    "div_rate": ".2f",
    "div_low": ".2f",
    "div_high": ".2f",
    "first_div_step": ".0f",
    "loss_median": ".4g",
    "loss_q25": ".4g",
    "loss_q75": ".4g",
    "wall_s": ".1f",
}


def format_table(summary: pd.DataFrame) -> str:
    """The summary as a text table: rates to 2 decimals, losses to 4 significant digits, "-" for none."""
    if summary.empty:
        return "(no runs)"
    formatters = {key: number(fmt) for key, fmt in FORMATS.items() if key in summary.columns}
    return summary.to_string(index=False, formatters=formatters, na_rep="-")


# -------------------------------------------------------------------------------------------------- plots


def plot_divergence(summary: pd.DataFrame, path) -> None:
    """Divergence rate per condition as bars with the Wilson 95 % interval as asymmetric error bars."""
    labels = group_labels(summary)
    rate = summary["div_rate"].to_numpy(dtype=float)
    yerr = np.nan_to_num(
        np.vstack([rate - summary["div_low"].to_numpy(dtype=float), summary["div_high"].to_numpy(dtype=float) - rate])
    )
    x = np.arange(len(summary))
    fig, ax = pyplot().subplots(figsize=(max(5.0, 0.9 * len(x) + 2), 4.5), layout="constrained")
    ax.bar(x, np.nan_to_num(rate), yerr=yerr, capsize=4, color="tab:red", alpha=0.7, ecolor="black")
    for xi, k, n in zip(x, summary["diverged"], summary["completed"], strict=True):
        ax.annotate(f"{k}/{n}", (xi, 1.03), ha="center", fontsize=8)  # diverged / completed
    ax.set_xticks(x, labels, rotation=30 if len(x) > 3 else 0, ha="right" if len(x) > 3 else "center")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("divergence rate (Wilson 95 % interval)")
    ax.grid(True, axis="y", alpha=0.3)
    save(fig, path)


def metric_histories(client, run_ids, key: str = "train_loss") -> pd.DataFrame:
    """One column per run of ``key`` by step (index: the union of the runs' steps)."""
    series = {}
    for run_id in run_ids:
        points = client.get_metric_history(run_id, key)
        if points:
            values = pd.Series({m.step: m.value for m in points}, dtype=float)
            series[run_id] = values
    return pd.DataFrame(series).sort_index()


def loss_band(histories: pd.DataFrame) -> pd.DataFrame:
    """Median and interquartile range across runs at each step (runs that stopped early drop out)."""
    if histories.columns.empty:
        return pd.DataFrame(columns=["median", "q25", "q75"], dtype=float)
    return pd.DataFrame(
        {
            "median": histories.median(axis=1),
            "q25": histories.quantile(0.25, axis=1),
            "q75": histories.quantile(0.75, axis=1),
        }
    )


def plot_loss_curves(df: pd.DataFrame, by: list[str] | None, path, uri: str | None = None) -> None:
    """Per condition, the median train_loss curve over its completed runs with an IQR band, log y axis."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri or df.attrs.get("tracking_uri"))
    factors = resolve_factors(df, by)
    runs = per_run(df, factors).assign(run_id=column(df, "run_id"))
    runs = runs[runs["completed"]]
    if factors:
        runs = runs.sort_values(factors, key=natural_key, na_position="last", kind="stable")
    fig, ax = pyplot().subplots(figsize=(8, 5), layout="constrained")
    groups = runs.groupby(factors, dropna=False, sort=False) if factors else [("all", runs)]
    for key, group in groups:
        band = loss_band(metric_histories(client, group["run_id"]))
        if band.empty:
            continue
        band = band.where(band > 0)
        name = label(factors, key if isinstance(key, tuple) else (key,)) if factors else "all"
        marker = "o" if len(band) < 30 else None  # a run that diverged early may have a single point
        line = ax.plot(band.index, band["median"], lw=1.2, marker=marker, ms=3, label=f"{name} (n={len(group)})")[0]
        ax.fill_between(band.index, band["q25"], band["q75"], color=line.get_color(), alpha=0.2, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (median, IQR band)")
    ax.grid(True, alpha=0.3)
    if ax.lines:
        ax.legend(loc="best", fontsize=8)
    save(fig, path)


def write_report(df: pd.DataFrame, out_dir, by: list[str] | None = None, uri: str | None = None) -> dict:
    """Write report.csv, divergence_rate.png and loss_curves.png to ``out_dir``, print the table, return the paths.

    ``uri`` is the store to read the loss histories from (None: the one ``load_runs`` read ``df`` from).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(df, by)
    paths = {
        "csv": out / "report.csv",
        "divergence_rate": out / "divergence_rate.png",
        "loss_curves": out / "loss_curves.png",
    }
    summary.to_csv(paths["csv"], index=False)
    plot_divergence(summary, paths["divergence_rate"])
    plot_loss_curves(df, by, paths["loss_curves"], uri)
    print(format_table(summary))
    return paths


# ------------------------------------------------------------------------------------------- stale runs


def owner_states(df: pd.DataFrame) -> pd.Series:
    """Per RUNNING run: "gone" (its owning process has exited), "alive", or "elsewhere" (another host's)."""
    from lstm_exp.common.ownership import owner_alive

    owner_cols = [c for c in df.columns if c.startswith("tags.owner.")]
    states = []
    for _, row in df.iterrows():
        tags = {c.removeprefix("tags."): row[c] for c in owner_cols if pd.notna(row[c])}
        live = owner_alive(tags)
        states.append("alive" if live else "gone" if live is False else "elsewhere")
    return pd.Series(states, index=df.index, dtype=object)


def stale_runs(uri: str | None, experiments=None) -> pd.DataFrame:
    """The runs (sweep parents included) still RUNNING whose owner is gone: a job that died hard (kill -9,
    OOM, a reboot) leaves its run so. Runs of live processes, and of other hosts' processes, are left out."""
    df = search(uri, experiments, "attributes.status = 'RUNNING'")
    if df.empty:
        return df
    df = df[owner_states(df).eq("gone")]
    keep = {
        "run_id": "run_id",
        "experiment_id": "experiment_id",
        "start_time": "started",
        "tags.mlflow.runName": "run_name",
        "tags.sweep.id": "sweep_id",
        "tags.hydra.overrides": "overrides",
    }
    return df[[c for c in keep if c in df.columns]].rename(columns=keep).reset_index(drop=True)


def end_orphans(uri: str | None, run_ids, error: str = STALE_ERROR, status: str = "FAILED") -> list[str]:
    """End the runs still RUNNING whose owner is gone, as ``status`` (FAILED or KILLED) with tags ``outcome``
    (failed or killed) and ``error``; the ids it ended."""
    from mlflow.tracking import MlflowClient

    from lstm_exp.common.ownership import owner_alive

    client = MlflowClient(uri)
    ended = []
    for run_id in run_ids:
        run = client.get_run(run_id)  # read again: never end a run that ended, or whose owner is alive
        if run.info.status != "RUNNING" or owner_alive(run.data.tags) is not False:
            continue
        client.set_tag(run_id, "outcome", "killed" if status == "KILLED" else "failed")
        client.set_tag(run_id, "error", error)
        client.set_terminated(run_id, status)
        ended.append(run_id)
    return ended


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
    """Refuse a local store that does not exist (MLflow would silently create an empty one)."""
    import mlflow

    from lstm_exp.tracking.run import sqlite_file

    with tracking_uri(uri):
        resolved = mlflow.get_tracking_uri()
    local = None
    if resolved.startswith("sqlite:///"):
        local = sqlite_file(resolved)
    elif resolved.startswith("file:"):
        local = re.sub(r"^file:(//)?", "", resolved)
    elif "://" not in resolved and resolved not in {"databricks", "uc"}:
        local = resolved
    if local is not None and not Path(local).exists():
        raise UserError(f"no MLflow store at {local} (run from the launch directory or pass --uri)")


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
    print(stale.to_string(index=False))
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

    try:
        return build_report(args)
    except (UserError, MlflowException, OSError) as e:
        return complain(first_line(e))

"""The statistics of a report: runs grouped by the factors that vary, and per group the runs, failures and
divergences, the divergence rate with its Wilson 95 % interval, the median first-divergence step, the median and IQR
of the final loss, and the wall time; as a DataFrame and as a printed table."""

from __future__ import annotations

import difflib

import numpy as np
import pandas as pd

from lstm_exp.common.errors import UserError
from lstm_exp.tracking.queries import column

# scipy is imported on the first interval (about 1.2 s).

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

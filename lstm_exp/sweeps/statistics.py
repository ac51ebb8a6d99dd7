"""The statistics of a report: runs grouped by the factors that vary, and per group the runs, failures and
divergences, the divergence rate with its Wilson 95 % interval, the first-divergence steps, the Kaplan-Meier
survival (the fraction of runs not yet diverged by a step), the median and IQR of the final loss, and the wall time;
as a DataFrame and as a printed table."""

from __future__ import annotations

import difflib
import os

import numpy as np
import pandas as pd

from lstm_exp.common.errors import UserError
from lstm_exp.sweeps.survival import survival_curves, survival_median
from lstm_exp.tracking.queries import column

# scipy is imported on the first interval (about 1.2 s).

# Config keys that say how a run was launched or logged, not what was trained (resume: a checkpoint to go on from).
RUN_KEYS = ("seed", "progress", "resume", "blas_threads", "checkpoint.every")
RUN_KEY_PREFIXES = ("hydra.", "tracking.")

# Values a param has when it was not set.
UNSET = ("", "None", "null")

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
    "first_div_min",
    "first_div_max",
    "surv_median",
    "loss_median",
    "loss_q25",
    "loss_q75",
    "wall_s",
)


# ---------------------------------------------------------------------------------------------------- the runs


def normal_path(text: str) -> str:
    """A file path spelled one way: ``~`` expanded, ``.``, ``..`` and doubled separators removed."""
    return os.path.normpath(os.path.expanduser(text))


def normal_param(key: str, value):
    """A param value with its file path normalised: ``task.corpus``, and the file of ``model.impl=path.py:Class``."""
    if not isinstance(value, str) or value in UNSET:
        return value
    if key == "task.corpus":
        return normal_path(value)
    source, sep, name = value.rpartition(":")
    if key == "model.impl" and sep and source.endswith(".py"):
        return f"{normal_path(source)}:{name}"
    return value


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """The runs a report is about, with comparable params: runs of a mode other than ``train`` (a diagnosis, a
    gradient check) left out, file paths normalised (``~/books/a.txt`` and ``/home/me/books/a.txt`` are one corpus)."""
    mode = column(df, "params.mode")
    runs = df[~(mode.notna() & mode.ne("train"))].copy()
    for key in ("task.corpus", "model.impl"):
        if f"params.{key}" in runs.columns:
            runs[f"params.{key}"] = runs[f"params.{key}"].map(lambda v, k=key: normal_param(k, v))
    runs.attrs = dict(df.attrs)
    return runs


def param_columns(df: pd.DataFrame) -> list[str]:
    """The config keys logged as params (column names without the ``params.`` prefix)."""
    return [c.removeprefix("params.") for c in df.columns if c.startswith("params.")]


def is_condition(key: str) -> bool:
    """Whether a config key describes the experimental condition (not the seed, nor how the run was launched)."""
    return key not in RUN_KEYS and not key.startswith(RUN_KEY_PREFIXES)


def varied_factors(df: pd.DataFrame) -> list[str]:
    """The condition params whose values differ across the runs, by name.

    A param present in only some runs with a single value where present (an option's own default, such
    as ``optim.b1`` when Adam is swept against SGD, or a param that older runs did not log) is implied by
    the factor that chose the option: it is no factor of its own.
    """
    keys = sorted(param_columns(df))  # by name: the order of MLflow's columns depends on the runs found first
    return [key for key in keys if is_condition(key) and df[f"params.{key}"].nunique(dropna=True) > 1]


def natural_key(values: pd.Series) -> pd.Series:
    """Sort key: numbers by value when every value is numeric ("null" after them), otherwise text."""
    text = values.astype(str)
    known = values.notna() & text.ne("null")
    numbers = pd.to_numeric(text.where(known), errors="coerce")
    if numbers[known].notna().all():
        return numbers.mask(text.eq("null"), np.inf)
    return text


def readable(key: str, values: pd.Series) -> pd.Series:
    """Factor values as a reader wants them: ``model.impl`` as its class name (``core`` for the built-in core), or
    as the whole ``file:Class`` where two implementations share a class name."""
    if key != "model.impl":
        return values
    text = values.astype(str)
    spec = text.where(values.notna() & ~text.isin(UNSET), "core")
    names = spec.str.rpartition(":")[2]
    return names.where(spec.groupby(names).transform("nunique").eq(1), spec)


def divergence_step(df: pd.DataFrame) -> pd.Series:
    """The step each run diverged at: tag ``diverged_at_step`` (NaN and loss divergences), else ``nan.first_step``
    (which older runs set on every divergence)."""
    step = pd.to_numeric(column(df, "tags.diverged_at_step"), errors="coerce")
    return step.fillna(pd.to_numeric(column(df, "tags.nan.first_step"), errors="coerce"))


def per_run(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """One row per run: its factor values and what the summary aggregates (flags, steps, loss, time).

    ``duration`` is what the survival analysis reads: a diverged run's divergence step, or the last step (from 0)
    a completed run that did not diverge trained — it is censored there.
    """
    status = column(df, "status")
    outcome = column(df, "tags.outcome").fillna("").astype(str)
    completed = status.eq("FINISHED")
    diverged = completed & outcome.str.startswith("diverged")
    loss = pd.to_numeric(column(df, "tags.final_loss"), errors="coerce")
    if "metrics.train_loss" in df.columns:
        loss = loss.fillna(df["metrics.train_loss"])
    wall = pd.to_datetime(column(df, "end_time"), utc=True) - pd.to_datetime(column(df, "start_time"), utc=True)
    div_step = divergence_step(df).where(diverged)
    last_step = pd.to_numeric(column(df, "params.steps"), errors="coerce") - 1
    last_step = last_step.fillna(np.inf)  # steps not logged: censored after every divergence
    runs = pd.DataFrame({key: column(df, f"params.{key}") for key in by}, index=df.index)
    return runs.assign(
        run_id=column(df, "run_id"),
        failed=status.eq("FAILED"),
        completed=completed,
        diverged=diverged,
        div_step=div_step,
        duration=div_step.where(diverged, last_step).where(completed),
        final_loss=loss.where(completed & ~diverged),
        wall_s=wall.dt.total_seconds().where(completed),
    )


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


def group_ids(runs: pd.DataFrame, factors: list[str]) -> pd.Series:
    """Each run's condition as a number 0, 1, ..., the conditions numbered in natural order of their values."""
    codes = runs.groupby(factors, dropna=False, sort=False).ngroup()
    firsts = runs[factors].groupby(codes).first()
    order = firsts.sort_values(factors, key=natural_key, na_position="last", kind="stable").index
    return codes.map(pd.Series(np.arange(len(order)), index=order))


def grouped_runs(df: pd.DataFrame, by: list[str] | None = None) -> tuple[list[str], pd.DataFrame]:
    """The grouping factors and ``per_run``'s rows with ``gid``, the condition's number (its row in the summary).
    Without a factor every run is in one group, "all"."""
    df = prepare(df)
    factors = resolve_factors(df, by)
    runs = per_run(df, factors)
    if not factors:
        runs, factors = runs.assign(group="all"), ["group"]
    return factors, runs.assign(gid=group_ids(runs, factors) if len(runs) else 0)


# ---------------------------------------------------------------------------------------------------- statistics


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (NaNs when n is 0)."""
    from scipy.stats import binomtest

    if n == 0:
        return float("nan"), float("nan")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def quantile(q: float):
    """An aggregation taking the q-quantile of the non-missing values."""

    def agg(values: pd.Series) -> float:
        return values.quantile(q)

    agg.__name__ = f"q{round(q * 100)}"
    return agg


def summary_table(runs: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """``summarise`` on ``grouped_runs``'s rows: one row per ``gid``, in that order."""
    summary = runs.groupby("gid").agg(
        **{key: (key, "first") for key in factors},
        runs=("failed", "size"),
        failed=("failed", "sum"),
        completed=("completed", "sum"),
        diverged=("diverged", "sum"),
        first_div_step=("div_step", "median"),
        first_div_min=("div_step", "min"),
        first_div_max=("div_step", "max"),
        loss_median=("final_loss", "median"),
        loss_q25=("final_loss", quantile(0.25)),
        loss_q75=("final_loss", quantile(0.75)),
        wall_s=("wall_s", "median"),
    )
    medians = {gid: survival_median(km) for gid, km in survival_curves(runs).items()}
    summary["surv_median"] = pd.Series(medians, dtype=float).reindex(summary.index)
    counts = summary[["runs", "failed", "completed", "diverged"]].astype(int)
    bounds = [wilson(k, n) for k, n in zip(counts["diverged"], counts["completed"], strict=True)]
    summary[counts.columns] = counts
    summary["div_rate"] = (counts["diverged"] / counts["completed"].where(counts["completed"] > 0)).astype(float)
    summary["div_low"] = [low for low, _ in bounds]
    summary["div_high"] = [high for _, high in bounds]
    for key in factors:
        summary[key] = readable(key, summary[key])
    return summary.reset_index(drop=True)[[*factors, *STATS]]


def summarise(df: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """One row per condition (by default the varied factors; one row "all" when nothing varies).

    Only runs of ``mode=train``, with path params normalised (``prepare``). Columns: the factors, then runs;
    failed (crashed: status FAILED); completed (status FINISHED, the divergence rate's denominator); diverged
    (completed with outcome ``diverged_*``); div_rate with its Wilson 95 % bounds div_low/div_high;
    first_div_step, first_div_min, first_div_max (median, min and max divergence step of the diverged runs);
    surv_median (the Kaplan-Meier median survival step of the completed runs: the first step by which half of
    them are estimated to have diverged; NaN if that is never reached); loss_median/loss_q25/loss_q75 (final
    loss of the completed runs that did not diverge); wall_s (median wall time of the completed runs, seconds).
    """
    factors, runs = grouped_runs(df, by)
    return summary_table(runs, factors)

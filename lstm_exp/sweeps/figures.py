"""The report's figures: the divergence rate per group with its interval, and the loss curves per group."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lstm_exp.common.figures import pyplot, save
from lstm_exp.sweeps.statistics import group_labels, label, natural_key, per_run, resolve_factors
from lstm_exp.tracking.queries import column

# MLflow's client is imported only to read metric histories.


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

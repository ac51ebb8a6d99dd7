"""What a sweep's parent run says in MLflow: the answer per group — runs, diverged, the rate with its Wilson 95 %
interval, the median first-divergence step, the median final loss — as its description (markdown the run page
renders), as metrics (one per group and statistic: the runs table can sort and chart them) and as a table."""

from __future__ import annotations

import math
import re

import pandas as pd

from lstm_exp.sweeps.labels import factor_columns

# summary column -> the parent's metric name for it (per group)
METRICS = {
    "runs": "runs",
    "diverged": "diverged",
    "div_rate": "divergence_rate",
    "div_low": "divergence_rate_low",
    "div_high": "divergence_rate_high",
    "first_div_step": "median_divergence_step",
    "loss_median": "median_final_loss",
}


def group_names(summary: pd.DataFrame) -> list[str]:
    """A name per group usable in an MLflow metric name: ``optim.clip 0`` (only letters, digits, ``_ - . /``,
    spaces and colons are allowed there)."""
    factors = factor_columns(summary)
    names = []
    for _, row in summary.iterrows():
        text = " ".join(f"{f} {row[f]}" for f in factors) if factors != ["group"] else str(row["group"])
        names.append(re.sub(r"[^\w.\- :/]", "_", text))
    return names


def group_metrics(summary: pd.DataFrame) -> dict:
    """``{"divergence_rate/optim.clip 0": 0.83, ...}``: every finite per-group statistic."""
    metrics = {}
    for name, (_, row) in zip(group_names(summary), summary.iterrows(), strict=True):
        for column, metric in METRICS.items():
            value = row.get(column)
            if value is not None and not pd.isna(value) and math.isfinite(float(value)):
                metrics[f"{metric}/{name}"] = float(value)
    return metrics


def cell(value, fmt: str) -> str:
    return "–" if value is None or pd.isna(value) else format(value, fmt)


def description(line: str, summary: pd.DataFrame, report_dir) -> str:
    """The parent's description: the sweep's line, the per-group table in markdown, and where the report is."""
    factors = factor_columns(summary)
    head = [*factors, "runs", "diverged", "rate (95 % interval)", "median divergence step", "median final loss"]
    rows = [
        [
            *(str(row[f]) for f in factors),
            str(int(row["runs"])),
            str(int(row["diverged"])),
            f"{cell(row['div_rate'], '.2f')} [{cell(row['div_low'], '.2f')}, {cell(row['div_high'], '.2f')}]",
            cell(row["first_div_step"], ".0f"),
            cell(row["loss_median"], ".4g"),
        ]
        for _, row in summary.iterrows()
    ]
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(
        [
            line,
            "",
            *table,
            "",
            "The final loss is over the runs that did not diverge. Figures and data: this run's `report/` artifacts "
            f"(also in `{report_dir}`).",
        ]
    )


def mlflow_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary for MLflow's table view, whose columns cannot hold a dot (``optim.clip`` would show empty)."""
    return summary.rename(columns={c: c.replace(".", "_") for c in summary.columns})

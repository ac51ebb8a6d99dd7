"""The report's summary as a printed table: each estimate with its interval, factor names and values shortened when
the table would be too wide, and two tables side by side when even that is."""

from __future__ import annotations

import pandas as pd

from lstm_exp.sweeps.labels import factor_columns, short_names, shorten, show

TABLE_WIDTH = 150  # a wider table is printed with short factor names, then as two tables
VALUE_WIDTH = 28  # longer factor values (paths) are shortened from the left when the table is too wide


def number(fmt: str):
    """A cell formatter: ``fmt`` for numbers, "-" for missing values."""

    def cell(value) -> str:
        return "-" if pd.isna(value) else format(value, fmt)

    return cell


def spread(summary: pd.DataFrame, middle: str, low: str, high: str, fmt: str) -> pd.Series:
    """``middle [low, high]`` per row, each number in ``fmt`` ("-" when the middle is missing)."""
    cell = number(fmt)
    rows = zip(summary[middle], summary[low], summary[high], strict=True)
    return pd.Series(["-" if pd.isna(m) else f"{cell(m)} [{cell(lo)}, {cell(hi)}]" for m, lo, hi in rows])


def statistics_cells(summary: pd.DataFrame) -> pd.DataFrame:
    """The statistics as printed: counts, then each estimate with its interval or range in brackets."""
    return pd.DataFrame(
        {
            "runs": summary["runs"],
            "failed": summary["failed"],
            "completed": summary["completed"],
            "diverged": summary["diverged"],
            "div_rate [95% CI]": spread(summary, "div_rate", "div_low", "div_high", ".2f"),
            "first_div_step [min, max]": spread(summary, "first_div_step", "first_div_min", "first_div_max", ".0f"),
            "surv_median": summary["surv_median"].map(number(".0f")),
            "loss_median [IQR]": spread(summary, "loss_median", "loss_q25", "loss_q75", ".4g"),
            "wall_s": summary["wall_s"].map(number(".1f")),
        }
    )


def factor_cells(summary: pd.DataFrame, short: bool) -> pd.DataFrame:
    """The factor columns as printed; ``short``: names by their last part and long values cut (see ``shorten``)."""
    factors = factor_columns(summary)
    names = short_names(factors) if short else {k: k for k in factors}
    cut = VALUE_WIDTH if short else None
    return pd.DataFrame({names[k]: [shorten(show(v), cut) for v in summary[k]] for k in factors})


def widest(text: str) -> int:
    """The length of the longest line of ``text``."""
    return max(map(len, text.splitlines()))


def format_table(summary: pd.DataFrame) -> str:
    """The summary as a text table: rates to 2 decimals with the 95 % interval, steps with their range, losses to 4
    significant digits with the IQR, "-" for none. When wider than ``TABLE_WIDTH``, factor names are shortened and
    long values cut; when still too wide, the factors and the statistics are printed as two tables joined by a
    condition number ``#``."""
    if summary.empty:
        return "(no runs)"
    summary = summary.reset_index(drop=True)
    stats = statistics_cells(summary)
    for short in (False, True):
        text = pd.concat([factor_cells(summary, short), stats], axis=1).to_string(index=False)
        if widest(text) <= TABLE_WIDTH:
            return text
    number_column = pd.DataFrame({"#": range(1, len(summary) + 1)})
    factors = pd.concat([number_column, factor_cells(summary, short=True)], axis=1).to_string(index=False)
    return factors + "\n\n" + pd.concat([number_column, stats], axis=1).to_string(index=False)

"""Names for a report's groups: the factors that vary and their values, shortened where a table or a figure needs
it, and the factors that do not vary, said once."""

from __future__ import annotations

import pandas as pd

from lstm_exp.sweeps.statistics import STATS


def factor_columns(summary: pd.DataFrame) -> list[str]:
    """The factor columns of a summary (everything that is not one of its statistics)."""
    return [c for c in summary.columns if c not in STATS]


def label_factors(summary: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The factors that tell the summary's rows apart, and the ones with one value in every row (for a title). With
    one row, or when nothing differs, every factor labels the row."""
    factors = factor_columns(summary)
    varying = [k for k in factors if summary[k].nunique(dropna=False) > 1]
    if not varying:
        return factors, []
    return varying, [k for k in factors if k not in varying]


def group_labels(summary: pd.DataFrame, width: int | None = None) -> list[str]:
    """A label per summary row from the factors that vary, e.g. ``optim.clip=5, init.scheme=he`` (values longer
    than ``width`` shortened, see ``shorten``)."""
    factors, _ = label_factors(summary)
    if factors == ["group"]:
        return summary["group"].astype(str).tolist()
    return [label(factors, [row[k] for k in factors], width) for _, row in summary.iterrows()]


def fixed_label(summary: pd.DataFrame) -> str:
    """``k=v, ...`` for the grouping factors that have one value in every row ("" if none)."""
    _, fixed = label_factors(summary)
    return label(fixed, [summary[k].iloc[0] for k in fixed]) if fixed else ""


def label(factors: list[str], values, width: int | None = None) -> str:
    """``k=v, ...`` for a condition; a param the runs did not log shows as ``(unset)``; values longer than ``width``
    shortened."""
    return ", ".join(f"{k}={shorten(show(v), width)}" for k, v in zip(factors, values, strict=True))


def show(value) -> str:
    """A factor value as text, ``(unset)`` for a param the runs did not log."""
    return "(unset)" if pd.isna(value) else str(value)


def shorten(text: str, width: int | None) -> str:
    """``text`` cut to ``width`` characters from its end, at a ``/`` if it has one (a path keeps its file name):
    ``…/books/alice.txt``. None: whole."""
    if width is None or len(text) <= width:
        return text
    tail = text[-(width - 1) :]
    cut = tail.find("/")
    return "…" + (tail[cut:] if cut > 0 else tail)


def short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its last part where that is unambiguous (``optim.clip_mode`` -> ``clip_mode``)."""
    last = [key.rpartition(".")[2] for key in keys]
    return {key: short if last.count(short) == 1 else key for key, short in zip(keys, last, strict=True)}

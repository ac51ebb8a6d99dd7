"""Survival of runs (Kaplan-Meier): the fraction of a group's runs not yet diverged by each step, a run that ended
without diverging censored at its last step; and its median, the first step where half have diverged."""

from __future__ import annotations

import numpy as np
import pandas as pd


def kaplan_meier(durations, events) -> pd.DataFrame:
    """The Kaplan-Meier estimate of the fraction of runs not yet diverged, one row per step where a run diverged or
    was censored (runs without a duration left out).

    ``durations``: per run, its divergence step (``events`` True) or the last step it trained without diverging
    (censored). Columns: step; at_risk, the runs neither diverged nor censored before the step (a run censored at
    the step was still at risk there); events, the divergences at the step; censored, the runs that ended there;
    survival, S(step) = prod over steps s <= step of (1 - events(s) / at_risk(s)).
    """
    t = np.asarray(durations, dtype=float)
    e = np.asarray(events, dtype=bool)
    known = ~np.isnan(t)
    steps, where = np.unique(t[known], return_inverse=True)
    died = np.bincount(where, weights=e[known], minlength=len(steps)).astype(int)
    ended = np.bincount(where, minlength=len(steps)) - died
    at_risk = known.sum() - np.concatenate([[0], np.cumsum(died + ended)[:-1]]).astype(int)
    survival = np.cumprod(1.0 - died / np.maximum(at_risk, 1))
    steps = steps.astype(int) if np.isfinite(steps).all() else steps  # inf: a run whose steps were not logged
    return pd.DataFrame({"step": steps, "at_risk": at_risk, "events": died, "censored": ended, "survival": survival})


def survival_median(km: pd.DataFrame) -> float:
    """The median survival step of a Kaplan-Meier table: the first step where S <= 0.5 (NaN if S stays above)."""
    reached = km["step"][km["survival"] <= 0.5]
    return float(reached.iloc[0]) if len(reached) else float("nan")


def survival_curves(runs: pd.DataFrame) -> dict[int, pd.DataFrame]:
    """Per condition (``gid``), the Kaplan-Meier table of its completed runs (the divergence rate's runs)."""
    done = runs[runs["completed"]]
    return {gid: kaplan_meier(group["duration"], group["diverged"]) for gid, group in done.groupby("gid")}

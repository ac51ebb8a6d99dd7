"""The report's figures: the divergence rate per condition with its interval; the loss curves per condition over
the number of runs still alive; the Kaplan-Meier survival of the runs (the fraction not yet diverged by a step).

No survivorship in the loss curves: a run that diverged counts as +inf at every step after its divergence step, so a
condition whose runs diverge can never look better than one whose runs do not. A run that ended without diverging
is censored (no longer counted) after its last step.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from lstm_exp.common.figures import pyplot, save
from lstm_exp.sweeps.labels import fixed_label, group_labels, label_factors, shorten, show

# MLflow's client is imported only to read metric histories.

CURVE_COLUMNS = ["group", "step", "q25", "median", "q75", "alive", "n"]
LABEL_WIDTH = 24  # longer factor values (paths) are shortened from the left in tick labels
LEGEND_WIDTH = 50  # legend entries are wrapped at this many characters


def palette(n: int) -> list:
    """A colour per condition (summary row), the same in every figure and never one for two conditions: matplotlib's
    ten, twenty past 10 conditions, a continuous map past 20."""
    from matplotlib import colormaps

    if n <= 10:
        return [f"C{i}" for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](i / (n - 1)) for i in range(n)]


def darker(colour) -> tuple:
    """``colour`` darkened, for text (the pale colours of a large palette are unreadable as text)."""
    from matplotlib.colors import to_rgb

    return tuple(0.7 * c for c in to_rgb(colour))


def legend_labels(summary: pd.DataFrame) -> list[str]:
    """Per condition, its label and the runs behind its curves: ``optim.clip=0.0 (n=6, 5 diverged, half by step
    7)``. The curves are over the completed runs (the divergence rate's): "half by step N" is their Kaplan-Meier
    median survival (where the median loss turns +inf); the other runs (crashed, killed, unfinished) are said."""
    entries = []
    for name, row in zip(group_labels(summary, LABEL_WIDTH), summary.itertuples(), strict=True):
        notes = [f"n={row.completed}", f"{row.diverged} diverged"]
        if pd.notna(row.surv_median):
            notes.append(f"half by step {row.surv_median:.0f}")
        if row.runs > row.completed:
            notes.append(f"{row.runs - row.completed} not completed, left out")
        entries.append(textwrap.fill(f"{name} ({', '.join(notes)})", LEGEND_WIDTH, subsequent_indent="  "))
    return entries


def titled(ax, summary: pd.DataFrame, text: str) -> None:
    """An axes title: ``text`` and, on a second line, the grouping factors that have one value throughout."""
    fixed = fixed_label(summary)
    ax.set_title(f"{text}\n{fixed}" if fixed else text, fontsize=9, loc="left")


def outside_legend(fig, ax, extra=()) -> None:
    """The legend of ``ax``'s labelled lines (and ``extra`` handles) on the right of the figure, off the data."""
    handles, labels = ax.get_legend_handles_labels()
    handles, labels = [*handles, *extra], [*labels, *(h.get_label() for h in extra)]
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)


# ---------------------------------------------------------------------------------------------------- divergence


def tick_labels(summary: pd.DataFrame) -> tuple[list[str], str]:
    """Labels for the conditions on an axis and the axis title: with one varying factor its values (the factor
    names the axis), otherwise one ``k=v`` line per factor; long values shortened."""
    factors, _ = label_factors(summary)
    if factors == ["group"]:
        return summary["group"].astype(str).tolist(), ""
    if len(factors) == 1:
        return [shorten(show(v), LABEL_WIDTH) for v in summary[factors[0]]], factors[0]
    lines = [[f"{k}={shorten(show(row[k]), LABEL_WIDTH)}" for k in factors] for _, row in summary.iterrows()]
    return ["\n".join(line) for line in lines], "condition"


def tick_layout(labels: list[str]) -> tuple[float, bool]:
    """The width of a figure with one bar per label, and whether the labels must be rotated to fit (past 14 in)."""
    longest = max(len(line) for text in labels for line in text.splitlines())
    slot = max(0.9, 0.075 * longest)  # inches a label needs unrotated
    return min(14.0, max(5.0, slot * len(labels) + 1.5)), slot * len(labels) > 14


def plot_divergence(summary: pd.DataFrame, path) -> None:
    """Divergence rate per condition as bars with the Wilson 95 % interval as asymmetric error bars."""
    labels, axis_title = tick_labels(summary)
    rate = summary["div_rate"].to_numpy(dtype=float)
    yerr = np.nan_to_num(
        np.vstack([rate - summary["div_low"].to_numpy(dtype=float), summary["div_high"].to_numpy(dtype=float) - rate])
    )
    x = np.arange(len(summary))
    width, rotate = tick_layout(labels)
    fig, ax = pyplot().subplots(figsize=(width, 4.8), layout="constrained")
    ax.bar(x, np.nan_to_num(rate), yerr=yerr, capsize=4, color="tab:red", alpha=0.7, ecolor="black")
    for xi, k, n in zip(x, summary["diverged"], summary["completed"], strict=True):
        ax.annotate(f"{k}/{n}", (xi, 1.03), ha="center", fontsize=8)  # diverged / completed
    ax.set_xticks(x, labels, fontsize=9, rotation=35 if rotate else 0, ha="right" if rotate else "center")
    if rotate:
        for tick in ax.get_xticklabels():
            tick.set_rotation_mode("anchor")  # the label's end stays at its tick
    ax.set_xlabel(axis_title)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("divergence rate (Wilson 95 % interval)")
    ax.grid(True, axis="y", alpha=0.3)
    titled(ax, summary, "divergence rate per condition (k/n: runs diverged / completed)")
    save(fig, path)


# ---------------------------------------------------------------------------------------------------- loss curves


def metric_histories(client, run_ids, key: str = "train_loss") -> dict[str, pd.Series]:
    """Per run that logged ``key``, its finite values by step (sorted)."""
    histories = {}
    for run_id in run_ids:
        points = client.get_metric_history(run_id, key)
        values = pd.Series({m.step: m.value for m in points}, dtype=float).sort_index()
        values = values[np.isfinite(values)]
        if len(values):
            histories[run_id] = values
    return histories


def divergence_steps(histories: dict[str, pd.Series], runs: pd.DataFrame) -> pd.Series:
    """Per run id, the step it diverged at (NaN: it did not); a diverged run that did not record the step is taken
    to have diverged at its last logged step (0 if it logged nothing)."""
    by_id = runs.set_index("run_id")
    steps = by_id["div_step"].astype(float)
    last = pd.Series({run_id: h.index[-1] for run_id, h in histories.items()}, dtype=float).reindex(steps.index)
    return steps.where(~by_id["diverged"] | steps.notna(), last.fillna(0.0))


def curve_grid(histories: dict[str, pd.Series], div_steps: pd.Series) -> np.ndarray:
    """The steps a condition's curves are evaluated at: every step one of its runs logged, and each divergence step
    and the step after it (the band changes exactly where a run diverges) — up to the last step of the runs that
    did not diverge (no run trained after it), or the step after the last divergence if every run diverged."""
    div = div_steps.dropna().to_numpy(dtype=float)
    logged = [h.index.to_numpy(dtype=float) for h in histories.values()]
    ends = [h.index[-1] for run_id, h in histories.items() if np.isnan(div_steps.get(run_id, np.nan))]
    steps = np.unique(np.concatenate([*logged, div, div + 1]))
    return steps[steps <= (max(ends) if ends else div.max(initial=-1) + 1)]


def run_curve(history: pd.Series, grid: np.ndarray, div_step: float) -> np.ndarray:
    """A run's loss on ``grid``: interpolated between its logged points and NaN (not counted) outside them; if it
    diverged, held at its last value up to its divergence step and +inf after it."""
    if history.empty:
        values = np.full(len(grid), np.nan)
    else:
        values = np.interp(grid, history.index.to_numpy(dtype=float), history.to_numpy(), left=np.nan, right=np.nan)
    if np.isnan(div_step):
        return values
    if not history.empty:
        values = np.where((grid > history.index[-1]) & (grid <= div_step), history.iloc[-1], values)
    return np.where(grid > div_step, np.inf, values)


def order_quantile(values: np.ndarray, q: float) -> np.ndarray:
    """Per column of ``values`` (runs x steps; NaN: not counted), the q-quantile as an order statistic, the
    (floor(q n) + 1)-th smallest of its n counted values: the smallest value with more than a fraction q of them at
    or below it. No arithmetic between values, so +inf is safe: the q-quantile is +inf exactly when at most a
    fraction q of the counted runs are finite — for the median, once half the runs have diverged, as the
    Kaplan-Meier median is where S <= 0.5. NaN where no run is counted."""
    ordered = np.sort(values, axis=0)  # NaN sorts last, after +inf
    n = np.sum(~np.isnan(values), axis=0)
    k = np.minimum(np.floor(q * n).astype(int), np.maximum(n - 1, 0))
    picked = np.take_along_axis(ordered, k[None, :], axis=0)[0]
    return np.where(n > 0, picked, np.nan)


def condition_band(histories: dict[str, pd.Series], runs: pd.DataFrame) -> pd.DataFrame:
    """A condition's curves by step: the quartiles q25, median, q75 over its n counted runs (a diverged run as +inf
    after its divergence step), and alive, how many of them are finite (not diverged before the step)."""
    div = divergence_steps(histories, runs)
    grid = curve_grid(histories, div)
    if not len(grid):
        return pd.DataFrame(columns=CURVE_COLUMNS[1:], dtype=float)
    empty = pd.Series(dtype=float)
    matrix = np.array([run_curve(histories.get(run_id, empty), grid, div[run_id]) for run_id in div.index])
    return pd.DataFrame(
        {
            "step": grid.astype(int),
            "q25": order_quantile(matrix, 0.25),
            "median": order_quantile(matrix, 0.5),
            "q75": order_quantile(matrix, 0.75),
            "alive": np.isfinite(matrix).sum(axis=0),
            "n": (~np.isnan(matrix)).sum(axis=0),
        }
    )


def loss_curves(runs: pd.DataFrame, names: list[str], uri: str | None) -> pd.DataFrame:
    """The loss curves' data: per condition (``gid``; ``names`` its label) over its completed runs, the train_loss
    quartiles, alive and n by step (``condition_band``), as columns group, step, q25, median, q75, alive, n."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    frames = []
    for gid, group in runs[runs["completed"]].groupby("gid"):
        band = condition_band(metric_histories(client, group["run_id"]), group)
        if len(band):
            frames.append(band.assign(group=names[gid]))
    return pd.concat(frames, ignore_index=True)[CURVE_COLUMNS] if frames else pd.DataFrame(columns=CURVE_COLUMNS)


LOSS_CEILING = (
    1e200  # a loss axis ends here: a run whose loss passed it has blown up (and log axes overflow near 1e308)
)


def loss_limits(curves: pd.DataFrame) -> tuple[float, float]:
    """The y range of the loss axes (log): the finite positive quartiles with room above for the notes."""
    values = curves[["q25", "median", "q75"]].to_numpy(dtype=float).ravel()
    values = values[np.isfinite(values) & (values > 0)]
    if not len(values):
        return 0.1, 10.0
    return values.min() / 1.3, min(values.max() * 2.5, LOSS_CEILING)


def draw_band(ax, band: pd.DataFrame, top: float, slot: tuple[int, int], colour, name: str) -> None:
    """A condition's median line and IQR band; where a quartile is +inf the band reaches the top of the axes, where
    the median is +inf the line stops (``mark_median_divergence``)."""
    step = band["step"].to_numpy(dtype=float)
    median = band["median"].to_numpy(dtype=float)
    marker = "o" if len(band) < 30 else None
    shown = np.where(np.isfinite(median), np.minimum(median, top), np.nan)  # above the ceiling: at the top
    ax.plot(step, shown, color=colour, lw=1.3, marker=marker, ms=3, label=name)
    q25, q75 = (np.minimum(band[q].to_numpy(dtype=float), top) for q in ("q25", "q75"))
    ax.fill_between(step, q25, q75, color=colour, alpha=0.2, lw=0)
    mark_median_divergence(ax, step, median, top, slot, colour)


def mark_median_divergence(ax, step: np.ndarray, median: np.ndarray, top: float, slot: tuple[int, int], colour) -> None:
    """Where a median turns +inf: a cross on its last finite point, a dotted line up to the top of the axes, a strip
    along the top of the axes over the steps where the median is +inf (``slot``: this strip's place among the
    strips and their number, stacked down within the top 15 % of the axes) and, for up to 3 strips, the note
    "median diverged at step N" (N: that point's step, by which half the runs had diverged; with more, notes would
    overlap and the legend says it)."""
    row, rows = slot
    gone = np.isinf(median)
    if not gone.any():
        return
    first = int(np.argmax(gone))
    x, y = (step[first - 1], median[first - 1]) if first > 0 else (step[0], top)
    ax.plot([x], [y], marker="X", ms=9, color=colour, mec="black", mew=0.6, zorder=5)
    ax.vlines(x, y, top, colors=[colour], linestyles=":", lw=1.3)
    pitch = min(0.025, 0.15 / rows)  # in axes fractions
    low = 0.995 - pitch * (row + 1)
    ax.fill_between(step, low, low + 0.7 * pitch, where=gone, color=colour, transform=ax.get_xaxis_transform(), lw=0)
    if rows <= 3:
        note = {"fontsize": 8, "color": darker(colour), "fontweight": "bold", "textcoords": "offset points"}
        box = {"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8}
        ax.annotate(f"median diverged at step {x:.0f}", (x, y), xytext=(8, -4 - 12 * row), bbox=box, **note)


def plot_loss_curves(curves: pd.DataFrame, summary: pd.DataFrame, path) -> None:
    """Per condition the median train_loss with its IQR band (log y; a diverged run counts as +inf after its
    divergence step) over, below, the number of its runs still alive at each step."""
    fig, (ax, alive_ax) = pyplot().subplots(
        2, 1, sharex=True, figsize=(11, 6.5), height_ratios=(3, 1), layout="constrained"
    )
    bottom, top = loss_limits(curves)
    ax.set_yscale("log")
    ax.set_ylim(bottom, top)  # before anything is drawn: no autoscaling over values near the float limit
    colours = palette(len(summary))
    gone = curves.loc[np.isinf(curves["median"].to_numpy(dtype=float)), "group"].unique().tolist()
    for row, (name, entry) in enumerate(zip(group_labels(summary), legend_labels(summary), strict=True)):
        band = curves[curves["group"].eq(name)]
        if len(band):
            slot = (gone.index(name) if name in gone else 0, max(len(gone), 1))
            draw_band(ax, band, top, slot, colours[row], entry)
            alive_ax.step(band["step"], band["alive"], where="post", color=colours[row], lw=1.3)
    ax.set_ylabel("train loss (median, IQR band)")
    ax.grid(True, alpha=0.3)
    titled(ax, summary, "train loss over the completed runs: a diverged run counts as +inf after its divergence step")
    values = curves[["q25", "median", "q75"]].to_numpy(dtype=float)
    if (np.isfinite(values) & (values > top)).any():  # said, so a flat line along the top is not read as a plateau
        ax.axhline(top, color="black", lw=0.8, ls="--")
        ax.text(0.01, 0.97, f"losses above {top:.0e} are drawn on this line", transform=ax.transAxes, fontsize=8,
                va="top", bbox={"fc": "white", "ec": "none", "alpha": 0.8})  # fmt: skip
    alive_axes(alive_ax, int(curves["n"].max()) if len(curves) else 1)
    outside_legend(fig, ax, loss_notes())
    save(fig, path)


def alive_axes(ax, most: int) -> None:
    """The axes of the runs alive: whole numbers from 0 to ``most``, the steps below."""
    from matplotlib.ticker import MaxNLocator

    ax.set_ylim(0, max(1, most) + 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("runs alive\n(not diverged)")
    ax.set_xlabel("step")
    ax.grid(True, alpha=0.3)


def loss_notes() -> list:
    """Legend entries saying how the loss curves show +inf."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [
        Patch(color="grey", alpha=0.3, lw=0, label="IQR band (up to the top where q75 is +inf)"),
        Line2D([], [], color="grey", marker="X", mec="black", ls=":", label="last finite median: it diverged here"),
        Patch(color="grey", lw=0, label="strip at the top: median +inf (diverged)"),
    ]


# ---------------------------------------------------------------------------------------------------- survival


def survival_frame(tables: dict[int, pd.DataFrame], names: list[str]) -> pd.DataFrame:
    """The Kaplan-Meier tables of the conditions as one frame: group, step, at_risk, events, censored, survival."""
    frames = [km.assign(group=names[gid]) for gid, km in tables.items()]
    columns = ["group", "step", "at_risk", "events", "censored", "survival"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def plot_survival(tables: dict[int, pd.DataFrame], summary: pd.DataFrame, path) -> None:
    """Per condition the Kaplan-Meier step function of the runs not yet diverged, with a tick where runs ended
    without diverging (censored); earlier conditions drawn wider so coinciding curves stay visible."""
    from matplotlib.lines import Line2D

    fig, ax = pyplot().subplots(figsize=(10, 4.8), layout="constrained")
    entries, colours = legend_labels(summary), palette(len(summary))
    for gid, km in tables.items():
        km = km[np.isfinite(km["step"])]
        x = np.concatenate([[0.0], km["step"].to_numpy(dtype=float)])
        y = np.concatenate([[1.0], km["survival"].to_numpy(dtype=float)])
        width = 1.4 + 0.5 * min(len(summary) - 1 - gid, 4)
        ax.step(x, y, where="post", color=colours[gid], lw=width, alpha=0.85, label=entries[gid])
        ended = km[km["censored"] > 0]
        ax.plot(ended["step"], ended["survival"], "|", ms=14, mew=2, color=colours[gid])
    ax.axhline(0.5, color="grey", ls=":", lw=1, label="S = 0.5: a curve's median survival step")
    ax.set_ylim(0, 1.04)
    ax.set_xlim(left=0)
    ax.set_xlabel("step")
    ax.set_ylabel("fraction of runs not yet diverged")
    ax.grid(True, alpha=0.3)
    titled(ax, summary, "survival (Kaplan-Meier) of the completed runs: an event is a divergence")
    censored = Line2D([], [], color="grey", marker="|", ms=12, mew=2, ls="", label="censored: ended without diverging")
    outside_legend(fig, ax, [censored])
    save(fig, path)

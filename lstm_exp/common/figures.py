"""Figures saved with every run and every report: files only (matplotlib's Agg backend, no display).

Drawing is a per-job cost in a sweep, so figures use fixed margins instead of constrained layout and
major grid lines only on log axes (minor ones double the tick work): 0.38 -> 0.2 s for a loss curve.
"""

from __future__ import annotations

import numpy as np


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported when the first figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path) -> None:
    """Write ``fig`` as a PNG and free it (pyplot keeps every open figure alive otherwise)."""
    fig.savefig(path, dpi=100)
    pyplot().close(fig)


def loss_curve(losses: np.ndarray, grad_norms: np.ndarray, divergence: dict | None, title: str):
    """Per-step train loss and pre-clip gradient norm on log axes; a red line at the divergence step (the
    figure; the caller saves or logs and closes it)."""
    steps = np.arange(len(losses))
    fig, (ax_loss, ax_norm) = pyplot().subplots(2, 1, sharex=True, figsize=(8, 6))
    fig.subplots_adjust(left=0.1, right=0.97, top=0.94, bottom=0.08, hspace=0.08)
    for ax, values, label in ((ax_loss, losses, "train loss"), (ax_norm, grad_norms, "grad norm (pre-clip)")):
        finite = np.isfinite(values) & (values > 0)
        ax.plot(steps[finite], values[finite], lw=0.8)
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if divergence is not None:
            ax.axvline(divergence["step"], color="red", ls="--", lw=1, label=f"diverged at step {divergence['step']}")
    if divergence is not None:
        ax_loss.legend(loc="best")
    ax_norm.set_xlabel("step")
    ax_loss.set_title(title)
    return fig

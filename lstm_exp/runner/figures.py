"""The figure a single run leaves: its train loss and gradient norm at every step, its divergence marked."""

from __future__ import annotations

import numpy as np

from lstm_exp.common.figures import pyplot


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

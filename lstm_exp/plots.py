"""Figures saved with every run: the loss curve (log scale) with the divergence marked."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def loss_curve(losses: np.ndarray, grad_norms: np.ndarray, divergence: dict | None, title: str, path) -> None:
    """Per-step train loss and pre-clip gradient norm on log axes; a red line at the divergence step."""
    steps = np.arange(len(losses))
    fig, (ax_loss, ax_norm) = plt.subplots(2, 1, sharex=True, figsize=(8, 6), constrained_layout=True)
    for ax, values, label in ((ax_loss, losses, "train loss"), (ax_norm, grad_norms, "grad norm (pre-clip)")):
        finite = np.isfinite(values) & (values > 0)
        ax.plot(steps[finite], values[finite], lw=0.8)
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        if divergence is not None:
            ax.axvline(divergence["step"], color="red", ls="--", lw=1, label=f"diverged at step {divergence['step']}")
    if divergence is not None:
        ax_loss.legend(loc="best")
    ax_norm.set_xlabel("step")
    ax_loss.set_title(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)

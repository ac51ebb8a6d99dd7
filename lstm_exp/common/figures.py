"""Figures saved with every run and every report: files only (matplotlib's Agg backend, no display).

Drawing is a per-job cost in a sweep, so figures use fixed margins instead of constrained layout and
major grid lines only on log axes (minor ones double the tick work): 0.38 -> 0.2 s for a loss curve.
"""

from __future__ import annotations

# matplotlib is imported on the first figure (about 0.7 s): a run without figures never pays it.


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

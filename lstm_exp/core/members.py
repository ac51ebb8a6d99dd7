"""The member axis of a population: S independent networks (many seeds of a small LSTM) stacked into one computation.

Every array of a population has a leading member axis: parameters ``(S, ...)``, batches ``(S, B, T, ...)``, states
``(S, B, H)``, and the core's time-major arrays ``(T, S, B, ...)``. These helpers move between those layouts so that
each member's arithmetic is the arithmetic it has alone: its matrix products the same BLAS calls on the same shapes,
its sums over the same elements in the same order; so a member's numbers are, bit for bit, its numbers alone.
"""

from __future__ import annotations

import numpy as np


def member_dims(params: dict) -> int:
    """How many leading member axes the parameters have: 0 (one network) or 1 (a population)."""
    return params["Wh"].ndim - 2


def time_major(a: np.ndarray) -> np.ndarray:
    """A batch-first ``(*M, B, T, X)`` array as a time-major ``(T, *M, B, X)`` view."""
    return np.moveaxis(a, a.ndim - 2, 0)


def batch_first(a: np.ndarray, members: int) -> np.ndarray:
    """A time-major ``(T, *M, B, X)`` array as a batch-first ``(*M, B, T, X)`` view (``members``: len(M))."""
    return np.moveaxis(a, 0, members + 1)


def member_major(a: np.ndarray, members: int) -> np.ndarray:
    """A time-major ``(T, *M, B, X)`` array as ``(*M, T*B, X)``: every member's rows contiguous, as they are alone
    (a product over time, such as a weight gradient, is then one GEMM per member of the shape it has alone)."""
    if members == 0:
        return a.reshape(-1, a.shape[-1])
    m = np.ascontiguousarray(np.moveaxis(a, 0, members))
    return m.reshape(*m.shape[:members], -1, m.shape[-1])


def total(a: np.ndarray, members: int):
    """The sum of an array as a float; with a member axis (``members`` = 1), one per member, each summed as alone."""
    if members == 0:
        return float(np.sum(a))
    # each member's row contiguous and summed along it: the same numbers in the same (pairwise) order as alone
    return np.ascontiguousarray(a).reshape(len(a), -1).sum(axis=1).astype(np.float64)  # float64, as float() makes it


def stack(trees: list[dict]) -> dict:
    """Members' parameter (or gradient) dicts as one population dict: each array gets the leading member axis."""
    return {k: np.stack([t[k] for t in trees]) for k in trees[0]}


def member(tree: dict, s: int) -> dict:
    """Member ``s`` of a population dict, as its own dict of views."""
    return {k: v[s] for k, v in tree.items()}

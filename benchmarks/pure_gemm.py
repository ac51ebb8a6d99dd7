"""The matmuls of one training step of our core, alone: the yardstick of the GEMM-fraction column.

``gemm_step`` runs exactly the matmul shapes of one float64 step on preallocated arrays
(``np.matmul(out=)``); its time over our step's time says how close the core comes to its matmuls alone.
``step_flops`` counts their FLOPs for the GFLOP/s table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from bench_cases import BenchCase, Size


@dataclass(frozen=True)
class Gemm:
    """``count`` matmuls (m, k) x (k, n); ``transposed_a`` when A is a transposed view, as in dW = h^T dA."""

    name: str
    count: int
    m: int
    k: int
    n: int
    transposed_a: bool = False

    @property
    def flops(self) -> int:
        """Multiply-adds counted as 2 FLOPs."""
        return 2 * self.count * self.m * self.k * self.n


def step_gemms(size: Size) -> list[Gemm]:
    """The matmuls of one training step of our core (token ids: the input projection is a gather)."""
    D, H, K, TB = size.input_dim, size.hidden, size.input_dim, size.steps * size.batch
    gemms = [
        Gemm("h Wh (forward, per step)", size.steps, size.batch, H, 4 * H),
        Gemm("head forward", 1, TB, H, K),
        Gemm("head backward dh", 1, TB, K, H),
        Gemm("head backward dWy", 1, H, TB, K, transposed_a=True),
        Gemm("dA Wh^T (backward, per step)", size.steps, size.batch, 4 * H, H),
        Gemm("dWh", 1, H, TB, 4 * H, transposed_a=True),
    ]
    if not size.token_ids:
        gemms += [Gemm("x Wx", 1, TB, D, 4 * H), Gemm("dWx", 1, D, TB, 4 * H, transposed_a=True)]
    return gemms


def step_flops(size: Size) -> int:
    """FLOPs of all matmuls in one step."""
    return sum(g.flops for g in step_gemms(size))


def gemm_operands(gemm: Gemm, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Preallocated float64 A, B and out of one matmul shape (A laid out as in the core)."""
    a = rng.standard_normal((gemm.k, gemm.m)).T if gemm.transposed_a else rng.standard_normal((gemm.m, gemm.k))
    return a, rng.standard_normal((gemm.k, gemm.n)), np.empty((gemm.m, gemm.n))


def gemm_step(case: BenchCase) -> Callable[[], float]:
    """Exactly the matmuls of one float64 step, on preallocated arrays; returns 0."""
    rng = np.random.default_rng(0)
    plan = [(g.count, *gemm_operands(g, rng)) for g in step_gemms(case.size)]

    def step() -> float:
        for count, a, b, out in plan:
            for _ in range(count):
                np.matmul(a, b, out=out)
        return 0.0

    return step

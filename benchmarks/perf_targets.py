"""The core's performance targets, judged PASS / MISS from one thread count's medians and ratios."""

from __future__ import annotations

import numpy as np
from bench_cases import Size
from result_tables import row_metrics
from timing_harness import Timings

TARGET_TORCH64 = 0.8  # ours f64 <= 0.8 x torch f64 at every size
TARGET_TORCH32 = 1.0  # ours f32 <= 1.0 x torch f32 at every size
TARGET_NAIVE_SPEEDUP = 8.0  # at B = 32
TARGET_GEMM_FRACTION = 0.75  # at B = 32, H = 256


def target_line(name: str, checks: list[tuple[str, float]], limit: float, higher_is_better: bool) -> str:
    """PASS/MISS of one target over (size label, value) pairs, naming the worst size."""
    checks = [(label, v) for label, v in checks if np.isfinite(v)]
    if not checks:
        return f"  n/a   {name} (not measured: torch not installed, or size not run)"
    sign = -1.0 if higher_is_better else 1.0  # worst = largest sign * value
    worst = max(checks, key=lambda c: sign * c[1])
    passed = sum(sign * v <= sign * limit for _, v in checks)
    verdict = "PASS" if passed == len(checks) else "MISS"
    return f"  {verdict}  {name}: {passed}/{len(checks)} sizes; worst {worst[1]:.2f} ({worst[0]})"


def print_targets(t: Timings, sizes: list[Size]) -> None:
    """PASS / MISS for the performance targets, from medians and ratios of medians."""
    rows = {size: row_metrics(t, size) for size in sizes}
    big = [s for s in sizes if s.batch == 32]
    print(f"\n-- {t.threads} thread(s): targets --")
    targets = (
        (f"ours f64 <= {TARGET_TORCH64} x torch f64 at every size", "o64/t64", sizes, TARGET_TORCH64, False),
        (f"ours f32 <= {TARGET_TORCH32} x torch f32 at every size", "o32/t32", sizes, TARGET_TORCH32, False),
        (
            f">= {TARGET_NAIVE_SPEEDUP:g}x faster than naive at B=32",
            "naive/o64",
            big,
            TARGET_NAIVE_SPEEDUP,
            True,
        ),
        (
            f">= {TARGET_GEMM_FRACTION} of pure-GEMM speed at B=32, H=256",
            "gemm frac",
            [s for s in big if s.hidden == 256],
            TARGET_GEMM_FRACTION,
            True,
        ),
    )
    for name, key, subset, limit, higher in targets:
        print(target_line(name, [(s.label, rows[s][key]) for s in subset], limit, higher))

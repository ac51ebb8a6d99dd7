"""The tables ``bench_core.py`` prints from its timings: medians and ratios, GFLOP/s, noise, thread counts.

Every number is a median over rounds or a ratio of medians; "-" marks an implementation that did not run.
"""

from __future__ import annotations

import numpy as np
from bench_cases import Size
from pure_gemm import step_flops
from timing_harness import Timings

IMPLS = ("ours64", "ours32", "naive", "torch64", "torch32", "gemm64")


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN if either is missing."""
    return numerator / denominator if np.isfinite(numerator) and np.isfinite(denominator) else float("nan")


def fmt(value: float, spec: str) -> str:
    """Format a number, or '-' for NaN."""
    return "-" if not np.isfinite(value) else format(value, spec)


def row_metrics(t: Timings, size: Size) -> dict[str, float]:
    """Medians (ms) and the table's ratios for one size."""
    med = {impl: 1e3 * t.median(size.label, impl) for impl in IMPLS}
    return {
        **med,
        "o64/t64": ratio(med["ours64"], med["torch64"]),
        "o32/t32": ratio(med["ours32"], med["torch32"]),
        "naive/o64": ratio(med["naive"], med["ours64"]),
        "gemm frac": ratio(med["gemm64"], med["ours64"]),
    }


TABLE_COLUMNS = (  # (metric key, header, width, format); key None is the size label
    (None, "size", 22, None),
    ("ours64", "ours f64 ms", 11, ".2f"),
    ("ours32", "ours f32 ms", 11, ".2f"),
    ("naive", "naive ms [n]", 14, ".1f"),
    ("torch64", "torch f64 ms", 12, ".2f"),
    ("torch32", "torch f32 ms", 12, ".2f"),
    ("o64/t64", "o64/t64", 7, ".2f"),
    ("o32/t32", "o32/t32", 7, ".2f"),
    ("naive/o64", "naive/o64", 9, ".1f"),
    ("gemm frac", "GEMM frac", 9, ".2f"),
)


def table_cell(t: Timings, size: Size, key: str | None, spec: str | None) -> str:
    """The text of one cell; the naive cell adds its round count when it had fewer rounds."""
    if key is None:
        return size.label
    text = fmt(row_metrics(t, size)[key], spec)
    naive_rounds = t.count(size.label, "naive")
    if key == "naive" and 0 < naive_rounds < t.rounds:
        text += f" [{naive_rounds}]"
    return text


def justify(text: str, key: str | None, width: int) -> str:
    """Left-align the size column, right-align the numbers."""
    return text.ljust(width) if key is None else text.rjust(width)


def print_table(t: Timings, sizes: list[Size]) -> None:
    """The main table of one thread count: medians in ms and ratios of medians."""
    print(f"\n== {t.threads} thread(s): median ms per training step over {t.rounds} rounds ==")
    print(" ".join(justify(header, key, width) for key, header, width, _ in TABLE_COLUMNS))
    for size in sizes:
        print(" ".join(justify(table_cell(t, size, k, spec), k, w) for k, _, w, spec in TABLE_COLUMNS))
    print(
        "  o64/t64, o32/t32: ours / torch time (< 1: ours faster);"
        " naive/o64: speed-up of ours f64 over naive;\n"
        "  GEMM frac: pure-GEMM time / ours f64 time (1 = as fast as its matmuls alone);\n"
        f"  [n]: naive median over only n rounds (naive time budget {t.naive_budget:g} s per size)."
    )


def print_gflops(t: Timings, sizes: list[Size]) -> None:
    """Achieved GFLOP/s of our float64 step against the pure-GEMM loop of the same matmul shapes."""
    print(f"\n-- {t.threads} thread(s): matmul GFLOP/s of ours f64 vs pure GEMM of the same shapes --")
    print(f"{'size':22} {'MFLOP/step':>11} {'ours GF/s':>10} {'GEMM GF/s':>10} {'fraction':>9}")
    for size in sizes:
        flops = step_flops(size)
        ours, gemm = t.median(size.label, "ours64"), t.median(size.label, "gemm64")
        print(
            f"{size.label:22} {flops / 1e6:11.1f} {fmt(flops / ours / 1e9, '.2f'):>10}"
            f" {fmt(flops / gemm / 1e9, '.2f'):>10} {fmt(ratio(gemm, ours), '.2f'):>9}"
        )


def print_noise(t: Timings) -> None:
    """Spread of the timed samples: relative inter-quartile range (IQR / median) per cell."""
    spreads = {
        key: float(np.subtract(*np.percentile(v, [75, 25])) / np.median(v))
        for key, v in t.samples.items()
        if len(v) >= 3
    }
    if spreads:
        worst = max(spreads, key=spreads.get)
        print(
            f"  noise: median relative IQR {np.median(list(spreads.values())):.1%},"
            f" worst {spreads[worst]:.1%} ({worst[1]} at {worst[0]})"
        )


def print_thread_comparison(results: list[Timings], sizes: list[Size]) -> None:
    """For each size, which thread count ran our float64 core fastest."""
    if len(results) < 2:
        print("\n(only one thread count timed: no 1-vs-2 thread comparison)")
        return
    print("\n== ours f64: which thread count was faster ==")
    print(f"{'size':22} " + " ".join(f"{f'{r.threads} thr ms':>10}" for r in results) + "  faster")
    for size in sizes:
        medians = [r.median(size.label, "ours64") for r in results]
        best = int(np.argmin(medians))
        margin = max(medians) / medians[best]
        print(
            f"{size.label:22} "
            + " ".join(f"{1e3 * m:10.2f}" for m in medians)
            + f"  {results[best].threads} thread(s) (x{margin:.2f})"
        )

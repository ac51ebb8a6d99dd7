"""Time one LSTM training step of the NumPy core against a naive baseline, PyTorch and pure GEMM.

One step = LSTM forward + affine head at every timestep + loss + BPTT backward with all gradients,
i.e. one call of ``lstm_exp.core.network.loss_and_grads``. Implementations, all on identical weights:

- ``ours64`` / ``ours32``: the core in float64 / float32 (char input as int token ids);
- ``naive``: ``naive_lstm.py``, batch-1 per-timestep loops with np.outer (float64);
- ``torch64`` / ``torch32``: ``nn.LSTM(batch_first=True)`` + ``nn.Linear`` + loss + ``.backward()``
  (char input as a precomputed one-hot float tensor (B, T, V), which is what nn.LSTM takes);
- ``gemm64``: only the matmuls of one float64 step, on preallocated arrays (``np.matmul(out=)``).

Timing is interleaved: every round runs every implementation once on every size, in a shuffled
order, so machine noise hits all alike; the table reports medians over rounds and ratios of medians.
The slow naive baseline runs in fewer rounds (a time budget per size, at least ``MIN_NAIVE_ROUNDS``).
BLAS threads are pinned with threadpoolctl and torch's with ``torch.set_num_threads``, to one
thread count per table. Run ``python benchmarks/bench_core.py --help`` for the options.

This script only reads the options and runs the parts, each in its own file next to it:
``bench_cases.py`` (sizes, weights, data), ``timed_steps.py`` (the implementations and their start-up
verification; ``naive_lstm.py``, ``torch_adapter.py`` and ``pure_gemm.py`` hold the baselines),
``timing_harness.py`` (interleaved rounds, medians), ``machine_state.py`` (thread pools, load),
``result_tables.py`` and ``perf_targets.py`` (what is printed).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from bench_cases import all_sizes, make_case
from machine_state import load_average
from perf_targets import print_targets
from result_tables import print_gflops, print_noise, print_table, print_thread_comparison
from timed_steps import make_runners, verify
from timing_harness import run_thread_count
from torch_adapter import torch

DEFAULT_ROUNDS = 15
DEFAULT_THREADS = "1,2"
DEFAULT_NAIVE_BUDGET_S = 8.0  # naive seconds per size and thread count (after its warm-up call)
DEFAULT_ROUND_BUDGET_S = 150.0  # all other implementations, per thread count: caps the rounds
MIN_NAIVE_ROUNDS = 3
WARMUP_CALLS = 3  # per implementation, size and thread count (naive: 1, which also sizes its rounds)
DEFAULT_SETTLE_S = 0.12  # pause before each timed call when threads > 1 (see timing_harness.settle_pause)
QUICK = {"rounds": 3, "naive_budget": 0.3, "min_naive_rounds": 1, "warmup": 1}


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help=f"timed rounds (default {DEFAULT_ROUNDS})")
    parser.add_argument("--threads", default=DEFAULT_THREADS, help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--quick", action="store_true", help="fast smoke run: fewer sizes, rounds and warm-up")
    parser.add_argument(
        "--naive-budget",
        type=float,
        default=None,
        help=f"naive seconds per size and thread count (default {DEFAULT_NAIVE_BUDGET_S:g})",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=DEFAULT_SETTLE_S,
        help=f"pause in s before each timed call when threads > 1 (default {DEFAULT_SETTLE_S:g})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, data and round order")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> dict:
    """Round counts and budgets from the options (``--quick`` lowers the defaults)."""
    base = (
        dict(QUICK)
        if args.quick
        else {
            "rounds": DEFAULT_ROUNDS,
            "naive_budget": DEFAULT_NAIVE_BUDGET_S,
            "min_naive_rounds": MIN_NAIVE_ROUNDS,
            "warmup": WARMUP_CALLS,
        }
    )
    base["round_budget"] = DEFAULT_ROUND_BUDGET_S
    base["settle"] = args.settle
    if args.rounds is not None:
        base["rounds"] = args.rounds
    if args.naive_budget is not None:
        base["naive_budget"] = args.naive_budget
    base["min_naive_rounds"] = min(base["min_naive_rounds"], base["rounds"])
    return base


def main(argv=None) -> None:
    """Verify, then time every thread count and print its table, GFLOP/s, targets and noise."""
    args = parse_args(argv)
    settings = settings_from(args)
    rng = np.random.default_rng(args.seed)
    print(f"numpy {np.__version__}; torch {torch.__version__ if torch is not None else 'not installed'}")
    print(f"{os.cpu_count()} CPUs; {load_average()} at start")
    verify(rng)
    sizes = all_sizes(args.quick)
    cases = [make_case(size, rng) for size in sizes]
    runners = {c.size.label: make_runners(c) for c in cases}
    results = []
    for threads in (int(n) for n in args.threads.split(",")):
        print(f"\n# Timing with {threads} thread(s)")
        results.append(run_thread_count(runners, threads, settings, rng))
        print_table(results[-1], sizes)
        print_gflops(results[-1], sizes)
        print_targets(results[-1], sizes)
        print_noise(results[-1])
    print_thread_comparison(results, sizes)


if __name__ == "__main__":
    main()

"""Sweep throughput: the same multirun with Hydra's basic launcher (sequential), Hydra's joblib launcher and
lstm_exp's pool launcher (the default).

    python benchmarks/bench_sweep.py [--jobs 8] [--rounds 2] [-- extra overrides]

Each round runs every launcher on an identical sweep (seeds 0..jobs-1, times any other sweep in the
overrides), each in a fresh directory with its own MLflow store, in an order that is reversed every other
round (a machine that drifts slower or faster favours none). It prints each round's times, the median wall
times and throughput (jobs per minute) and the speed-ups over the basic launcher. On a 2-core machine the
ceiling is 2x. The jobs of the sweep are counted, before any
round runs, with Hydra's own override parser and the basic sweeper's rules (``job_count``), so a
``range(...)``, ``choice(...)`` or ``a,b,c`` sweep among the extra overrides counts as Hydra runs it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from math import prod

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

DEFAULT = ["task=char", "steps=300", "task.sample_every=0"]


def sweep_overrides(jobs: int, overrides: list[str]) -> list[str]:
    """The overrides of the benchmarked sweep, after the launcher: seeds 0..jobs-1, then the extra ones."""
    return [f"seed=range(0,{jobs})", "progress=false", *overrides]


def sweep_seconds(launcher: str, jobs: int, overrides: list[str]) -> float:
    with tempfile.TemporaryDirectory() as cwd:
        cmd = [sys.executable, "-m", "lstm_exp", "-m", f"hydra/launcher={launcher}", *sweep_overrides(jobs, overrides)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{launcher} sweep failed:\n{proc.stderr[-2000:]}")
    return elapsed


def job_count(overrides: list[str]) -> int:
    """Jobs of a multirun with these overrides, as Hydra's basic sweeper makes them.

    Parsed with Hydra's own override parser; every sweep (``a,b,c``, ``choice(...)``, ``range(...)``)
    contributes its number of values, and, as in the basic sweeper, a later override of the same key
    replaces an earlier one. Sweeps the basic sweeper cannot enumerate (``interval(...)``, and ``glob(...)``,
    which needs the config repository) stop the benchmark with a message.
    """
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as error:
        raise SystemExit(f"cannot parse the sweep's overrides: {error}") from error
    values = {}
    for override in parsed:
        if not override.is_sweep_override():
            values[override.get_key_element()] = 1
            continue
        try:
            values[override.get_key_element()] = len(list(override.sweep_iterator()))
        except HydraException as error:
            raise SystemExit(f"cannot count the jobs of {override.input_line!r}: {error}") from error
    return prod(values.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("overrides", nargs="*", default=DEFAULT)
    args = parser.parse_args()
    jobs = job_count(sweep_overrides(args.jobs, args.overrides))
    launchers = ["basic", "joblib", "pool"]
    times = {launcher: [] for launcher in launchers}
    for k in range(args.rounds):
        for launcher in launchers if k % 2 == 0 else launchers[::-1]:
            times[launcher].append(sweep_seconds(launcher, args.jobs, args.overrides))
            print(f"round {k + 1}: {launcher:6s} {times[launcher][-1]:.1f} s", flush=True)
    median = {launcher: statistics.median(t) for launcher, t in times.items()}
    print(f"\n{jobs} jobs: seed=range(0,{args.jobs}) {' '.join(args.overrides)}")
    for launcher in launchers:
        print(
            f"{launcher:6s} median wall time {median[launcher]:.1f} s ({60 * jobs / median[launcher]:.1f} jobs/min), "
            f"throughput {median['basic'] / median[launcher]:.2f}x the basic launcher's"
        )


if __name__ == "__main__":
    main()

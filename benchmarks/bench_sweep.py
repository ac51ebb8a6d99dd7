"""Sweep throughput: the same multirun with Hydra's basic launcher (sequential) and the joblib launcher.

    python benchmarks/bench_sweep.py [--jobs 8] [--rounds 2] [-- extra overrides]

Each round runs both launchers on an identical sweep (seeds 0..jobs-1, times any other sweep in the
overrides), each in a fresh directory with its own MLflow store, alternating which goes first (two
rounds are basic, joblib, joblib, basic: a machine that drifts slower or faster over the half hour
favours neither). It prints each round's ratio, the median wall times and throughput (jobs per minute)
and the speed-up. On a 2-core machine the ceiling is 2x.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT = ["task=char", "steps=300", "task.sample_every=0"]


def sweep_seconds(launcher: str, jobs: int, overrides: list[str]) -> float:
    with tempfile.TemporaryDirectory() as cwd:
        cmd = [sys.executable, "-m", "lstm_exp", "-m", f"hydra/launcher={launcher}", f"seed=range(0,{jobs})",
               "progress=false", *overrides]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{launcher} sweep failed:\n{proc.stderr[-2000:]}")
    return elapsed


def job_count(seeds: int, overrides: list[str]) -> int:
    """Jobs in the sweep: the seeds times every comma-separated override's number of values."""
    count = seeds
    for override in overrides:
        _, _, value = override.partition("=")
        count *= len(value.split(",")) if "," in value and not value.startswith(("[", "{")) else 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("overrides", nargs="*", default=DEFAULT)
    args = parser.parse_args()
    times = {"basic": [], "joblib": []}
    for k in range(args.rounds):
        order = ["basic", "joblib"] if k % 2 == 0 else ["joblib", "basic"]
        for launcher in order:
            times[launcher].append(sweep_seconds(launcher, args.jobs, args.overrides))
            print(f"round {k + 1}: {launcher:6s} {times[launcher][-1]:.1f} s", flush=True)
    jobs = job_count(args.jobs, args.overrides)
    basic, joblib = statistics.median(times["basic"]), statistics.median(times["joblib"])
    print(f"\n{jobs} jobs: seed=range(0,{args.jobs}) {' '.join(args.overrides)}")
    print("per round basic/joblib: " + ", ".join(f"{b / j:.2f}" for b, j in zip(times["basic"], times["joblib"],
                                                                                  strict=True)))
    print(f"median wall time: basic {basic:.1f} s ({60 * jobs / basic:.1f} jobs/min), "
          f"joblib {joblib:.1f} s ({60 * jobs / joblib:.1f} jobs/min)")
    print(f"joblib throughput: {basic / joblib:.2f}x the basic launcher's")


if __name__ == "__main__":
    main()

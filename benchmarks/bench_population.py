"""Seed sweeps as populations: the same sweep with ``hydra/launcher=pool`` (a process per job) and
``hydra/launcher=population`` (jobs trained as stacked populations), side by side, tracking on.

    python benchmarks/bench_population.py [--cases sin20 x2_20 char20 sin200 x2_200] [--rounds 1]

Each case is a seed sweep of a seed's own experiment (``experiment=case002_sin``: H = 5; ``case001_x2``: H = 10;
``case000_char``: H = 100), run both ways in fresh folders with their own MLflow store, the order alternating
between rounds. Printed per case: the wall time of each (the whole command: startup, jobs, MLflow runs, the
report), the ratio, and the training seconds per job (a pool job's loop time; a population's loop time divided by
its members), with the divergence rate each way, which must agree (the same numbers, bit for bit). The 200-seed
pool sweeps take a while (about 200 x one run / the cores): leave them out with ``--cases``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine_state import busy_warning, load_average

CASES = {  # name: (experiment, seeds, extra overrides)
    "sin20": ("case002_sin", 20, []),
    "x2_20": ("case001_x2", 20, []),
    "char20": ("case000_char", 20, ["task.sample_every=0"]),
    "sin200": ("case002_sin", 200, []),
    "x2_200": ("case001_x2", 200, []),
}
LAUNCHERS = ("pool", "population")


def run_sweep(experiment: str, seeds: int, extra: list[str], launcher: str) -> dict:
    """One sweep in a fresh folder: its wall time, its jobs' statuses and how many populations it made."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "lstm_exp", "-m", "progress=false", f"experiment={experiment}"]
        cmd += [f"seed=range(0,{seeds})", f"hydra/launcher={launcher}", "hydra.sweep.dir=sweep", *extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode not in (0, 1):  # 1: some job failed, which the table shows
            sys.exit(f"{launcher} sweep failed:\n{proc.stderr[-2000:]}")
        statuses = [json.loads(p.read_text()) for p in Path(tmp, "sweep").glob("*/job_status.json")]
        found = re.search(r"as (\d+) populations?", proc.stdout)
        return {"wall": wall, "statuses": statuses, "populations": int(found.group(1)) if found else None}


def per_job_training(result: dict) -> float:
    """Training seconds per job: a pool job's loop time, or its population's loop time over its members."""
    seconds = [s["train_seconds"] for s in result["statuses"] if s.get("train_seconds")]
    if not seconds:
        return float("nan")
    if result["populations"]:  # every member reports its population's loop time
        members = len(result["statuses"]) / result["populations"]
        return statistics.median(seconds) / members
    return statistics.median(seconds)


def diverged(result: dict) -> str:
    outcomes = [s["outcome"] for s in result["statuses"]]
    return f"{sum(o.startswith('diverged') for o in outcomes)}/{len(outcomes)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print(f"{load_average()} before;{busy_warning()}")
    head = f"{'case':<8}{'pool s':>9}{'population s':>14}{'ratio':>8}{'train/job pool':>16}{'population':>13}"
    print(head + f"{'ratio':>8}  diverged (pool | population)")
    for name in args.cases:
        experiment, seeds, extra = CASES[name]
        walls: dict[str, list] = {launcher: [] for launcher in LAUNCHERS}
        results = {}
        for k in range(args.rounds):
            for launcher in LAUNCHERS if k % 2 == 0 else LAUNCHERS[::-1]:
                results[launcher] = run_sweep(experiment, seeds, extra, launcher)
                walls[launcher].append(results[launcher]["wall"])
        pool, pop = (statistics.median(walls[launcher]) for launcher in LAUNCHERS)
        train_pool, train_pop = (per_job_training(results[launcher]) for launcher in LAUNCHERS)
        print(
            f"{name:<8}{pool:>9.1f}{pop:>14.1f}{pool / pop:>7.1f}x{train_pool:>16.3f}{train_pop:>13.3f}"
            f"{train_pool / train_pop:>7.1f}x  {diverged(results['pool'])} | {diverged(results['population'])}",
            flush=True,
        )
    print(f"{load_average()} after")


if __name__ == "__main__":
    main()

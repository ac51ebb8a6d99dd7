"""The tool's own overhead: one run with tracking on vs off, where its time goes, and how busy a sweep keeps the cores.

    python benchmarks/bench_overhead.py [--rounds 5] [--sweep-rounds 1] [--no-sweeps] [--big-sweep]

1. One run, ``python -m lstm_exp task=sin steps=1``: wall time with tracking off, on (an existing store) and on
   (a fresh folder), interleaved over ``--rounds`` rounds; the medians, the on-minus-off differences, and the
   time from launch to the first training step (the run's own ``first step … after launch``).
2. Where a tracked run's time goes: the same run under cProfile, all in the training process (its tracking
   agent not started), cumulative seconds per phase (imports, store open, run creation, params/tags, metric
   batches, artifacts, plots). cProfile slows Python code down, so read the shares, not the absolute numbers.
   Then, with the agent as a user runs it: when the run appears in the store, the first step starts, the run
   ends and the process exits. With sweeps, the 20-job sweep's launching process is profiled the same way
   (start, Hydra's validation, jobs, the report's imports alongside them, the end and its report).
3. Sweep efficiency: training time summed over jobs (each job's ``train_seconds`` in its job_status.json) /
   (cores x wall time of the whole sweep, summary and report included), for the 20-job
   ``experiment=case000_char 'seed=range(0,20)' optim.clip_mode=state optim.clip=6`` sweep with the pool and
   the joblib launcher, tracking on and off; ``--big-sweep`` adds the 60-job ``... optim.clip=0,1,5``.

Each line of the output says the command that reproduces it.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lstm_exp.sweeps.launch import cores

RUN = ["task=sin", "steps=1", "progress=false"]
SWEEP_20 = ["experiment=case000_char", "seed=range(0,20)", "optim.clip_mode=state", "optim.clip=6", "progress=false"]
SWEEP_60 = ["experiment=case000_char", "seed=range(0,20)", "optim.clip=0,1,5", "progress=false"]
PHASES = {  # phase -> (file suffix, function) whose cumulative time is the phase's
    "import mlflow": ("mlflow/__init__.py", "<module>"),
    "store open (connect, incl. import)": ("lstm_exp/tracking.py", "connect"),
    "run creation (start_run, incl. connect)": ("lstm_exp/tracking.py", "start_run"),
    "params + tags": ("lstm_exp/tracking.py", "_described"),
    "dataset": ("lstm_exp/tracking.py", "log_dataset"),
    "metric batches": ("lstm_exp/tracking.py", "flush"),
    "end of run (finish_run: artifacts, plot)": ("lstm_exp/tracking.py", "finish_run"),
    "plot (loss_curve + log_figure)": ("lstm_exp/tracking.py", "log_figure"),
    "training loop": ("lstm_exp/train.py", "_train"),
    "composition precheck": ("lstm_exp/preflight.py", "composition_error"),
}


def timed(cmd: list[str], cwd) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def first_step(stdout: str) -> float:
    """The run's own 'first step X s after launch'."""
    for line in stdout.splitlines():
        if "first step" in line:
            return float(line.split("first step")[1].split()[0])
    return float("nan")


def one_run(rounds: int) -> None:
    cli = [sys.executable, "-m", "lstm_exp", *RUN]
    walls = {"off": [], "on": [], "on, fresh folder": []}
    starts = {k: [] for k in walls}
    with tempfile.TemporaryDirectory() as existing:
        timed(cli, existing)  # the store exists from here on
        for k in range(rounds):
            for kind in list(walls) if k % 2 == 0 else list(walls)[::-1]:
                with tempfile.TemporaryDirectory() as fresh:
                    where = fresh if kind == "on, fresh folder" else existing
                    extra = ["tracking.enabled=false"] if kind == "off" else []
                    wall, out = timed([*cli, *extra], where)
                walls[kind].append(wall)
                starts[kind].append(first_step(out))
    med = {k: statistics.median(v) for k, v in walls.items()}
    print(f"\n## One run: python -m lstm_exp {' '.join(RUN)}   (medians of {rounds} interleaved rounds)")
    print("| tracking | wall time (s) | minus off (s) | first step after launch (s) |")
    print("|---|---|---|---|")
    for kind in walls:
        print(f"| {kind} | {med[kind]:.2f} | {med[kind] - med['off']:+.2f} | {statistics.median(starts[kind]):.2f} |")


# python -m lstm_exp under cProfile, in the process itself only: its tracking agent is not started (MLflow's work
# is profiled in the training process) and a sweep's forked jobs are not profiled (register_at_fork)
PROFILED = """import cProfile, os, runpy, sys
import lstm_exp.tracking.agent
lstm_exp.tracking.agent.start = lambda argv: None
os.register_at_fork(after_in_child=lambda: sys.setprofile(None))
profile = cProfile.Profile()
profile.enable()
try:
    runpy.run_module("lstm_exp", run_name="__main__", alter_sys=True)
finally:
    profile.disable()
    profile.dump_stats(os.environ["PROFILE_OUT"])
"""


def profiled(overrides: list[str], cwd: str) -> tuple[dict, float]:
    """(pstats' stats, wall seconds) of ``python -m lstm_exp <overrides>`` under ``PROFILED`` in ``cwd``."""
    script, out = Path(cwd) / "profiled.py", Path(cwd) / "profile.out"
    script.write_text(PROFILED)
    t0 = time.perf_counter()
    env = {**os.environ, "PROFILE_OUT": str(out)}
    subprocess.run([sys.executable, str(script), *overrides], cwd=cwd, env=env, capture_output=True)
    return pstats.Stats(str(out)).stats, time.perf_counter() - t0


def phase_table(stats: dict, total: float, phases: dict) -> None:
    print(f"| phase | cumulative s (of {total:.2f} s under the profiler) |")
    print("|---|---|")
    for phase, (suffix, name) in phases.items():
        seconds = sum(v[3] for (f, _, fn), v in stats.items() if f.endswith(suffix) and fn == name)
        print(f"| {phase} | {seconds:.2f} |")


def phases() -> None:
    """The phases' costs in one process (as if there were no agent); ``agent_timeline`` shows where they fall."""
    with tempfile.TemporaryDirectory() as cwd:
        subprocess.run([sys.executable, "-m", "lstm_exp", *RUN], cwd=cwd, capture_output=True)  # an existing store
        stats, total = profiled(RUN, cwd)
    print("\n## Where a tracked run's time goes, all in the training process (cProfile, no agent)")
    print(f"benchmarks/bench_overhead.py's PROFILED script, with {' '.join(RUN)}")
    phase_table(stats, total, PHASES)


def agent_timeline(rounds: int) -> None:
    """Seconds after launch at which the agent has created the run (MLflow imported, store open), the first
    step starts, the run ends (its end time in the store) and the process exits."""
    from mlflow.tracking import MlflowClient

    rows = []
    with tempfile.TemporaryDirectory() as cwd:
        uri = f"sqlite:///{cwd}/mlflow.db"
        timed([sys.executable, "-m", "lstm_exp", *RUN, f"tracking.uri={uri}"], cwd)
        for _ in range(rounds):
            launched = time.time()
            wall, out = timed([sys.executable, "-m", "lstm_exp", *RUN, f"tracking.uri={uri}"], cwd)
            client = MlflowClient(uri)
            (run,) = client.search_runs(client.search_experiments()[0].experiment_id, max_results=1)
            info = run.info
            rows.append((info.start_time / 1e3 - launched, first_step(out), info.end_time / 1e3 - launched, wall))
    print(f"\n## With the tracking agent: seconds after launch (medians of {rounds})")
    print(f"python -m lstm_exp {' '.join(RUN)}; the run's start and end times read from the store")
    print("| run created by the agent | first training step | run ended | process exited |")
    print("|---|---|---|---|")
    print("| " + " | ".join(f"{statistics.median(col):.2f}" for col in zip(*rows, strict=True)) + " |")


SWEEP_PHASES = {  # phase of a sweep's launching process -> (file suffix, function)
    "sweep start (MLflow import, store, parent run)": ("lstm_exp/sweep.py", "on_multirun_start"),
    "Hydra's validation of the batch (composes every job)": ("hydra/plugins/sweeper.py", "validate_batch_is_legal"),
    "jobs (forks, waiting for them)": ("lstm_exp/launch.py", "launch"),
    "report imports, alongside the jobs": ("lstm_exp/report.py", "warm_up"),
    "sweep end (summary, report, parent run)": ("lstm_exp/sweep.py", "on_multirun_end"),
    "report (write_report)": ("lstm_exp/report.py", "write_report"),
}


def sweep_phases() -> None:
    """The 20-job sweep's launching process under cProfile (its jobs unprofiled): where its serial time goes."""
    with tempfile.TemporaryDirectory() as cwd:
        stats, total = profiled(["-m", "hydra.sweep.dir=sweep", *SWEEP_20], cwd)
    print("\n## Where the 20-job sweep's launching process spends its time (cProfile; its jobs are not profiled)")
    print(f"benchmarks/bench_overhead.py's PROFILED script, with -m {' '.join(SWEEP_20)}")
    phase_table(stats, total, SWEEP_PHASES)


def sweep_efficiency(launcher: str, tracking: bool, overrides: list[str]) -> tuple[float, float, int]:
    """(efficiency, wall, jobs) of one sweep in a fresh folder."""
    with tempfile.TemporaryDirectory() as cwd:
        cmd = [sys.executable, "-m", "lstm_exp", "-m", f"hydra/launcher={launcher}", "hydra.sweep.dir=sweep"]
        cmd += [*overrides, f"tracking.enabled={str(tracking).lower()}"]
        wall, _ = timed(cmd, cwd)
        seconds = [
            json.loads(p.read_text()).get("train_seconds") or 0.0 for p in Path(cwd, "sweep").glob("*/job_status.json")
        ]
    return sum(seconds) / (cores() * wall), wall, len(seconds)


def sweeps(rounds: int, big: bool) -> None:
    cases = [("20 jobs", SWEEP_20)] + ([("60 jobs", SWEEP_60)] if big else [])
    for label, overrides in cases:
        print(f"\n## Sweep efficiency, {label}: python -m lstm_exp -m {' '.join(overrides)} (x{rounds}, medians)")
        print(f"training time summed over jobs / ({cores()} cores x wall time)")
        print("| launcher | tracking | efficiency | wall (s) | jobs |")
        print("|---|---|---|---|---|")
        for launcher in ("pool", "joblib"):
            for tracking in (True, False):
                runs = [sweep_efficiency(launcher, tracking, overrides) for _ in range(rounds)]
                eff = statistics.median(r[0] for r in runs)
                wall = statistics.median(r[1] for r in runs)
                print(f"| {launcher} | {'on' if tracking else 'off'} | {eff:.2f} | {wall:.1f} | {runs[0][2]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sweep-rounds", type=int, default=1)
    parser.add_argument("--no-sweeps", action="store_true")
    parser.add_argument("--big-sweep", action="store_true")
    args = parser.parse_args()
    one_run(args.rounds)
    phases()
    agent_timeline(args.rounds)
    if not args.no_sweeps:
        sweep_phases()
        sweeps(args.sweep_rounds, args.big_sweep)


if __name__ == "__main__":
    main()

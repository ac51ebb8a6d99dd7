"""The tool's own overhead: one run with tracking on vs off, where its time goes, and how busy a sweep keeps the cores.

    python benchmarks/bench_overhead.py [--rounds 5] [--sweep-rounds 1] [--no-sweeps] [--big-sweep]

1. One run, ``python -m lstm_exp task=sin steps=1``: wall time with tracking off, on (an existing store) and on
   (a fresh folder), interleaved over ``--rounds`` rounds; the medians, the on-minus-off differences, and the
   time from launch to the first training step (the run's own ``first step … after launch``).
2. Where a tracked run's time goes: the same run under cProfile, all in one process (no tracking agent),
   cumulative seconds per phase (imports, store open, run creation, params/tags, metric batches, artifacts,
   plots). cProfile slows Python code down, so read the shares, not the absolute numbers. Then, with the
   agent as a user runs it: when the run appears in the store, the first step starts, the run ends.
3. Sweep efficiency: training time summed over jobs (each job's ``train_seconds`` in its job_status.json) /
   (cores x wall time of the whole sweep, summary and report included), for the 20-job
   ``experiment=case000_char 'seed=range(0,20)' optim.clip_mode=state optim.clip=6`` sweep with the pool and
   the joblib launcher, tracking on and off; ``--big-sweep`` adds the 60-job ``... optim.clip=0,1,5``.

Each line of the output says the command that reproduces it.
"""

from __future__ import annotations

import argparse
import json
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lstm_exp.launch import cores

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


def phases() -> None:
    """The phases' costs in-process (the agent's work included, as when no agent is used), then where they fall
    in time with the agent: when the run appears in the store, against the first training step."""
    # importing lstm_exp.__main__ (not running it as __main__) starts no agent: MLflow is profiled in-process
    profiled = "import sys, lstm_exp.__main__ as m; sys.argv[0] = 'lstm_exp'; m.main()\n"
    with tempfile.TemporaryDirectory() as cwd:
        subprocess.run([sys.executable, "-m", "lstm_exp", *RUN], cwd=cwd, capture_output=True)  # an existing store
        script, out = Path(cwd) / "in_process.py", Path(cwd) / "profile.out"
        script.write_text(profiled)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), str(script), *RUN], cwd=cwd, check=True)
        total = time.perf_counter() - t0
        stats = pstats.Stats(str(out)).stats
    print("\n## Where a tracked run's time goes, all in one process (cProfile, no agent)")
    print(f"python -m cProfile in_process.py {' '.join(RUN)}   # in_process.py: {profiled.strip()}")
    print(f"| phase | cumulative s (of {total:.2f} s under the profiler) |")
    print("|---|---|")
    for phase, (suffix, name) in PHASES.items():
        seconds = sum(v[3] for (f, _, fn), v in stats.items() if f.endswith(suffix) and fn == name)
        print(f"| {phase} | {seconds:.2f} |")


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
        sweeps(args.sweep_rounds, args.big_sweep)


if __name__ == "__main__":
    main()

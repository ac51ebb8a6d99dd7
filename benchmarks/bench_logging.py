"""What MLflow logging costs a default run: the same training with tracking off and on, interleaved.

    python benchmarks/bench_logging.py [--rounds 3] [--overrides task=sin optim.clip=6]

Each round trains the composed config twice in this process — once with no logger, once logging into a
fresh SQLite store the way ``python -m lstm_exp`` does (start_run: params and tags; the loop's batched
metrics; finish_run: tags, artifacts, loss-curve PNG, weights) — and prints medians and the overhead
ratio. ``import mlflow`` is a one-off per process and is timed separately in a subprocess.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lstm_exp.runner import train
from lstm_exp.runner.schema import register
from lstm_exp.runner.validation import validate

CONF = Path(__file__).resolve().parents[1] / "conf"


def compose_config(overrides: list[str]):
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["progress=false", *overrides])
    return cfg, validate(cfg)


def timed_untracked(typed) -> float:
    t0 = time.perf_counter()
    train.run(typed)
    return time.perf_counter() - t0


def timed_tracked(cfg, typed, store: Path) -> tuple[float, float, int]:
    """(total seconds, seconds inside the training loop, metric points written) for one tracked run."""
    from lstm_exp.tracking import run as tracking

    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    t0 = time.perf_counter()
    live = tracking.start_run(
        f"sqlite:///{store}", "bench", None, config, {"task": typed.task.name}, typed.tracking.log_every
    )
    t1 = time.perf_counter()
    result = train.run(typed, live)
    t2 = time.perf_counter()
    tracking.finish_run(live, result, OmegaConf.to_yaml(cfg), None, "bench")
    return time.perf_counter() - t0, t2 - t1, live.points_logged


def import_cost() -> float:
    code = "import time; t=time.perf_counter(); import mlflow; print(time.perf_counter()-t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--overrides", nargs="*", default=["task=sin", "optim.clip=6"])
    args = parser.parse_args()
    cfg, typed = compose_config(args.overrides)
    import mlflow  # noqa: F401  (paid once, outside the timings)

    off, on_total, on_loop, points = [], [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        timed_tracked(cfg, typed, Path(tmp) / "warmup.db")  # creates the schema once, like a first run
        for k in range(args.rounds):
            off.append(timed_untracked(typed))
            total, loop, points = timed_tracked(cfg, typed, Path(tmp) / "warmup.db")
            on_total.append(total)
            on_loop.append(loop)
            print(f"round {k + 1}: off {off[-1]:.2f} s, on {total:.2f} s (loop {loop:.2f} s)", flush=True)
    m_off, m_total, m_loop = (statistics.median(v) for v in (off, on_total, on_loop))
    print(
        f"\nconfig: {' '.join(args.overrides)}; {typed.steps} steps, metrics every {typed.log_every} steps "
        f"({points} points per run) written every {typed.tracking.log_every} steps"
    )
    print(f"median wall time, tracking off:             {m_off:.2f} s")
    print(f"median wall time, tracking on (loop only):  {m_loop:.2f} s   overhead {100 * (m_loop / m_off - 1):+.1f} %")
    whole = 100 * (m_total / m_off - 1)
    print(f"median wall time, tracking on (whole run):  {m_total:.2f} s   overhead {whole:+.1f} %")
    print(f"one-off per process: import mlflow {import_cost():.2f} s")


if __name__ == "__main__":
    main()

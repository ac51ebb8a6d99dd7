"""How fast a user's own LSTM trains: the core, MyLSTM fed one sequence at a time, and MyLSTMBatched (batched = True).

    python benchmarks/bench_user_models.py [--rounds 5] [--steps 60] [task=sin model.hidden=64 ...]

All three train the same composed config (layout=my_lstm for the user models) in this process, in interleaved
rounds; printed: the median seconds per training step of each and the ratios between them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the examples package

from lstm_exp.runner import api, train  # noqa: E402

MODELS = {
    "core": [],
    "MyLSTM (one sequence at a time)": ["model.impl=examples/my_lstm.py:MyLSTM", "layout=my_lstm"],
    "MyLSTMBatched (batched = True)": ["model.impl=examples/my_lstm_batched.py:MyLSTMBatched", "layout=my_lstm"],
}


def seconds_per_step(overrides: list[str], steps: int) -> float:
    typed = api.config([*overrides, f"steps={steps}", "tracking.enabled=false", "eval_every=100000"])
    built = train.build_task(typed)
    start = time.perf_counter()
    train.run(typed, None, built)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("overrides", nargs="*", default=["task=sin"])
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in MODELS}
    for _ in range(args.rounds):
        for name, extra in MODELS.items():
            times[name].append(seconds_per_step([*args.overrides, *extra], args.steps))
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"{' '.join(args.overrides)}, {args.steps} steps, median of {args.rounds} interleaved rounds")
    for name, seconds in medians.items():
        print(f"  {name:<34}{seconds * 1e3:9.2f} ms/step   {seconds / medians['core']:6.1f}x the core")
    slow, fast = medians["MyLSTM (one sequence at a time)"], medians["MyLSTMBatched (batched = True)"]
    print(f"  batched = True trains {slow / fast:.1f}x faster than one sequence at a time")


if __name__ == "__main__":
    main()

"""Interleaved timing of many implementations on many sizes, with threads pinned; medians per cell.

Every round runs every implementation once on every size, in a shuffled order, so machine noise hits all
alike. The slow naive baseline runs in fewer rounds (a time budget per size, at least
``settings["min_naive_rounds"]``); the others' rounds are capped by a time budget estimated from warm-up.
BLAS threads are pinned with threadpoolctl and torch's with ``torch.set_num_threads``.

``settings`` is the dict ``bench_core.settings_from`` builds: rounds, naive_budget, min_naive_rounds,
warmup, round_budget, settle.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from machine_state import busy_warning, describe_threads, load_average
from threadpoolctl import threadpool_limits
from torch_adapter import set_torch_threads

MIN_ROUNDS = 5


@dataclass
class Timings:
    """Per-call seconds of each (size label, implementation) for one thread count."""

    threads: int
    rounds: int
    naive_budget: float
    samples: dict

    def median(self, label: str, impl: str) -> float:
        """Median seconds, or NaN when the implementation did not run."""
        values = self.samples.get((label, impl), [])
        return float(np.median(values)) if values else float("nan")

    def count(self, label: str, impl: str) -> int:
        """How many timed rounds went into the median."""
        return len(self.samples.get((label, impl), []))


def timed(step: Callable[[], float]) -> float:
    """Seconds of one call, with the garbage collector off during it (as timeit does)."""
    gc.disable()
    try:
        start = time.perf_counter()
        step()
        return time.perf_counter() - start
    finally:
        gc.enable()


def warm_up(runners: dict, settings: dict) -> dict[str, dict[str, float]]:
    """Warm-up calls per size and implementation; returns the last warm-up time of each."""
    last = {}
    for label, impls in runners.items():
        last[label] = {}
        for impl, step in impls.items():
            calls = 1 if impl == "naive" else settings["warmup"]
            for _ in range(calls):
                last[label][impl] = timed(step)
    return last


def plan_rounds(warm: dict, settings: dict, pause: float) -> tuple[int, dict[str, int]]:
    """Rounds for the fast implementations (capped by the round budget) and naive rounds per size.

    A round's cost is estimated from the warm-up times plus the settle pauses before each call.
    """
    per_round = sum(t + pause for times in warm.values() for impl, t in times.items() if impl != "naive")
    affordable = int(settings["round_budget"] / max(per_round, 1e-9))
    rounds = min(settings["rounds"], max(MIN_ROUNDS, affordable))
    naive = {
        label: int(np.clip(settings["naive_budget"] // times["naive"], settings["min_naive_rounds"], rounds))
        for label, times in warm.items()
    }
    return rounds, naive


def settle_pause(threads: int, settle: float) -> float:
    """Seconds to sleep before each timed call: none single-threaded, ``settle`` otherwise.

    With several threads, OpenBLAS's worker threads keep spinning after a call (OpenBLAS's default
    thread timeout is about 0.1 s) and so do torch's OpenMP workers; on a 2-core machine the next
    implementation's threads then compete with them. The pause lets them fall asleep first.
    """
    return settle if threads > 1 else 0.0


def time_rounds(runners: dict, rounds: int, naive_rounds: dict, pause: float, rng: np.random.Generator) -> dict:
    """Interleaved timing: each round runs every implementation once per size, in shuffled order."""
    samples: dict = {}
    for r in range(rounds):
        for label, impls in runners.items():
            for impl in rng.permutation(list(impls)):
                if impl == "naive" and r >= naive_rounds[label]:
                    continue
                time.sleep(pause)
                samples.setdefault((label, impl), []).append(timed(impls[impl]))
    return samples


def run_thread_count(runners: dict, threads: int, settings: dict, rng) -> Timings:
    """Warm up and time all sizes with BLAS and torch pinned to ``threads``."""
    with threadpool_limits(limits=threads):
        set_torch_threads(threads)
        describe_threads()
        warm = warm_up(runners, settings)
        pause = settle_pause(threads, settings["settle"])
        rounds, naive_rounds = plan_rounds(warm, settings, pause)
        capped = f" (capped from {settings['rounds']} by the time budget)" if rounds < settings["rounds"] else ""
        print(
            f"  {rounds} rounds{capped}, medians; warm-up {settings['warmup']} calls per implementation"
            f" and size; {pause:g} s settle pause before each timed call"
        )
        started = time.perf_counter()
        samples = time_rounds(runners, rounds, naive_rounds, pause, rng)
        print(f"  timed in {time.perf_counter() - started:.0f} s; {load_average()}")
        print(busy_warning())
    return Timings(threads, rounds, settings["naive_budget"], samples)

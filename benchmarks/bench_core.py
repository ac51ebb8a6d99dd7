"""Time one LSTM training step of the NumPy core against a naive baseline, PyTorch and pure GEMM.

One step = LSTM forward + affine head at every timestep + loss + BPTT backward with all gradients,
i.e. one call of ``lstm_exp.model.loss_and_grads``. Implementations, all on identical weights:

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
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from naive_lstm import naive_loss_and_grads  # the script's own folder is on sys.path
from threadpoolctl import threadpool_info, threadpool_limits

from lstm_exp.lstm import init_state
from lstm_exp.model import loss_and_grads, param_shapes

try:
    import torch
except ImportError:  # torch is optional: the table then shows "-" in its columns
    torch = None

CHAR_VOCAB = 65
CHAR_HIDDEN = (128, 256)
CHAR_STEPS = (25, 100)
CHAR_BATCH = (1, 32)
SINE_HIDDEN = 32
SINE_STEPS = 30
SINE_BATCH = (1, 64)

DEFAULT_ROUNDS = 15
DEFAULT_THREADS = "1,2"
DEFAULT_NAIVE_BUDGET_S = 8.0  # naive seconds per size and thread count (after its warm-up call)
DEFAULT_ROUND_BUDGET_S = 150.0  # all other implementations, per thread count: caps the rounds
MIN_ROUNDS = 5
MIN_NAIVE_ROUNDS = 3
WARMUP_CALLS = 3  # per implementation, size and thread count (naive: 1, which also sizes its rounds)
DEFAULT_SETTLE_S = 0.12  # pause before each timed call when threads > 1 (see settle_pause)
QUICK = {"rounds": 3, "naive_budget": 0.3, "min_naive_rounds": 1, "warmup": 1}

NAIVE_TOL = 1e-10
TORCH_TOL = 1e-8
TARGET_TORCH64 = 0.8  # ours f64 <= 0.8 x torch f64 at every size
TARGET_TORCH32 = 1.0  # ours f32 <= 1.0 x torch f32 at every size
TARGET_NAIVE_SPEEDUP = 8.0  # at B = 32
TARGET_GEMM_FRACTION = 0.75  # at B = 32, H = 256

IMPLS = ("ours64", "ours32", "naive", "torch64", "torch32", "gemm64")


@dataclass(frozen=True)
class Size:
    """One benchmark problem size: task kind (char or sine), hidden H, timesteps T, batch B."""

    kind: str
    hidden: int
    steps: int
    batch: int

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``char H=128 T=25 B=32``."""
        return f"{self.kind} H={self.hidden} T={self.steps} B={self.batch}"

    @property
    def input_dim(self) -> int:
        """D: the vocabulary for char (one-hot), 1 for sine."""
        return CHAR_VOCAB if self.kind == "char" else 1

    @property
    def loss(self) -> str:
        """The loss of the task: softmax cross-entropy for char, MSE for sine."""
        return "xent" if self.kind == "char" else "mse"

    @property
    def token_ids(self) -> bool:
        """Whether our core gets int token ids (no input matmul) rather than float features."""
        return self.kind == "char"


@dataclass
class Problem:
    """A size with its float64 weights and data (x, y in the core's formats)."""

    size: Size
    params: dict
    x: np.ndarray
    y: np.ndarray


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


# ---------------------------------------------------------------------------------------------- problems


def all_sizes(quick: bool) -> list[Size]:
    """The char and sine sizes of the benchmark (a small subset with ``--quick``)."""
    hidden, steps = (CHAR_HIDDEN[:1], CHAR_STEPS[:1]) if quick else (CHAR_HIDDEN, CHAR_STEPS)
    char = [Size("char", h, t, b) for h in hidden for t in steps for b in CHAR_BATCH]
    return char + [Size("sine", SINE_HIDDEN, SINE_STEPS, b) for b in SINE_BATCH]


def make_params(size: Size, rng: np.random.Generator) -> dict:
    """float64 weights drawn like PyTorch's default: uniform(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / np.sqrt(size.hidden)
    shapes = param_shapes(size.input_dim, size.hidden, size.input_dim)
    return {name: rng.uniform(-bound, bound, shape) for name, shape in shapes.items()}


def make_data(size: Size, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random next-character ids for char; next-sample prediction of phase-shifted sines for sine."""
    B, T = size.batch, size.steps
    if size.token_ids:
        return rng.integers(0, CHAR_VOCAB, (B, T)), rng.integers(0, CHAR_VOCAB, (B, T))
    grid = 0.2 * np.arange(T + 1)[None, :] + rng.uniform(0, 2 * np.pi, (B, 1))
    wave = np.sin(grid)[..., None]  # (B, T + 1, 1)
    return wave[:, :-1], wave[:, 1:]


def make_problem(size: Size, rng: np.random.Generator) -> Problem:
    """Weights and data of one size."""
    return Problem(size, make_params(size, rng), *make_data(size, rng))


def cast(problem: Problem, dtype) -> tuple[dict, np.ndarray, np.ndarray]:
    """Params and float data in ``dtype`` (token ids and class targets stay integers)."""
    params = {name: value.astype(dtype) for name, value in problem.params.items()}
    x, y = (a if np.issubdtype(a.dtype, np.integer) else a.astype(dtype) for a in (problem.x, problem.y))
    return params, x, y


# --------------------------------------------------------------------------------------- implementations


def ours_step(problem: Problem, dtype) -> Callable[[], float]:
    """One training step of our core in ``dtype``; returns the loss."""
    params, x, y = cast(problem, dtype)
    h0, c0 = init_state(problem.size.batch, problem.size.hidden, dtype)

    def step() -> float:
        return loss_and_grads(params, x, y, h0, c0, loss=problem.size.loss).loss

    return step


def naive_step(problem: Problem) -> Callable[[], float]:
    """One training step of the naive float64 baseline; returns the loss."""

    def step() -> float:
        return naive_loss_and_grads(problem.params, problem.x, problem.y, problem.size.loss)[0]

    return step


def torch_modules(problem: Problem, dtype) -> tuple:
    """nn.LSTM and nn.Linear carrying our weights (bias_hh = 0, so bias_ih + bias_hh = b)."""
    size, p = problem.size, problem.params
    lstm = torch.nn.LSTM(size.input_dim, size.hidden, batch_first=True).to(dtype)
    head = torch.nn.Linear(size.hidden, size.input_dim).to(dtype)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(p["Wx"].T.copy()))
        lstm.weight_hh_l0.copy_(torch.from_numpy(p["Wh"].T.copy()))
        lstm.bias_ih_l0.copy_(torch.from_numpy(p["b"]))
        lstm.bias_hh_l0.zero_()
        head.weight.copy_(torch.from_numpy(p["Wy"].T.copy()))
        head.bias.copy_(torch.from_numpy(p["by"]))
    return lstm, head


def torch_data(problem: Problem, dtype) -> tuple:
    """Inputs and targets as torch wants them: one-hot (B, T, V) floats and flat class ids for char."""
    x, y = torch.from_numpy(problem.x), torch.from_numpy(problem.y)
    if problem.size.token_ids:
        return torch.nn.functional.one_hot(x, CHAR_VOCAB).to(dtype), y.reshape(-1)
    return x.to(dtype), y.to(dtype)


def torch_loss(logits, target, size: Size):
    """Mean cross-entropy over B x T for char, mean squared error for sine (as ``reduction="mean"``)."""
    if size.loss == "xent":
        return torch.nn.functional.cross_entropy(logits.reshape(-1, size.input_dim), target)
    return torch.nn.functional.mse_loss(logits, target)


def torch_step(problem: Problem, dtype) -> Callable[[], float]:
    """One torch training step on our weights; returns the loss. Gradients land in ``.grad``."""
    lstm, head = torch_modules(problem, dtype)
    x, target = torch_data(problem, dtype)
    weights = [*lstm.parameters(), *head.parameters()]
    state = tuple(torch.zeros(1, problem.size.batch, problem.size.hidden, dtype=dtype) for _ in range(2))

    def step() -> float:
        for weight in weights:
            weight.grad = None
        out, _ = lstm(x, state)
        value = torch_loss(head(out), target, problem.size)
        value.backward()
        return value.item()

    step.modules = (lstm, head)
    return step


# ----------------------------------------------------------------------------------------- pure GEMM


@dataclass(frozen=True)
class Gemm:
    """``count`` matmuls (m, k) x (k, n); ``transposed_a`` when A is a transposed view, as in dW = h^T dA."""

    name: str
    count: int
    m: int
    k: int
    n: int
    transposed_a: bool = False

    @property
    def flops(self) -> int:
        """Multiply-adds counted as 2 FLOPs."""
        return 2 * self.count * self.m * self.k * self.n


def step_gemms(size: Size) -> list[Gemm]:
    """The matmuls of one training step of our core (token ids: the input projection is a gather)."""
    D, H, K, TB = size.input_dim, size.hidden, size.input_dim, size.steps * size.batch
    gemms = [
        Gemm("h Wh (forward, per step)", size.steps, size.batch, H, 4 * H),
        Gemm("head forward", 1, TB, H, K),
        Gemm("head backward dh", 1, TB, K, H),
        Gemm("head backward dWy", 1, H, TB, K, transposed_a=True),
        Gemm("dA Wh^T (backward, per step)", size.steps, size.batch, 4 * H, H),
        Gemm("dWh", 1, H, TB, 4 * H, transposed_a=True),
    ]
    if not size.token_ids:
        gemms += [Gemm("x Wx", 1, TB, D, 4 * H), Gemm("dWx", 1, D, TB, 4 * H, transposed_a=True)]
    return gemms


def step_flops(size: Size) -> int:
    """FLOPs of all matmuls in one step."""
    return sum(g.flops for g in step_gemms(size))


def gemm_operands(gemm: Gemm, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Preallocated float64 A, B and out of one matmul shape (A laid out as in the core)."""
    a = (
        rng.standard_normal((gemm.k, gemm.m)).T
        if gemm.transposed_a
        else rng.standard_normal((gemm.m, gemm.k))
    )
    return a, rng.standard_normal((gemm.k, gemm.n)), np.empty((gemm.m, gemm.n))


def gemm_step(problem: Problem) -> Callable[[], float]:
    """Exactly the matmuls of one float64 step, on preallocated arrays; returns 0."""
    rng = np.random.default_rng(0)
    plan = [(g.count, *gemm_operands(g, rng)) for g in step_gemms(problem.size)]

    def step() -> float:
        for count, a, b, out in plan:
            for _ in range(count):
                np.matmul(a, b, out=out)
        return 0.0

    return step


def make_runners(problem: Problem) -> dict[str, Callable[[], float]]:
    """Every available implementation's step for one problem."""
    runners = {
        "ours64": ours_step(problem, np.float64),
        "ours32": ours_step(problem, np.float32),
        "naive": naive_step(problem),
        "gemm64": gemm_step(problem),
    }
    if torch is not None:
        runners["torch64"] = torch_step(problem, torch.float64)
        runners["torch32"] = torch_step(problem, torch.float32)
    return runners


# -------------------------------------------------------------------------------------------- checks


def max_rel_error(actual: dict, expected: dict) -> float:
    """Largest |actual - expected| over all gradients, relative to max(1, |expected|) per array."""
    return max(
        float(np.max(np.abs(actual[k] - expected[k])) / max(1.0, float(np.max(np.abs(expected[k])))))
        for k in expected
    )


def torch_grads(step) -> dict:
    """Gradients of a torch step, in the core's layout."""
    lstm, head = step.modules
    return {
        "Wx": lstm.weight_ih_l0.grad.T.numpy(),
        "Wh": lstm.weight_hh_l0.grad.T.numpy(),
        "b": lstm.bias_ih_l0.grad.numpy(),
        "Wy": head.weight.grad.T.numpy(),
        "by": head.bias.grad.numpy(),
    }


def check_problem(size: Size, rng: np.random.Generator) -> str:
    """Assert naive (and torch) match our float64 core on one small problem; describe the errors."""
    problem = make_problem(size, rng)
    h0, c0 = init_state(size.batch, size.hidden)
    ref = loss_and_grads(problem.params, problem.x, problem.y, h0, c0, loss=size.loss)
    loss, grads = naive_loss_and_grads(problem.params, problem.x, problem.y, size.loss)
    naive_err = max(abs(loss - ref.loss), max_rel_error(grads, ref.grads))
    assert naive_err <= NAIVE_TOL, f"naive LSTM disagrees with the core on {size.label}: {naive_err:.2e}"
    text = f"{size.label}: naive max err {naive_err:.1e}"
    if torch is not None:
        step = torch_step(problem, torch.float64)
        torch_err = max(abs(step() - ref.loss), max_rel_error(torch_grads(step), ref.grads))
        assert torch_err <= TORCH_TOL, f"torch disagrees with the core on {size.label}: {torch_err:.2e}"
        text += f", torch max err {torch_err:.1e}"
    return text


def verify(rng: np.random.Generator) -> None:
    """Start-up check in float64: naive within 1e-10 and torch within 1e-8 of the core (loss and grads)."""
    print("Verification against lstm_exp.model.loss_and_grads (float64, loss and all gradients):")
    for size in (Size("char", 8, 6, 3), Size("sine", 8, 6, 3)):
        print("  " + check_problem(size, rng))
    print("  OK: naive within 1e-10" + (", torch within 1e-8" if torch is not None else ""))


# ------------------------------------------------------------------------------------------- timing


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


def time_rounds(
    runners: dict, rounds: int, naive_rounds: dict, pause: float, rng: np.random.Generator
) -> dict:
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


def set_torch_threads(threads: int) -> None:
    """Pin torch's intra-op threads (a no-op without torch)."""
    if torch is not None:
        torch.set_num_threads(threads)


def run_thread_count(runners: dict, threads: int, settings: dict, rng) -> Timings:
    """Warm up and time all sizes with BLAS and torch pinned to ``threads``."""
    with threadpool_limits(limits=threads):
        set_torch_threads(threads)
        describe_threads()
        warm = warm_up(runners, settings)
        pause = settle_pause(threads, settings["settle"])
        rounds, naive_rounds = plan_rounds(warm, settings, pause)
        capped = (
            f" (capped from {settings['rounds']} by the time budget)" if rounds < settings["rounds"] else ""
        )
        print(
            f"  {rounds} rounds{capped}, medians; warm-up {settings['warmup']} calls per implementation"
            f" and size; {pause:g} s settle pause before each timed call"
        )
        started = time.perf_counter()
        samples = time_rounds(runners, rounds, naive_rounds, pause, rng)
        print(f"  timed in {time.perf_counter() - started:.0f} s; {load_average()}")
        print(busy_warning())
    return Timings(threads, rounds, settings["naive_budget"], samples)


# ------------------------------------------------------------------------------------------- report


def describe_threads() -> None:
    """Which BLAS / OpenMP libraries are loaded, their versions and thread counts right now."""
    for info in threadpool_info():
        extra = ", ".join(f"{k}={info[k]}" for k in ("threading_layer", "architecture") if k in info)
        print(
            f"  {info['user_api']}: {info['internal_api']} {info.get('version') or '(version n/a)'}"
            f" [{info['prefix']}] threads={info['num_threads']}" + (f" ({extra})" if extra else "")
        )
    if torch is not None:
        blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
        print(
            f"  torch {torch.__version__}: BLAS={blas.group(1) if blas else '?'},"
            f" mkldnn={torch.backends.mkldnn.is_available()}, intra-op threads={torch.get_num_threads()}"
        )


def load_average() -> str:
    """The machine's 1-minute load average (other processes make the timings noisier)."""
    return f"load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "load average n/a"


def busy_warning() -> str:
    """A warning when more processes want CPU than there are cores (a shared machine's other work)."""
    cpus = os.cpu_count() or 1
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > cpus:
        return (
            f"  WARNING: load average above the {cpus} CPUs: other processes competed for the cores,"
            " so multi-thread medians are unreliable (re-run when the machine is quiet)"
        )
    return "  machine not oversubscribed (load average <= CPUs)"


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


def target_line(name: str, checks: list[tuple[str, float]], limit: float, higher_is_better: bool) -> str:
    """PASS/MISS of one target over (size label, value) pairs, naming the worst size."""
    checks = [(label, v) for label, v in checks if np.isfinite(v)]
    if not checks:
        return f"  n/a   {name} (not measured: torch not installed, or size not run)"
    sign = -1.0 if higher_is_better else 1.0  # worst = largest sign * value
    worst = max(checks, key=lambda c: sign * c[1])
    passed = sum(sign * v <= sign * limit for _, v in checks)
    verdict = "PASS" if passed == len(checks) else "MISS"
    return f"  {verdict}  {name}: {passed}/{len(checks)} sizes; worst {worst[1]:.2f} ({worst[0]})"


def print_targets(t: Timings, sizes: list[Size]) -> None:
    """PASS / MISS for the performance targets, from medians and ratios of medians."""
    rows = {size: row_metrics(t, size) for size in sizes}
    big = [s for s in sizes if s.batch == 32]
    print(f"\n-- {t.threads} thread(s): targets --")
    targets = (
        (f"ours f64 <= {TARGET_TORCH64} x torch f64 at every size", "o64/t64", sizes, TARGET_TORCH64, False),
        (f"ours f32 <= {TARGET_TORCH32} x torch f32 at every size", "o32/t32", sizes, TARGET_TORCH32, False),
        (
            f">= {TARGET_NAIVE_SPEEDUP:g}x faster than naive at B=32",
            "naive/o64",
            big,
            TARGET_NAIVE_SPEEDUP,
            True,
        ),
        (
            f">= {TARGET_GEMM_FRACTION} of pure-GEMM speed at B=32, H=256",
            "gemm frac",
            [s for s in big if s.hidden == 256],
            TARGET_GEMM_FRACTION,
            True,
        ),
    )
    for name, key, subset, limit, higher in targets:
        print(target_line(name, [(s.label, rows[s][key]) for s in subset], limit, higher))
    print_noise(t)


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


# --------------------------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help=f"timed rounds (default {DEFAULT_ROUNDS})")
    parser.add_argument(
        "--threads", default=DEFAULT_THREADS, help="comma-separated thread counts (default 1,2)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="fast smoke run: fewer sizes, rounds and warm-up"
    )
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
    """Verify, then time every thread count and print its table, GFLOP/s and targets."""
    args = parse_args(argv)
    settings = settings_from(args)
    rng = np.random.default_rng(args.seed)
    print(f"numpy {np.__version__}; torch {torch.__version__ if torch is not None else 'not installed'}")
    print(f"{os.cpu_count()} CPUs; {load_average()} at start")
    verify(rng)
    sizes = all_sizes(args.quick)
    problems = [make_problem(size, rng) for size in sizes]
    runners = {p.size.label: make_runners(p) for p in problems}
    results = []
    for threads in (int(n) for n in args.threads.split(",")):
        print(f"\n# Timing with {threads} thread(s)")
        results.append(run_thread_count(runners, threads, settings, rng))
        print_table(results[-1], sizes)
        print_gflops(results[-1], sizes)
        print_targets(results[-1], sizes)
    print_thread_comparison(results, sizes)


if __name__ == "__main__":
    main()

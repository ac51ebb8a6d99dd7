"""What the machine was doing while the benchmark timed: loaded BLAS / OpenMP thread pools and the load."""

from __future__ import annotations

import os

from threadpoolctl import threadpool_info
from torch_adapter import describe_torch, torch


def describe_threads() -> None:
    """Which BLAS / OpenMP libraries are loaded, their versions and thread counts right now."""
    for info in threadpool_info():
        extra = ", ".join(f"{k}={info[k]}" for k in ("threading_layer", "architecture") if k in info)
        print(
            f"  {info['user_api']}: {info['internal_api']} {info.get('version') or '(version n/a)'}"
            f" [{info['prefix']}] threads={info['num_threads']}" + (f" ({extra})" if extra else "")
        )
    if torch is not None:
        print(f"  {describe_torch()}")


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

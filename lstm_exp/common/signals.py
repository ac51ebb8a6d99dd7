"""Ctrl-C and SIGTERM held for later: a signal handler that only remembers the first signal it got.

Installed where a signal must not break half-done work — the sweep's start and end in the launching
process, a sweep job outside its training loop — and read by whoever can act on it at a safe point: the
pool launcher (which then starts no job) and the training loop (which then stops after its first step).
A handler, not a signal mask: a process-directed signal may be delivered to any thread that does not block
it (MLflow starts threads), but Python runs every handler in the main thread.
"""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_INTERRUPTED = 128 + signal.SIGINT  # the exit status of a process stopped by Ctrl-C / SIGTERM, as shells use


class Latch:
    """A signal handler that records the first signal number it receives."""

    def __init__(self):
        self.received: int | None = None

    def __call__(self, signum, frame) -> None:
        self.received = self.received or signum


def held(handlers) -> int | None:
    """The signal a Latch among ``handlers`` (the ones being replaced) has held, if any."""
    return next((h.received for h in handlers if isinstance(h, Latch) and h.received), None)


def latch_signals() -> dict:
    """Hold SIGINT and SIGTERM in one Latch from now on; the handlers it replaced."""
    latch = Latch()
    return {sig: signal.signal(sig, latch) for sig in STOP_SIGNALS}

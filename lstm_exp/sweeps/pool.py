"""Run jobs each in a process of its own, at most ``n`` at a time, so that a process's death costs its job alone.

Why not Hydra's joblib launcher: its worker pool (loky) treats one worker's death as the pool's, so a
``kill -9`` or an out-of-memory kill of one job fails every job still running or queued
(``TerminatedWorkerError``) and aborts the sweep. Here every job is a fresh ``fork`` of the launching
process — which has already imported NumPy, Hydra and MLflow, so a job starts in milliseconds — a process
that dies is reported with its exit code, and the next job starts.

Signals: each job runs in a process group of its own, so a terminal's Ctrl-C (which goes to the whole
foreground group) reaches only the launching process. That passes SIGINT or SIGTERM on, once, to every running
job — each stops after its step and checkpoints, as a single run does — and starts no new job. A second
signal kills what is left (SIGKILL to each job's group): a job that hangs, or was stopped, cannot hold the sweep.
A job that runs longer than the pool's ``timeout`` is killed the same way and counted failed, with the reason.
Outside its training loop a job holds the two signals (``lstm_exp.common.signals``): one that arrives while the
job starts up stops it after its first step, one that arrives while it writes its results is dropped, so a job
stops only between steps. A signal held in the launching process before the pool starts
(``lstm_exp.sweeps.callback``) stops the sweep before any job.

A job's return value comes back as JSON through a pipe (nothing is unpickled).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait

from lstm_exp.common.errors import warn
from lstm_exp.common.signals import EXIT_INTERRUPTED, STOP_SIGNALS, held, latch_signals


@dataclass(frozen=True)
class Ended:
    """A job whose process has exited: its exit code (negative: killed by that signal) and what it returned."""

    index: int
    exitcode: int
    returned: bool = False
    value: object = None
    timed_out: float | None = None  # the time limit it ran past (it was killed for it)


def cause(exitcode: int, timed_out: float | None = None) -> str:
    """Why a job's process ended without returning, in words."""
    if timed_out is not None:
        return f"the job ran longer than hydra.launcher.timeout={timed_out:g} s and was killed"
    if exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (kill -9, or the kernel's out-of-memory killer)" if -exitcode == signal.SIGKILL else ""
        return f"the job's process was killed by {name}{hint}"
    return f"the job's process exited with status {exitcode} before the job returned"


def _child(job: Callable[[], object], conn) -> None:
    """In the forked process: leave the launcher's process group and signal handlers, run, send the result."""
    os.setpgid(0, 0)
    latch_signals()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by the parent around the fork
    try:
        value = job()
    except KeyboardInterrupt:
        raise SystemExit(EXIT_INTERRUPTED) from None
    conn.send_bytes(json.dumps(value, default=str).encode())


class Pool:
    """``Pool(n).run(jobs, on_end)``: every job (a callable of no arguments) in a forked process, at most n at once.

    ``on_end(ended)`` is called in this process as each job's process exits, in the order they exit;
    ``run`` returns the ended jobs in job order. After a SIGINT or SIGTERM (``stopped_by``) no job is
    started: the jobs never started are the indices missing from the result.
    """

    def __init__(self, n: int, timeout: float | None = None):
        self.n = max(1, n)
        self.timeout = timeout  # seconds a job may run; None: no limit
        self.stopped_by: int | None = None
        self._signals = 0
        self._running: dict[int, tuple] = {}  # index -> (process, pipe (None once read), start time, result read)
        self._timed_out: set = set()

    def _on_signal(self, signum, frame) -> None:
        self.stopped_by = self.stopped_by or signum
        self._signals += 1
        for proc, _, _, _ in list(self._running.values()):  # the first: stop after the step; the second: at once
            self._kill(proc, signum if self._signals == 1 else signal.SIGKILL)

    @staticmethod
    def _kill(proc, signum: int) -> None:
        """Send ``signum`` to the job's process (SIGKILL: to its whole group, whatever it started)."""
        try:
            os.killpg(proc.pid, signum) if signum == signal.SIGKILL else os.kill(proc.pid, signum)
        except ProcessLookupError:
            pass

    def _enforce_timeout(self) -> float | None:
        """Kill the jobs that ran past the time limit; seconds until the next one would (None: no limit)."""
        if self.timeout is None or not self._running:
            return None
        now, nearest = time.monotonic(), self.timeout
        for index, (proc, _, started, _) in self._running.items():
            left = started + self.timeout - now
            if left <= 0 and index not in self._timed_out:
                self._timed_out.add(index)
                self._kill(proc, signal.SIGKILL)
            nearest = min(nearest, max(left, 0.05))
        return nearest

    def _start(self, job: Callable[[], object]):
        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        proc = context.Process(target=_child, args=(job, send), daemon=False)
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # the child must not run this process's handler
        try:
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        send.close()
        return proc, receive, time.monotonic(), None

    def _receive(self, index: int) -> None:
        """Read job ``index``'s result while its process is still alive: a result larger than the pipe's buffer
        (a population's, say) would otherwise block its sender, which would never exit."""
        proc, receive, started, _ = self._running[index]
        try:
            data = receive.recv_bytes()
        except (EOFError, OSError):  # it closed without sending: it died, or is dying
            data = None
        receive.close()
        self._running[index] = (proc, None, started, data)

    def _ended(self, index: int, proc, receive, data) -> Ended:
        proc.join()
        if receive is not None:  # not read while it ran: a result, if any, is whole in the pipe now
            try:
                data = receive.recv_bytes() if receive.poll() else None
            except (EOFError, OSError):
                data = None
            receive.close()
        data = data if proc.exitcode == 0 else None
        value = json.loads(data) if data is not None else None
        timed_out = self.timeout if index in self._timed_out else None
        return Ended(index, proc.exitcode, data is not None, value, timed_out)

    def run(
        self,
        jobs: Sequence[Callable[[], object]],
        on_end: Callable[[Ended], None],
        alongside: Callable[[], None] | None = None,
    ) -> list[Ended]:
        """``alongside()``, if given, is called once in this process once the first jobs run: work that the end
        of the batch needs, done while the jobs run rather than after them (which would leave cores idle)."""
        try:
            previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        except ValueError:  # not the main thread: signals reach the jobs' group as they would
            previous = {}
        self.stopped_by = self.stopped_by or held(previous.values())  # held since the sweep began: no job starts
        pending, ended = deque(enumerate(jobs)), []
        try:
            while pending or self._running:
                while pending and len(self._running) < self.n and self.stopped_by is None:
                    index, job = pending.popleft()
                    self._running[index] = self._start(job)
                if not self._running:
                    break
                if alongside is not None:
                    alongside, work = None, alongside
                    try:
                        work()
                    except Exception as e:  # it only prepares; the jobs go on
                        warn(f"the work alongside the jobs failed: {type(e).__name__}: {e}")
                pipes = {receive: index for index, (_, receive, _, _) in self._running.items() if receive is not None}
                sentinels = [proc.sentinel for proc, _, _, _ in self._running.values()]
                done = wait([*sentinels, *pipes], self._enforce_timeout())
                for receive in set(done) & set(pipes):
                    self._receive(pipes[receive])
                for index, (proc, receive, _, data) in list(self._running.items()):
                    if proc.sentinel in done:
                        del self._running[index]
                        ended.append(self._ended(index, proc, receive, data))
                        on_end(ended[-1])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return sorted(ended, key=lambda e: e.index)

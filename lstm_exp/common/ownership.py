"""Who owns a run: this process (host, pid, start time), as a lock on the run folder and as MLflow tags.

- ``RunLock(run_dir)``: one process at a time may write a run folder (a run, its resume, a sync). The lock is a
  file holding the owner, linked into place whole (a link fails if it exists); a lock whose owner is gone (killed,
  crashed, rebooted) is taken over, so a ``kill -9`` never leaves a folder locked for ever. Released on exit.
- ``owner_tags()`` / ``owner_alive(tags)``: every MLflow run carries its owner, so the report's stale-run
  repair marks only runs whose owner is gone — never a live one.

A process is identified by (host, pid, start time): a pid alone can be reused after its process exits.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import psutil

from lstm_exp.common import clock
from lstm_exp.common.errors import UserError

LOCK_FILE = "run.lock"
START_TOLERANCE = 1.0  # seconds: process start times are stored rounded


def process_age() -> float:
    """Seconds since this program started: since the process began (a forked sweep job: its fork) or since
    lstm_exp was loaded, whichever is later (a shell that exec'd python leaves an older process).

    The process's start comes from /proc (clock ticks since boot, against the boot-time clock, ~10 ms);
    elsewhere from psutil, which is only as exact as the system's boot time (to the second).
    """
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        process = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        process = time.time() - psutil.Process().create_time()
    return min(process, time.monotonic() - clock.LOADED)


def this_process() -> dict:
    """The current process as an owner record."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": round(psutil.Process(pid).create_time(), 2)}


def alive(owner: dict) -> bool | None:
    """True if the owning process still runs, False if it is gone, None if it lives on another host."""
    if owner.get("host") != socket.gethostname():
        return None
    try:
        started = psutil.Process(int(owner["pid"])).create_time()
    except (psutil.NoSuchProcess, KeyError, ValueError, TypeError):
        return False
    return abs(started - float(owner.get("started", 0))) <= START_TOLERANCE


def owner_tags() -> dict:
    """MLflow tags naming this process as the run's owner."""
    return {f"owner.{k}": v for k, v in this_process().items()}


def owner_alive(tags: dict) -> bool | None:
    """alive() for the owner recorded in a run's tags; False when the run has no owner tags (older runs)."""
    owner = {k.removeprefix("owner."): v for k, v in tags.items() if k.startswith("owner.")}
    return alive(owner) if owner else False


class RunLock:
    """Exclusive ownership of a run folder while the block runs (see the module docstring)."""

    def __init__(self, run_dir, then: str = "wait for it to end, or stop it (Ctrl-C checkpoints it), then resume"):
        self.path = Path(run_dir) / LOCK_FILE
        self.then = then  # what the refusal tells the user to do
        self.mine = False

    def _holder(self, path: Path | None = None) -> dict | None:
        try:
            return json.loads((path or self.path).read_text())
        except (OSError, ValueError):
            return None  # vanished, or not written by us: nobody holds it

    def _refusal(self, holder: dict) -> UserError:
        where = "on this machine" if alive(holder) else f"on host {holder.get('host')}"
        return UserError(f"run folder {self.path.parent} is in use by process {holder.get('pid')} {where}; {self.then}")

    def _create(self) -> bool:
        """Create the lock holding this process, whole or not at all: written under a name of its own, then linked
        into place (a link fails if the lock exists), so no other process ever reads a half-written lock."""
        draft = self.path.with_name(f".{LOCK_FILE}.{os.getpid()}")
        draft.write_text(json.dumps(this_process()))
        try:
            os.link(draft, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            draft.unlink(missing_ok=True)

    def _take_over(self) -> None:
        """Move a lock whose owner is gone out of the way. It is renamed to a name of this process's first (one
        rename wins); if what was moved turns out to be a live owner's (it replaced the stale lock meanwhile), it
        is put back and refused."""
        moved = self.path.with_name(f".{LOCK_FILE}.stale.{os.getpid()}")
        try:
            os.rename(self.path, moved)
        except FileNotFoundError:
            return  # another process moved it first
        holder = self._holder(moved)
        if holder is not None and alive(holder) is not False:
            try:
                os.link(moved, self.path)
            finally:
                moved.unlink(missing_ok=True)
            raise self._refusal(holder)
        moved.unlink(missing_ok=True)

    def acquire(self) -> None:
        for _ in range(3):  # a stale lock is moved away and the creation tried again
            if self._create():
                self.mine = True
                return
            holder = self._holder()
            if holder is not None and alive(holder) is not False:
                raise self._refusal(holder)
            self._take_over()
        raise UserError(f"run folder {self.path.parent}: could not take its lock {self.path}")

    def release(self) -> None:
        if self.mine:
            self.path.unlink(missing_ok=True)
            self.mine = False

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False

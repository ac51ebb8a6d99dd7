"""What a run says to a person. A single run prints it; a sweep's job only writes it to its folder's log (the sweep
prints one line per job as it ends, so concurrent jobs never interleave), and both keep it in that log — Hydra's
job log, ``<run folder>/<job name>.log`` — beside Hydra's own lines."""

from __future__ import annotations

import sys
from pathlib import Path


class Console:
    def __init__(self, log_file: str | Path | None = None, screen: bool = True):
        self.log_file = Path(log_file) if log_file else None
        self.screen = screen

    def say(self, text: str, err: bool = False, via=None) -> None:
        """``text`` on the terminal (stderr for ``err``; through ``via``, e.g. a progress bar's ``write``, if given)
        if this run prints, and appended to its log."""
        if self.screen:
            if via is not None:
                via(text)
            else:
                print(text, file=sys.stderr if err else sys.stdout, flush=True)
        if self.log_file is not None:
            try:
                with open(self.log_file, "a", encoding="utf-8") as log:
                    log.write(text + "\n")
            except OSError:  # a log that cannot be written loses nothing the run records elsewhere
                self.log_file = None


def job_console(ctx) -> Console:
    """The console of a job (``lstm_exp.runner.context.JobContext``): its log file, and the terminal unless it is
    one of a sweep's jobs."""
    log = Path(ctx.output_dir) / f"{ctx.job_name}.log" if ctx.output_dir else None
    return Console(log, screen=not ctx.multirun)

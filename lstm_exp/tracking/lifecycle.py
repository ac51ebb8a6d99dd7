"""One lifecycle for every tracked run: started, then ended right on every way out.

``tracked(live)`` wraps the work a run records. A clean exit leaves the run as the work ended it (a job finishes
it with its outcome; a run still open is ended FINISHED); Ctrl-C or SIGTERM ends it KILLED; any other exception
ends it FAILED with the error as a tag and the traceback as ``error.txt``. The job, a diagnosis, a refused sweep job
and the tracking agent all end their runs through it. Runs known only by their id — a sweep's parents, the runs of
jobs whose process died, stale runs — are ended by ``end_by_id``.
"""

from __future__ import annotations

import contextlib

from lstm_exp.common.errors import first_line, warn
from lstm_exp.tracking.run import TrackedRun, fail_run
from lstm_exp.tracking.store import patiently

OUTCOME = {"FAILED": "failed", "KILLED": "killed"}


@contextlib.contextmanager
def tracked(live: TrackedRun | None, end_clean: bool = True):
    """Run the block; end ``live`` (if any) KILLED on Ctrl-C, FAILED on an exception, and FINISHED if it is still
    open after a clean exit (unless ``end_clean`` is false: the caller goes on recording into it)."""
    try:
        yield live
    except BaseException as e:
        if live is not None and not live.ended:
            try:
                fail_run(live, e, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
            except Exception as also:  # the store (or its disk) is what failed: the first error is the one to tell
                warn(
                    f"the run could not be ended in MLflow ({type(also).__name__}: {first_line(also)}); python -m "
                    "lstm_exp.report --fix-stale ends it once the store works again"
                )
        raise
    if live is not None and end_clean and not live.ended:
        live.end("FINISHED")


def end_by_id(client, run_id: str, status: str, error: str | None = None) -> None:
    """End a run this process does not hold (by its id): FAILED or KILLED with its ``outcome`` and ``error`` tags,
    or FINISHED."""
    if status in OUTCOME:
        patiently(lambda: client.set_tag(run_id, "outcome", OUTCOME[status]))
    if error:
        patiently(lambda: client.set_tag(run_id, "error", error))
    patiently(lambda: client.set_terminated(run_id, status))

"""The tracking agent: a helper process that writes a single run's MLflow records, so that importing MLflow and opening
its store (about 1.7 s of Python on these machines) overlap with composing and training instead of coming before them.

``python -m lstm_exp`` forks the agent as its first statement (``start``), before Hydra or NumPy is imported; the
agent imports MLflow and its SQL store on the other core, then waits. If the job trains a tracked run, ``claim``
hands it the run (``lstm_exp.tracking.remote_run.RemoteRun``); otherwise the agent is simply ended. A sweep's jobs
never use it: they are forked from a launcher that has already imported MLflow.

The two talk over ``lstm_exp.tracking.channel``: frames handled strictly in order by one loop (``Writer``), so
nothing the training process logs is reordered; the agent answers the messages that ask (a call, or an
acknowledgement at each metric flush), and an answer confirms everything sent before it. If the agent dies or
stalls, the training process kills it and spools what it did not confirm (``RemoteRun``): the run completes through
``python -m lstm_exp.sync``, and the job says so and exits with ``EXIT_NOT_RECORDED``.

Signals: the agent ignores SIGINT and SIGTERM (a terminal's Ctrl-C reaches the whole foreground group); the training
process handles them and ends the run KILLED through the agent. If the training process dies, the agent sees the
socket close and ends the run FAILED itself.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import sys
import traceback

from lstm_exp.common.errors import UserError, warn
from lstm_exp.tracking.channel import RUN_METHODS, Agent, Channel
from lstm_exp.tracking.run import MAX_METRICS_PER_BATCH, start_run, system_metrics
from lstm_exp.tracking.store import release, warm_up

# command lines that never train a fresh tracked single run: no agent is started for them
NO_AGENT = ("-m", "--multirun", "--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion")
NO_AGENT_PREFIXES = ("tracking.enabled=false", "mode=", "resume=", "hydra/launcher=", "hydra/sweeper=")

_early: Agent | None = None


def wanted(argv: list[str]) -> bool:
    """Whether a command line may train a fresh tracked single run (the only kind the agent serves)."""
    return not any(a in NO_AGENT or a.lower().startswith(NO_AGENT_PREFIXES) for a in argv)


def start(argv: list[str]) -> None:
    """Fork the agent now, if ``argv`` may need it (see ``wanted``); it warms MLflow up and waits."""
    global _early
    if not wanted(argv) or not hasattr(os, "fork"):
        return

    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        ours.close()
        _serve(Channel(theirs))  # never returns
    theirs.close()
    _early = Agent(pid, Channel(ours))
    atexit.register(_dismiss_unclaimed)


def claim() -> Agent | None:
    """The agent started for this process, handed over once (None if there is none, or it was taken)."""
    global _early
    agent, _early = _early, None
    return agent


def _dismiss_unclaimed() -> None:
    agent = claim()
    if agent is not None:
        agent.dismiss()


def _serve(channel: Channel) -> None:
    """The agent process: warm up, then do what the channel says until it closes; exits."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    status, writer = 0, None
    try:
        warm_up()
        writer = Writer(channel)
        writer.serve()
    except BaseException:  # nothing may escape into the caller's code, which this fork shares
        traceback.print_exc()
        status = 1
        if writer is not None:
            with contextlib.suppress(BaseException):
                writer.abandon()  # a run is never left RUNNING by the agent's own failure
    finally:
        if writer is not None and writer.live is not None:
            with contextlib.suppress(BaseException):
                release(writer.live.tracking_uri)  # its connections closed, the store's log folded in
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


class Writer:
    """The agent's side: a run (``MlflowRun``) and the operations the channel asks of it."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self.live = None
        self.monitor = None  # the system-metrics monitor's context, while it runs
        self.ended = False

    def serve(self) -> None:
        """Do each message's operation in turn; answer the ones that ask."""
        while True:
            try:
                message = self.channel.receive(timeout=None)
            except (EOFError, OSError):  # the training process has gone: end a run it left open
                self.abandon()
                return
            if self.live is None and message["op"] != "start":
                answer = {"error": "the run was not started"}
            else:
                if message["op"] != "log_points":
                    self.flush()  # the points before it are written before it
                answer = self.answer(message)
                if not self.channel.waiting():
                    self.flush()  # nothing else waiting: write the points gathered
            if "error" in answer and not message["reply"] and self.live is not None:
                warn(f"the tracking agent could not {message['op']}: {answer['error']}")
            if message["reply"]:
                try:
                    self.channel.send({"seq": message["seq"], **answer}, timeout=None)
                except OSError:  # it died waiting for this answer
                    self.abandon()
                    return

    def flush(self) -> None:
        """Write the metric points gathered; a failure is a warning (the run itself goes on)."""
        if self.live is None:
            return
        try:
            self.live.flush()
        except Exception as e:
            warn(f"the tracking agent could not write metrics: {type(e).__name__}: {e}")

    def answer(self, message: dict) -> dict:
        try:
            return {"value": getattr(self, "op_" + message["op"])(*message["args"])}
        except UserError as e:
            return {"error": str(e), "user": True}
        except Exception as e:
            return {"error": f"{type(e).__name__}: {e}"}

    def op_start(self, uri, experiment, run_name, config, tags, flush_every, spool_dir, dataset, cwd, env) -> dict:
        """Open the run as the training process would: from its folder, with its environment (Hydra may have
        changed both since this process was forked); the run's state."""

        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)

        from lstm_exp.tracking.dataset import as_input  # lazy: it imports the tasks, which the agent needs only here

        self.live = start_run(uri, experiment, run_name, config, tags, flush_every, spool_dir=spool_dir)
        self.live.log_dataset(as_input(*dataset))
        return self.op_state()

    def op_log_points(self, points) -> None:
        """A batch the training process flushed: batches that queue up while the store is busy are written
        together, up to MLflow's 1000 points per call (``serve``)."""
        self.live.log_points([tuple(p) for p in points])
        if self.live.buffered >= MAX_METRICS_PER_BATCH:
            self.flush()

    def op_ack(self) -> None:
        """Nothing: its answer confirms that everything before it is done."""

    def op_state(self) -> dict:
        live = self.live
        return {
            "run_id": live.run_id,
            "experiment_id": live.experiment_id,
            "tracking_uri": live.tracking_uri,
            "offline": live.offline,
            "spool": str(live.spool.path) if live.spool is not None else None,
            "store_lost": live.store_lost(),
            "store": str(live.store) if live.store is not None else None,
        }

    def op_monitor(self, on: bool) -> None:

        if on and self.monitor is None:
            self.monitor = system_metrics(self.live)
            self.monitor.__enter__()
        elif not on and self.monitor is not None:
            monitor, self.monitor = self.monitor, None
            monitor.__exit__(None, None, None)

    def op_end(self, status: str) -> dict:
        self.op_monitor(False)
        self.live.end(status)
        self.ended = True
        return self.op_state()

    def __getattr__(self, name: str):
        """``op_<method>``: that method of the run (set_tags, log_params, log_text, log_json, log_file, ...)."""
        if name.startswith("op_") and name[3:] in RUN_METHODS:
            return getattr(self.live, name[3:])
        raise AttributeError(name)

    def abandon(self) -> None:
        if self.live is None or self.ended:
            return
        self.live.set_tags(
            {"outcome": "failed", "error": "the training process ended without ending its run (it was killed?)"}
        )
        self.op_end("FAILED")

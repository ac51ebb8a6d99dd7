"""The tracking agent: a helper process that writes a single run's MLflow records, so that importing MLflow
and opening its store (about 1.7 s of Python on these machines) overlap with composing and training instead of
coming before them.

``python -m lstm_exp`` forks the agent as its first statement (``start``), before Hydra or NumPy is imported;
the agent imports MLflow and its SQL store on the other core, then waits. If the job trains a tracked run,
``claim`` hands it the run (``RemoteRun``); otherwise the agent is simply ended. A sweep's jobs never use
it: they are forked from a launcher that has already imported MLflow. Weights & Biases runs its writer in a
service process for the same reason.

The protocol is JSON messages over a pipe (nothing is unpickled), handled strictly in order by one loop, so
nothing the training process logs is reordered. Writes that need no answer (metrics, tags, params, texts) are
sent without waiting; a write that names a file, the run's id and the end of the run wait for the agent.
If the store fails as the run begins, the agent queues every write in the run folder's spool
(``lstm_exp.tracking.spool``), as a run whose server goes away does, and says how to upload it.

Signals: the agent ignores SIGINT and SIGTERM (a terminal's Ctrl-C reaches the whole foreground group); the
training process handles them and ends the run KILLED through the agent. If the training process dies, the
agent sees the pipe close and ends the run FAILED itself.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
from multiprocessing.connection import Connection

from lstm_exp.common.errors import UserError

# command lines that never train a fresh tracked single run: no agent is started for them
NO_AGENT = ("-m", "--multirun", "--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion")
NO_AGENT_PREFIXES = ("tracking.enabled=false", "mode=", "resume=", "hydra/launcher=", "hydra/sweeper=")


class AgentGone(RuntimeError):
    """The agent process ended (or was never reachable) while the run still needed it."""


class Agent:
    """The training process's end of the pipe to the agent process."""

    def __init__(self, pid: int, conn: Connection):
        self.pid, self.conn = pid, conn
        self.unread = 0  # answers asked for and not yet read

    def send(self, op: str, *args, reply: bool = False) -> None:
        """Queue ``op(*args)`` in the agent, without waiting; with ``reply``, ``receive`` gets its answer."""
        try:
            self.conn.send_bytes(json.dumps({"op": op, "args": args, "reply": reply}, default=str).encode())
        except OSError as e:
            raise AgentGone(f"the tracking agent (pid {self.pid}) is gone ({e})") from None
        self.unread += reply

    def _read(self) -> dict:
        try:
            answer = json.loads(self.conn.recv_bytes())
        except (OSError, EOFError) as e:
            raise AgentGone(f"the tracking agent (pid {self.pid}) is gone ({type(e).__name__})") from None
        self.unread -= 1
        return answer

    def receive(self):
        """The answer to the oldest unanswered ``send(..., reply=True)``: its value, or its error raised here."""
        answer = self._read()
        if "error" in answer:
            raise (UserError if answer.get("user") else AgentError)(answer["error"])
        return answer["value"]

    def answered(self) -> bool:
        """Whether an answer is waiting (without waiting for one)."""
        return self.conn.poll()

    def call(self, op: str, *args):
        """``op(*args)`` in the agent, after everything sent before it; its value, or its error raised here.
        An answer left unread by an interrupted call (a Ctrl-C while it waited) is read and dropped first."""
        while self.unread:
            self._read()
        self.send(op, *args, reply=True)
        return self.receive()

    def dismiss(self) -> None:
        """End an agent that got no run (it owns nothing, so it is killed)."""
        self.conn.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

    def close(self) -> None:
        """Let an agent whose run has ended exit, and reap it."""
        self.conn.close()
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


class AgentError(RuntimeError):
    """An error the agent met doing what it was asked (its message is the agent's)."""


_early: Agent | None = None


def wanted(argv: list[str]) -> bool:
    """Whether a command line may train a fresh tracked single run (the only kind the agent serves)."""
    return not any(a in NO_AGENT or a.lower().startswith(NO_AGENT_PREFIXES) for a in argv)


def start(argv: list[str]) -> None:
    """Fork the agent now, if ``argv`` may need it (see ``wanted``); it warms MLflow up and waits."""
    global _early
    if not wanted(argv) or not hasattr(os, "fork"):
        return
    import atexit
    from multiprocessing import Pipe

    ours, theirs = Pipe(duplex=True)
    pid = os.fork()
    if pid == 0:
        ours.close()
        _serve(theirs)  # never returns
    theirs.close()
    _early = Agent(pid, ours)
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


def _serve(conn: Connection) -> None:
    """The agent process: warm up, then do what the pipe says until it closes; exits."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    status, writer = 0, None
    try:
        from lstm_exp.tracking import run as tracking

        tracking.warm_up()
        writer = Writer(conn)
        writer.serve()
    except BaseException:  # nothing may escape into the caller's code, which this fork shares
        import traceback

        traceback.print_exc()
        status = 1
        if writer is not None:
            with contextlib.suppress(BaseException):
                writer.abandon()  # a run is never left RUNNING by the agent's own failure
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


class Writer:
    """The agent's side: a run (``tracking.MlflowRun``) and the operations the pipe asks of it."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.live = None
        self.monitor = None  # the system-metrics monitor's context, while it runs
        self.ended = False

    def serve(self) -> None:
        """Do each message's operation in turn; after a start that failed, there is no run and nothing to do."""
        while True:
            try:
                message = json.loads(self.conn.recv_bytes())
            except (EOFError, OSError):  # the training process has gone: end a run it left open
                # (a reset, not an EOF, if it died with an answer unread; what it sent before is read first)
                self.abandon()
                return
            if self.live is None and message["op"] != "start":
                answer = {"error": "the run was not started"}
            else:
                if message["op"] != "metrics":
                    self.flush()  # the points before it are written before it
                answer = self.answer(message)
                if not self.conn.poll():
                    self.flush()  # nothing else waiting: write the points gathered
            if "error" in answer and not message["reply"] and self.live is not None:
                print(f"warning: the tracking agent could not {message['op']}: {answer['error']}", file=sys.stderr)
            if message["reply"]:
                try:
                    self.conn.send_bytes(json.dumps(answer, default=str).encode())
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
            print(f"warning: the tracking agent could not write metrics: {type(e).__name__}: {e}", file=sys.stderr)

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
        from lstm_exp.tracking import run as tracking
        from lstm_exp.tracking.dataset import as_input

        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)

        self.live = tracking.start_run(uri, experiment, run_name, config, tags, flush_every, spool_dir=spool_dir)
        self.live.log_dataset(as_input(*dataset))
        return self.op_state()

    def op_metrics(self, points) -> None:
        """A batch the training process flushed: batches that queue up while the store is busy are written
        together, up to MLflow's 1000 points per call (``serve``)."""
        from lstm_exp.tracking.run import MAX_METRICS_PER_BATCH

        self.live.log_points(points)
        if self.live.buffered >= MAX_METRICS_PER_BATCH:
            self.flush()

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
            "points_logged": live.points_logged,
        }

    def op_monitor(self, on: bool) -> None:
        from lstm_exp.tracking import run as tracking

        if on and self.monitor is None:
            self.monitor = tracking.system_metrics(self.live)
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


# what is known of a run whose agent died before saying
LOST_STATE = {
    "run_id": None,
    "experiment_id": None,
    "offline": False,
    "spool": None,
    "store_lost": False,
    "store": None,
}
RUN_METHODS = ("set_tags", "clear_tags", "log_params", "log_text", "log_json", "log_file", "log_dir")


class RemoteRun:
    """A run written by the agent, with the interface of ``tracking.MlflowRun`` that jobs and training use.

    Metric points are buffered here and sent every ``flush_every`` steps; they carry the time they were
    logged, so the store's timestamps are the training's, not the agent's.
    """

    def __init__(self, agent: Agent, flush_every: int, tracking_uri: str):
        self.agent: Agent | None = agent  # None once it has gone (see _lost)
        self.flush_every = flush_every
        self.tracking_uri = tracking_uri
        self._buffer: list = []
        self._last_flush_step = 0
        self._state: dict | None = None
        self._started = False  # the agent has answered the run's start

    @classmethod
    def start(cls, agent: Agent, uri, experiment, run_name, config, tags, flush_every, spool_dir, dataset):
        """Ask the agent to open the run (it owns nothing else).

        ``dataset``: ``lstm_exp.tracking.dataset.description``."""
        from lstm_exp.common.ownership import owner_tags
        from lstm_exp.tracking.run import resolve_uri

        tags = {**tags, **owner_tags()}  # the training process owns the run, not the agent
        run = (uri, experiment, run_name, config, tags, flush_every, spool_dir, dataset)
        agent.send("start", *run, os.getcwd(), dict(os.environ), reply=True)
        return cls(agent, flush_every, resolve_uri(uri))

    def _check_started(self, wait: bool) -> None:
        """Read the answer to ``start`` once it is there (``wait``: until it is). A store that does not work
        (MLflow refused it as the agent opened it) is a UserError here, as it would be before training."""
        if self._started or self.agent is None or not (wait or self.agent.answered()):
            return
        try:
            self._state = self.agent.receive()
            self._started = True
        except (UserError, AgentError):  # no run: this is the job's error, and the agent has nothing to do
            self.agent.dismiss()
            self.agent, self._state = None, {**LOST_STATE, "ended": True}
            raise
        except AgentGone as e:
            self._lost(e)

    def _send(self, op: str, *args) -> None:
        if self.agent is not None:
            try:
                self.agent.send(op, *args)
            except AgentGone as e:
                self._lost(e)

    def _call(self, op: str, *args):
        self._check_started(wait=True)
        if self.agent is not None:
            try:
                return self.agent.call(op, *args)
            except AgentGone as e:
                self._lost(e)
        return None

    def _lost(self, error: AgentGone) -> None:
        """The agent died (killed, out of memory): training goes on, its later writes cannot be made."""
        agent, self.agent = self.agent, None
        agent.dismiss()  # reaped
        self._state = {**(self._state or LOST_STATE), "ended": True}
        print(
            f"warning: {error}: this run's later MLflow writes are lost; its run folder and checkpoints are intact",
            file=sys.stderr,
        )

    def state(self) -> dict:
        """The run's state as the agent knows it now (asked for: whether it went offline, lost its store)."""
        if self._state is None or not self._state.get("ended"):
            self._state = self._call("state") or self._state or LOST_STATE
        return self._state

    def _known(self) -> dict:
        """The state the start answered (its run id, experiment and store do not change): waits for it once."""
        self._check_started(wait=True)
        return self._state or LOST_STATE

    @property
    def run_id(self) -> str | None:
        return self._known()["run_id"]

    @property
    def experiment_id(self) -> str | None:
        return self._known()["experiment_id"]

    @property
    def store(self) -> str | None:
        """The SQLite file the run is written to (None for any other store)."""
        return self._known()["store"]

    @property
    def offline(self) -> bool:
        return self.state()["offline"]

    def store_lost(self) -> bool:
        return self.state()["store_lost"]

    def log_metrics(self, metrics: dict, step: int) -> None:
        now = int(time.time() * 1000)
        self._buffer.extend((k, float(v), now, step) for k, v in metrics.items() if math.isfinite(v))
        if step - self._last_flush_step >= self.flush_every:
            self.flush()
            self._last_flush_step = step

    def flush(self) -> None:
        self._check_started(wait=False)
        if self._buffer:
            points, self._buffer = self._buffer, []
            self._send("metrics", points)

    def set_tags(self, tags: dict) -> None:
        self._send("set_tags", {k: str(v) for k, v in tags.items() if v is not None})

    def clear_tags(self, keys) -> None:
        self._send("clear_tags", list(keys))

    def log_params(self, params: dict) -> None:
        self._send("log_params", params)

    def log_text(self, text: str, name: str) -> None:
        self._send("log_text", text, name)

    def log_json(self, payload: dict, name: str) -> None:
        self._send("log_json", json.loads(json.dumps(payload, default=str)), name)

    def log_file(self, path, artifact_dir: str | None = None) -> None:
        self._call("log_file", str(path), artifact_dir)  # waits: the file may be temporary

    def log_dir(self, path, artifact_dir: str | None = None) -> None:
        self._call("log_dir", str(path), artifact_dir)

    def log_figure(self, fig, name: str) -> None:
        """A matplotlib figure as a PNG artifact (then closed)."""
        import tempfile
        from pathlib import Path

        from lstm_exp.common.figures import pyplot

        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / Path(name).name
                fig.savefig(path, dpi=100)
                folder = str(Path(name).parent)
                self.log_file(path, folder if folder != "." else None)
        finally:
            pyplot().close(fig)

    @contextlib.contextmanager
    def system_metrics(self):
        """MLflow's system-metrics monitor while the block runs; it runs in the agent."""
        self._send("monitor", True)
        try:
            yield
        finally:
            self._send("monitor", False)

    def end(self, status: str) -> None:
        self.flush()
        ended = self._call("end", status)  # the agent says where an offline run went
        if self.agent is not None:
            self._state = {**ended, "ended": True}
            self.agent.close()
            self.agent = None

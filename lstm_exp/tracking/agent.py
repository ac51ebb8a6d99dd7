"""The tracking agent: a helper process that writes a single run's MLflow records, so that importing MLflow and opening
its store (about 1.7 s of Python on these machines) overlap with composing and training instead of coming before them.

``python -m lstm_exp`` forks the agent as its first statement (``start``), before Hydra or NumPy is imported; the
agent imports MLflow and its SQL store on the other core, then waits. If the job trains a tracked run, ``claim``
hands it the run (``RemoteRun``); otherwise the agent is simply ended. A sweep's jobs never use it: they are forked
from a launcher that has already imported MLflow.

The protocol is length-prefixed JSON frames over a socket pair (nothing is unpickled), handled strictly in order by
one loop, so nothing the training process logs is reordered. Every message has a sequence number; the agent answers
the ones that ask (a call, or an acknowledgement at each metric flush), and an answer confirms everything sent
before it. The training process keeps what is not confirmed yet; if the agent dies (its socket closes) or stalls
(a frame cannot be sent, or an answer does not come, within ``STALL_SECONDS``), it is killed, and what it did not
confirm goes to the run folder's spool (``lstm_exp.tracking.spool``) with every later write: the run completes
through ``python -m lstm_exp.sync``, and the job says so and exits with ``EXIT_NOT_RECORDED``.

Signals: the agent ignores SIGINT and SIGTERM (a terminal's Ctrl-C reaches the whole foreground group); the training
process handles them and ends the run KILLED through the agent. If the training process dies, the agent sees the
socket close and ends the run FAILED itself.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys
import traceback

from lstm_exp.common.errors import UserError, warn
from lstm_exp.common.ownership import owner_tags
from lstm_exp.tracking.run import (
    MAX_METRICS_PER_BATCH,
    MlflowRun,
    RunBase,
    start_offline_run,
    start_run,
    system_metrics,
)
from lstm_exp.tracking.spool import Spool
from lstm_exp.tracking.store import release, resolve_uri, warm_up

# command lines that never train a fresh tracked single run: no agent is started for them
NO_AGENT = ("-m", "--multirun", "--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion")
NO_AGENT_PREFIXES = ("tracking.enabled=false", "mode=", "resume=", "hydra/launcher=", "hydra/sweeper=")
# a frame that cannot be sent, or an answer that does not come, for this long: a stalled agent
STALL_SECONDS = float(os.environ.get("LSTM_EXP_AGENT_STALL_SECONDS", "60"))
HEADER = struct.Struct("!I")


class AgentGone(RuntimeError):
    """The agent process ended, or stalled, while the run still needed it."""


class AgentError(RuntimeError):
    """An error the agent met doing what it was asked (its message is the agent's)."""


class Channel:
    """Length-prefixed JSON frames over one end of a socket pair, each send and receive bounded in time."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def send(self, message: dict, timeout: float | None = STALL_SECONDS) -> None:
        data = json.dumps(message, default=str).encode()
        self.sock.settimeout(timeout)
        self.sock.sendall(HEADER.pack(len(data)) + data)

    def _exactly(self, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            chunk = self.sock.recv(n - got)
            if not chunk:
                raise EOFError("the other end closed")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def receive(self, timeout: float | None = STALL_SECONDS) -> dict:
        self.sock.settimeout(timeout)
        (size,) = HEADER.unpack(self._exactly(HEADER.size))
        return json.loads(self._exactly(size))

    def waiting(self) -> bool:
        """Whether a frame has arrived (without waiting for one)."""

        return bool(select.select([self.sock], [], [], 0)[0])

    def close(self) -> None:
        self.sock.close()


class Agent:
    """The training process's end of the channel to the agent process: numbered messages, answers in order."""

    def __init__(self, pid: int, channel: Channel):
        self.pid, self.channel = pid, channel
        self.sent = 0  # the number of the last message sent
        self.confirmed = 0  # the number of the last message the agent has answered (so done, with all before it)
        self.wanted: set = set()  # messages whose answers are waited for
        self.answers: dict = {}  # their answers, once in

    def _gone(self, why: str) -> AgentGone:
        return AgentGone(f"the tracking agent (pid {self.pid}) {why}")

    def send(self, op: str, *args, reply: bool = False, wait: bool = False) -> int:
        """Queue ``op(*args)`` in the agent without waiting for it; its number. ``reply``: the agent answers it
        (which confirms it and all before it); ``wait``: its answer is kept for ``wait_for``."""
        self.sent += 1
        try:
            self.channel.send({"seq": self.sent, "op": op, "args": args, "reply": reply or wait})
        except TimeoutError:
            raise self._gone(f"stalled: a message could not be sent for {STALL_SECONDS:.0f} s") from None
        except OSError as e:
            raise self._gone(f"is gone ({e.strerror or e})") from None
        if wait:
            self.wanted.add(self.sent)
        return self.sent

    def _answer(self) -> None:
        try:
            answer = self.channel.receive(STALL_SECONDS)
        except TimeoutError:
            raise self._gone(f"stalled: no answer for {STALL_SECONDS:.0f} s") from None
        except (OSError, EOFError) as e:
            raise self._gone(f"is gone ({type(e).__name__})") from None
        self.confirmed = answer["seq"]
        if answer["seq"] in self.wanted:
            self.answers[answer["seq"]] = answer

    def read_answers(self) -> None:
        """Take in the answers that have arrived, without waiting (they confirm what was sent before them)."""
        try:
            waiting = self.channel.waiting()
        except (OSError, ValueError):
            raise self._gone("is gone (its socket closed)") from None
        while waiting:
            self._answer()
            waiting = self.channel.waiting()

    def wait_for(self, seq: int):
        """The value of message ``seq``'s answer, once it comes; its error raised here."""
        while seq not in self.answers:
            self._answer()
        self.wanted.discard(seq)
        answer = self.answers.pop(seq)
        if "error" in answer:
            raise (UserError if answer.get("user") else AgentError)(answer["error"])
        return answer.get("value")

    def call(self, op: str, *args):
        """``op(*args)`` in the agent, after everything sent before it; its value, or its error raised here."""
        return self.wait_for(self.send(op, *args, wait=True))

    def dismiss(self) -> None:
        """End the agent at once (one that got no run, or stalled): it is killed and reaped."""
        self.channel.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

    def close(self) -> None:
        """Let an agent whose run has ended exit, and reap it."""
        self.channel.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


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


RUN_METHODS = ("set_tags", "clear_tags", "log_params", "log_text", "log_json", "log_file", "log_dir", "log_points")


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


# what is known of a run whose agent died before saying
LOST_STATE = {"run_id": None, "experiment_id": None, "offline": True, "spool": None, "store_lost": False, "store": None}


class RemoteRun(RunBase):
    """A run written by the agent (``TrackedRun``). Metric points are buffered here and sent every ``flush_every``
    steps with the time they were logged, so the store's timestamps are the training's, not the agent's.

    Every write not yet confirmed by the agent is kept (``_journal``); when the agent dies or stalls, those and
    every later write go to the spool through an offline ``MlflowRun`` (``_fallback``)."""

    def __init__(self, agent: Agent, flush_every: int, tracking_uri: str, start: tuple, spool_dir):
        super().__init__(flush_every)
        self.agent: Agent | None = agent  # None once it has gone (see _lost)
        self.tracking_uri = tracking_uri
        self._start = start  # the start's arguments: a run the agent never created is made offline from them
        self._spool_dir = spool_dir
        self._journal: list = []  # (seq, op, args) sent and not confirmed
        self._start_seq: int | None = None  # the start's message, whose answer is the run's state
        self._state: dict | None = None
        self._fallback = None  # the offline run that takes over from a lost agent
        self.lost = False  # the agent died or stalled: the run completes through sync

    @classmethod
    def start(cls, agent: Agent, uri, experiment, run_name, config, tags, flush_every, spool_dir, dataset):
        """Ask the agent to open the run (it owns nothing else).

        ``dataset``: ``lstm_exp.tracking.dataset.description``."""

        tags = {**tags, **owner_tags()}  # the training process owns the run, not the agent
        uri = resolve_uri(uri)  # here, where the launch folder is known
        start = (uri, experiment, run_name, config, tags, flush_every, spool_dir)
        run = cls(agent, flush_every, uri, start, spool_dir)
        run._start_seq = agent.send("start", *start, dataset, os.getcwd(), dict(os.environ), wait=True)
        return run

    # ------------------------------------------------------------------------------------------------ plumbing

    def _trim(self) -> None:
        confirmed = self.agent.confirmed if self.agent is not None else 0
        self._journal = [entry for entry in self._journal if entry[0] > confirmed]

    def _send(self, op: str, *args, reply: bool = False) -> None:
        """Send a write to the agent (kept until confirmed), or to the fallback once the agent is lost."""
        if self._fallback is not None or self.agent is None:
            self._replay(op, args)
            return
        try:
            seq = self.agent.send(op, *args, reply=reply)
            self._journal.append((seq, op, args))
            self.agent.read_answers()
            self._trim()
        except AgentGone as e:
            self._lost(e)
            self._replay(op, args)

    def _call(self, op: str, *args):
        """``op`` in the agent, waiting for it (a file that may be temporary, the run's end); None once lost."""
        if self._fallback is not None or self.agent is None:
            return self._replay(op, args)
        try:
            self._check_started()
            seq = self.agent.send(op, *args, wait=True)
            self._journal.append((seq, op, args))
            value = self.agent.wait_for(seq)
            self._trim()
            return value
        except AgentGone as e:
            self._lost(e)
            return self._replay(op, args)

    def _check_started(self) -> None:
        """The start's answer, read once (a store MLflow refused as the agent opened it is the job's error)."""
        if self._state is not None or self.agent is None:
            return
        try:
            self._state = self.agent.wait_for(self._start_seq)
        except (UserError, AgentError):  # the start failed: no run; this is the job's error
            self.agent.dismiss()
            self.agent, self._state, self.ended = None, dict(LOST_STATE), True
            raise

    def _lost(self, error: AgentGone) -> None:
        """The agent died or stalled: it is ended, and what it did not confirm goes to the spool with the rest."""

        agent, self.agent = self.agent, None
        with contextlib.suppress(AgentGone):
            agent.read_answers()  # the start's answer may be in, unread: the run it made is this one
        started = agent.answers.get(self._start_seq)
        if self._state is None and started is not None and "value" in started:
            self._state = started["value"]
        agent.dismiss()
        self.lost = True
        journal, self._journal = self._journal, []
        run_id = (self._state or {}).get("run_id")
        if run_id:
            experiment_id = self._state.get("experiment_id")
            self._fallback = MlflowRun(None, run_id, self.flush_every, self._spool_dir, experiment_id)
            self._fallback.tracking_uri = self.tracking_uri
            self._fallback.spool = Spool(self._spool_dir, run_id, self.tracking_uri)
        else:  # the agent never made the run: it is made offline, as a run whose server is unreachable
            uri, experiment, run_name, config, tags, flush_every, spool_dir = self._start
            self._fallback = start_offline_run(uri, experiment, run_name, config, tags, flush_every, spool_dir)
        self._state = {**LOST_STATE, "run_id": run_id, "experiment_id": (self._state or {}).get("experiment_id")}
        warn(
            f"{error}: training goes on, and this run's MLflow writes ({len(journal)} it had not confirmed, and every "
            f"later one) are queued in {self._fallback.spool.path}"
        )
        for _, op, args in journal:
            self._replay(op, args)

    def _replay(self, op: str, args):
        """Do a write on the fallback run (the spool); nothing for a run that never began (its start failed)."""
        f = self._fallback
        if f is None:
            return None
        if op == "log_points":
            f.log_points([tuple(p) for p in args[0]])
            f.flush()
        elif op == "end":
            f.end(args[0])
            return {**LOST_STATE, "run_id": f.run_id, "spool": str(f.spool.path)}
        elif op in RUN_METHODS:
            getattr(f, op)(*args)
        return None

    # ------------------------------------------------------------------------------------------------ the run

    def state(self) -> dict:
        """The run's state as the agent knows it now (whether it went offline, lost its store)."""
        if self._fallback is None and self.agent is not None and not self.ended:
            self._state = self._call("state") or self._state
        return self._state or LOST_STATE

    def _known(self) -> dict:
        """The state the start answered (its run id, experiment and store do not change)."""
        if self.agent is not None:
            try:
                self._check_started()
            except AgentGone as e:
                self._lost(e)
        return self._state or LOST_STATE

    @property
    def run_id(self) -> str | None:
        return self._known()["run_id"]

    @property
    def experiment_id(self) -> str | None:
        return self._known()["experiment_id"]

    @property
    def store(self) -> str | None:
        return self._known()["store"]

    @property
    def offline(self) -> bool:
        return self._fallback is not None or self.state()["offline"]

    def store_lost(self) -> bool:
        return self.state()["store_lost"]

    def write_points(self, points: list) -> None:
        self._send("log_points", points)
        self._send("ack", reply=True)  # its answer, read later, confirms the points

    def set_tags(self, tags: dict) -> None:
        self._send("set_tags", {k: str(v) for k, v in tags.items() if v is not None})

    def clear_tags(self, keys) -> None:
        self._send("clear_tags", list(keys))

    def log_params(self, params: dict) -> None:
        self._send("log_params", params)

    def log_file(self, path, artifact_dir: str | None = None) -> None:
        self._call("log_file", str(path), artifact_dir)  # waits: the file may be temporary

    def log_dir(self, path, artifact_dir: str | None = None) -> None:
        self._call("log_dir", str(path), artifact_dir)

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
        self._state = {**(self._state or LOST_STATE), **(ended or {})}
        self.ended = True
        if self.agent is not None:
            self.agent.close()
            self.agent = None

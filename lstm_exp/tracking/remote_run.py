"""``RemoteRun``: the tracked run (``TrackedRun``) of a single run whose records the tracking agent writes; what the
agent has not confirmed is journalled here and spooled if the agent dies or stalls."""

from __future__ import annotations

import contextlib
import os

from lstm_exp.common.errors import UserError, warn
from lstm_exp.common.ownership import owner_tags
from lstm_exp.tracking.channel import RUN_METHODS, Agent, AgentError, AgentGone
from lstm_exp.tracking.run import MlflowRun, RunBase, start_offline_run
from lstm_exp.tracking.spool import Spool
from lstm_exp.tracking.store import resolve_uri

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

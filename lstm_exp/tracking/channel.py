"""The channel between the training process and its tracking agent: length-prefixed JSON frames over a socket pair
(nothing is unpickled), each send and receive bounded in time, and ``Agent``, the training process's end of it —
numbered messages whose answers confirm everything sent before them. A peer that does not answer within
``STALL_SECONDS`` is ``AgentGone``, as is one whose socket closed.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct

from lstm_exp.common.errors import UserError

# a frame that cannot be sent, or an answer that does not come, for this long: a stalled agent
STALL_SECONDS = float(os.environ.get("LSTM_EXP_AGENT_STALL_SECONDS", "60"))
HEADER = struct.Struct("!I")
# the run's methods a message may name (besides start, end and the calls with answers)
RUN_METHODS = ("set_tags", "clear_tags", "log_params", "log_text", "log_json", "log_file", "log_dir", "log_points")


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

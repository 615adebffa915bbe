"""Node processes as ``ros2 launch`` starts them, their output, and lifecycle calls from a peer.

Shared by the Ctrl-C tests (test/nodes/test_shutdown_sigint.py: once everything runs;
test/nodes/test_startup_sigint.py: at each moment of start-up).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from support.paths import ROOT
from support.waiting import wait_for

BAD = ("traceback", "exception", "never retrieved", "never awaited", "context is invalid",
       "failed to publish", "failed to complete transition", "[error]")
"""Anything of these in a node's output (case-insensitive) fails a Ctrl-C test."""

IMPORT_TIME = "import time:"
"""Prefix of the lines ``PYTHONPROFILEIMPORTTIME=1`` prints as each module finishes importing
(module names such as ``traceback`` would match :data:`BAD`)."""


def bad_lines(text: str) -> list[str]:
    """The lines of a node's output that hold one of :data:`BAD` (import-time lines aside)."""
    return [line for line in text.splitlines()
            if not line.startswith(IMPORT_TIME) and any(b in line.lower() for b in BAD)]


def node_env(**extra: str) -> dict[str, str]:
    """The test session's environment, unbuffered, for a node process."""
    return dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0", **extra)


class NodeProcess:
    """``scripts/<node> --ros-args <args>`` (what ``ros2 run`` / ``ros2 launch`` start), its
    stdout and stderr read line by line as they come, each with the wall time it arrived."""

    def __init__(self, node: str, args: list[str], log: Path, import_times: bool = False) -> None:
        env = node_env(**({"PYTHONPROFILEIMPORTTIME": "1"} if import_times else {}))
        self.node, self.log = node, log
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / node), "--ros-args", *args], cwd=ROOT,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with self.log.open("w") as f:
            for line in self.proc.stdout:
                with self._lock:
                    self.lines.append((time.monotonic(), line.rstrip("\n")))
                f.write(line)

    def count(self) -> int:
        """How many lines have arrived (a mark for :meth:`wait_line` and :meth:`text`)."""
        with self._lock:
            return len(self.lines)

    def text(self, upto: int | None = None) -> str:
        with self._lock:
            return "\n".join(line for _, line in self.lines[:upto])

    def wait_line(self, pattern: str, timeout: float, after: int = 0) -> bool:
        """Whether a line matching the regular expression ``pattern`` arrives (from line
        ``after`` on) within ``timeout`` seconds."""
        rx = re.compile(pattern)

        def seen() -> bool:
            with self._lock:
                return any(rx.search(line) for _, line in self.lines[after:])
        return wait_for(seen, timeout, poll=0.002)

    def finish(self, timeout: float = 20.0) -> int | None:
        """The exit code, or None after killing a process still running ``timeout`` s on."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        self._reader.join(timeout=5.0)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5.0)


def call(client, request, timeout: float):
    """One service call: the response, or None after ``timeout`` seconds."""
    fut = client.call_async(request)
    if wait_for(fut.done, timeout):
        return fut.result()
    client.remove_pending_request(fut)
    return None


def reach_state(get_state, change_state, transition_id: int, state_id: int,
                timeout: float = 60.0) -> bool:
    """Trigger ``transition_id`` until the node reports ``state_id``.

    A response can be lost while the server has not matched the client's response reader yet
    (a loaded machine, DDS discovery), so the state is read back rather than trusted.
    """
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = call(get_state, GetState.Request(), 5.0)
        if state is not None and state.current_state.id == state_id:
            return True
        if state is not None:
            call(change_state, ChangeState.Request(transition=Transition(id=transition_id)), 10.0)
    return False

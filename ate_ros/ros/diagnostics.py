"""A small /diagnostics publisher every node uses (no diagnostic_updater dependency).

Usage in a node::

    self.diag = NodeDiagnostics(self, "executor", period=1.0)
    self.diag.rate("joint_states")          # call per message: reported as a rate in Hz
    self.diag.set("inference_latency", 0.08)
    self.diag.count("clipped_points", 3)    # monotonic counters
    self.diag.status(DiagnosticStatus.WARN, "watchdog: holding")  # else OK "running"

Every ``period`` seconds (node clock: sim time works) one DiagnosticArray with one
DiagnosticStatus named ``"<node name>: <name>"`` is published on the absolute ``/diagnostics``
topic that ``diagnostic_aggregator`` and ``rqt_robot_monitor`` read; nothing once the node's
context is shut down (Ctrl-C), without an error.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from ate_ros.ros.qos import DIAGNOSTICS_QOS
from ate_ros.ros.spin import publish_unless_shutdown

__all__ = ["ERROR", "OK", "STALE", "WARN", "DiagnosticStatus", "NodeDiagnostics", "RateMeter"]

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR
STALE = DiagnosticStatus.STALE


class RateMeter:
    """Message rate over a sliding window of stamps (seconds on the node clock)."""

    def __init__(self, window: float = 5.0, maxlen: int = 1000) -> None:
        self.window = window
        self._stamps: collections.deque[float] = collections.deque(maxlen=maxlen)

    def tick(self, now: float) -> None:
        self._stamps.append(now)

    def rate(self, now: float) -> float:
        while self._stamps and self._stamps[0] < now - self.window:
            self._stamps.popleft()
        n = len(self._stamps)
        if n < 2:
            return 0.0
        span = max(self._stamps[-1] - self._stamps[0], 1e-9)
        return (n - 1) / span

    def age(self, now: float) -> float:
        """Seconds since the last tick (inf if none)."""
        return now - self._stamps[-1] if self._stamps else float("inf")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


class NodeDiagnostics:
    """Collects key-values for one node and publishes them on /diagnostics periodically.

    Args:
        node: The rclpy node.
        name: Component name (status name is ``"<node name>: <name>"``).
        period: Seconds between messages (node clock). 0 disables the timer (call publish()).
        hardware_id: Optional hardware id for the status.
        callback_group: Optional callback group for the timer.
    """

    def __init__(self, node: Any, name: str, period: float = 1.0, hardware_id: str = "",
                 callback_group: Any = None) -> None:
        self._node = node
        self.name = f"{node.get_name()}: {name}"
        self.hardware_id = hardware_id
        self._lock = threading.Lock()
        self._values: dict[str, Any] = {}
        self._counters: dict[str, int] = {}
        self._rates: dict[str, RateMeter] = {}
        self._level = OK
        self._message = "running"
        self._providers: list[Callable[[], dict[str, Any]]] = []
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self._timer = (node.create_timer(period, self.publish, callback_group=callback_group)
                       if period > 0 else None)

    def _now(self) -> float:
        return self._node.get_clock().now().nanoseconds * 1e-9

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self._values[key] = value

    def count(self, key: str, increment: int = 1) -> None:
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + increment

    def rate(self, key: str, now: float | None = None) -> None:
        """Record one message of stream ``key`` (reported as ``<key>_rate_hz``/``_age_s``)."""
        now = self._now() if now is None else now
        with self._lock:
            self._rates.setdefault(key, RateMeter()).tick(now)

    def status(self, level: int | bytes, message: str) -> None:
        with self._lock:
            self._level = level if isinstance(level, bytes) else bytes([int(level)])
            self._message = message

    def add_provider(self, fn: Callable[[], dict[str, Any]]) -> None:
        """Register a callable returning extra key-values at publish time (e.g. stats)."""
        self._providers.append(fn)

    def values(self) -> dict[str, str]:
        """Everything that would be published now, as strings."""
        now = self._now()
        with self._lock:
            out = {k: _fmt(v) for k, v in self._values.items()}
            out.update({k: str(v) for k, v in self._counters.items()})
            for k, m in self._rates.items():
                out[f"{k}_rate_hz"] = _fmt(m.rate(now))
                out[f"{k}_age_s"] = _fmt(m.age(now))
        for fn in self._providers:
            out.update({k: _fmt(v) for k, v in fn().items()})
        return out

    def publish(self) -> DiagnosticArray:
        st = DiagnosticStatus()
        st.name = self.name
        st.hardware_id = self.hardware_id
        with self._lock:
            st.level = self._level if isinstance(self._level, bytes) else bytes([self._level])
            st.message = self._message
        st.values = [KeyValue(key=k, value=v) for k, v in self.values().items()]
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = [st]
        # From a timer: Ctrl-C may have shut the context down a moment ago (nothing is sent).
        publish_unless_shutdown(self._node, self._pub, msg)
        return msg

    def destroy(self) -> None:
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
            self._timer = None
        self._node.destroy_publisher(self._pub)

"""Log calls in ate_ros keep one throttle per call site.

rclpy (Jazzy on) wraps ``RcutilsLogger.warn`` in a deprecation decorator, and rclpy keys a log
call's throttle state by the frame that called into it: for ``warn`` that is the decorator's
frame, the same for every caller in the process. So every ``warn(..., throttle_duration_sec=2.0)``
in a node shared one throttle (a controller's goal rejection was dropped because a chunk had been
refused a second earlier), and a ``warn`` with other filter arguments raised ValueError inside
the callback that logged it. ``warning`` has no wrapper.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from support.paths import ROOT

PACKAGE = ROOT / "ate_ros"


def test_no_deprecated_warn_calls() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "warn"
                    and not (isinstance(node.func.value, ast.Name)
                             and node.func.value.id == "warnings")):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert offenders == [], "use .warning(), not .warn():\n" + "\n".join(offenders)


PROBE = r"""
import rclpy
rclpy.init()
node = rclpy.create_node("log_probe")
log = node.get_logger()
def first():
    log.warning("first throttled", throttle_duration_sec=2.0)
def second():
    log.warning("second throttled", throttle_duration_sec=2.0)
first(); second(); first()
log.warning("plain", throttle_duration_sec=5.0)
log.warning("no filter")
node.destroy_node()
rclpy.shutdown()
"""


@pytest.mark.ros
def test_warning_throttles_per_call_site() -> None:
    """What the rule above relies on, with this rclpy: two call sites that each throttle both
    log, a repeat within the period does not, and other filter arguments elsewhere are fine."""
    pytest.importorskip("rclpy")
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [ln.split("]: ", 1)[-1] for ln in out.stderr.splitlines() if "[log_probe]" in ln]
    assert lines == ["first throttled", "second throttled", "plain", "no filter"], out.stderr

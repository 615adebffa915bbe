"""A node's logger once its context is shut down (:mod:`ate_ros.ros.node_logger`): silent, and
until then rclpy's logger as before (call sites, filters)."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros


def test_logs_until_the_context_is_shut_down_then_nothing(capfd):
    from ate_ros.ros.node_logger import ShutdownQuietLogger, quiet_logging_after_shutdown

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("quiet_logger_probe", context=context)
    quiet_logging_after_shutdown(node)
    log = node.get_logger()
    assert isinstance(log, ShutdownQuietLogger) and log.name == "quiet_logger_probe"
    assert log.info("line one")
    assert log.warning("line two")  # another call site, another severity: no ValueError
    for i in range(3):  # one call site: throttled after its first line
        assert log.info(f"throttled {i}", throttle_duration_sec=60.0) == (i == 0)
    rclpy.shutdown(context=context)
    assert not log.error("after shutdown")
    out = "".join(capfd.readouterr())
    assert "line one" in out and "line two" in out and "throttled 0" in out, out
    assert "throttled 1" not in out and "after shutdown" not in out, out
    assert "rosout" not in out, out


def test_lines_keep_the_callers_location():
    """rclpy keys filters by call site; the wrapper's file is skipped like rclpy's own."""
    from rclpy.impl.rcutils_logger import CallerId

    from ate_ros.ros.node_logger import ShutdownQuietLogger

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        log = ShutdownQuietLogger("quiet_logger_sites", context)
        log.info("here")
        (site,) = log.contexts
        assert isinstance(site, CallerId) and site.file_path == __file__
        assert site.function_name == "test_lines_keep_the_callers_location"
    finally:
        rclpy.shutdown(context=context)

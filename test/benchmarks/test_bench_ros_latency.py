"""bench_ros_latency's per-stage breakdown of the image -> chunk path (no ROS graph: marks set
by hand)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from support.paths import ROOT

pytest.importorskip("rclpy")


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # result_meta, as when run as a script
    spec = importlib.util.spec_from_file_location(
        "bench_ros_latency", ROOT / "benchmarks" / "bench_ros_latency.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _marks(clock, key, times):
    for name, t in times.items():
        clock.wall.setdefault(name, {})[key] = t
        clock.cpu.setdefault(name, {})[key] = t / 2  # thread CPU: half the wall time


def test_breakdown_topic_path_per_stage(bench):
    clock = bench.StageClock()
    # Marks of two frames (s): every stage of the first lasts 1 ms, of the second 3 ms.
    names = ["sent", "published", "perception_in", "observation_out", "policy_in",
             "model_start", "model_end", "chunk_out", "received"]
    for key, step in ((1.0, 1e-3), (2.0, 3e-3)):
        _marks(clock, key, {n: 10.0 + i * step for i, n in enumerate(names)})
    out = clock.breakdown([1.0, 2.0], "topic")
    assert list(out) == list(bench.STAGES)
    for row in out.values():
        assert row["wall_p50_ms"] == pytest.approx(2.0)
        assert 2.0 < row["wall_p99_ms"] <= 3.0
    # CPU only where both marks are on one thread (callbacks, the model, the publish call).
    assert out["perception_callback"]["cpu_p50_ms"] == pytest.approx(1.0)
    assert "cpu_p50_ms" not in out["dds_to_policy"]


def test_breakdown_sensors_path_starts_the_policy_hop_at_publish(bench):
    clock = bench.StageClock()
    _marks(clock, 1.0, {"sent": 0.0, "published": 0.001, "policy_in": 0.005,
                        "model_start": 0.006, "model_end": 0.0065, "chunk_out": 0.007,
                        "received": 0.009})
    out = clock.breakdown([1.0], "sensors")
    assert "perception_callback" not in out and "dds_to_perception" not in out
    assert out["dds_to_policy"]["wall_p50_ms"] == pytest.approx(4.0)
    assert out["dds_to_consumer"]["wall_p50_ms"] == pytest.approx(2.0)
    # A frame without a mark (its chunk never came) is left out, not counted as zero.
    assert clock.breakdown([1.0, 3.0], "sensors") == out

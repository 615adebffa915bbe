"""Resampling primitives against hand-computed values, and the JointState fast parser."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ate_ros.core.data import resample as R
from ate_ros.core.data.bags import decode_names_block, header_stamp_ns, split_joint_state
from ate_ros.core.data.typestores import make_typestore


def test_asof_hand_computed():
    stamps = np.array([0, 10, 20, 45])
    grid = np.array([-5, 0, 9, 10, 30, 44, 60])
    idx, fresh = R.asof(stamps, grid, 10)
    assert idx.tolist() == [-1, 0, 0, 1, 2, 2, 3]
    # ages: -, 0, 9, 0, 10, 24, 15
    assert fresh.tolist() == [False, True, True, True, True, False, False]
    _, fresh2 = R.asof(stamps, grid, np.array([100, 0, 0, 0]))  # per-message max age
    assert fresh2.tolist() == [False, True, True, True, False, False, False]


def test_grid_runs_and_order():
    assert R.make_grid(5, 25, 10).tolist() == [5, 15, 25]
    assert R.make_grid(5, 24, 10).tolist() == [5, 15]
    assert R.true_runs(np.array([1, 1, 0, 1, 0, 0, 1], bool)) == [(0, 2), (3, 4), (6, 7)]
    assert R.split_on_gaps(np.array([0, 1, 2, 10, 11]), 3) == [(0, 3), (3, 5)]
    st_ = np.array([0, 5, 3, 6, 6, 1, 2])
    seg = np.array([0, 0, 0, 0, 0, 1, 1])
    assert R.increasing_mask(st_, seg).tolist() == [True, True, False, True, False, True, True]
    assert R.backward_jumps(np.array([0, 10, 20, 5, 15, 14]), 3).tolist() == [3]
    assert R.period_ns(30.0) == 33_333_333
    assert R.measured_rate(np.array([0, R.NS // 2, R.NS])) == 2.0


def test_interpolate_points():
    tfs = np.array([0.1, 0.2, 0.4])
    pts = np.array([[0.0], [1.0], [3.0]])
    assert R.interpolate_points(tfs, pts, 0.05)[0] == 0.0
    assert np.isclose(R.interpolate_points(tfs, pts, 0.15)[0], 0.5)
    assert np.isclose(R.interpolate_points(tfs, pts, 0.3)[0], 2.0)
    assert R.interpolate_points(tfs, pts, 9.0)[0] == 3.0


_STORES = {"ros2": make_typestore("kilted"), "ros1": make_typestore("noetic")}
_name = st.text(alphabet="abcdefghij_0123456789", min_size=0, max_size=7)


@settings(max_examples=60, deadline=None)
@given(names=st.lists(_name, min_size=0, max_size=6), frame=_name,
       stamp=st.integers(0, 2**31 - 1), nsec=st.integers(0, 999_999_999),
       ros1=st.booleans(), with_vel=st.booleans(), seed=st.integers(0, 1000))
def test_fast_joint_state_parser_matches_rosbags(names, frame, stamp, nsec, ros1, with_vel,
                                                 seed):
    ts = _STORES["ros1" if ros1 else "ros2"]
    pos = np.random.default_rng(seed).normal(size=len(names))
    hdr = {"stamp": ts.types["builtin_interfaces/msg/Time"](sec=stamp, nanosec=nsec),
           "frame_id": frame}
    if ros1:
        hdr["seq"] = 7
    msg = ts.types["sensor_msgs/msg/JointState"](
        header=ts.types["std_msgs/msg/Header"](**hdr), name=names, position=pos,
        velocity=pos * 2 if with_vel else np.zeros(0), effort=np.zeros(0))
    raw = bytes(ts.serialize_ros1(msg, "sensor_msgs/msg/JointState") if ros1
                else ts.serialize_cdr(msg, "sensor_msgs/msg/JointState"))
    parsed = split_joint_state(raw, ros1)
    assert parsed is not None
    t, block, off, count = parsed
    assert t == stamp * 10**9 + nsec == header_stamp_ns(raw, ros1)
    assert decode_names_block(block, ros1) == names
    assert count == len(names)
    np.testing.assert_array_equal(np.frombuffer(raw, "<f8", count, off), pos)

"""ate_ros.ros.conversions: round trips and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")

from sensor_msgs.msg import CompressedImage, Image, JointState  # noqa: E402

from ate_ros.core.chunk_layout import ChunkLayoutError, read_action_chunk  # noqa: E402
from ate_ros.ros import conversions as cv  # noqa: E402

pytestmark = pytest.mark.ros


def test_time_round_trip():
    t = cv.sec_to_time(12.345678901)
    assert t.sec == 12 and t.nanosec == 345678901
    assert cv.time_to_sec(t) == pytest.approx(12.345678901)
    assert cv.time_to_ns(cv.ns_to_time(5_000_000_123)) == 5_000_000_123
    assert cv.duration_to_sec(cv.sec_to_duration(0.3)) == pytest.approx(0.3)
    with pytest.raises(cv.ConversionError):
        cv.sec_to_time(float("nan"))


def test_joint_state_to_embodiment_order(small_embodiment):
    msg = JointState(name=["extra", "j2", "j0", "j1"], position=[9.0, 2.0, 0.0, 1.0])
    np.testing.assert_array_equal(cv.joint_state_to_embodiment(msg, small_embodiment),
                                  [0.0, 1.0, 2.0])
    with pytest.raises(cv.ConversionError, match="j1"):
        cv.joint_state_to_embodiment(JointState(name=["j0", "j2"], position=[0.0, 1.0]),
                                     small_embodiment)
    with pytest.raises(cv.ConversionError, match="names"):
        cv.joint_state_to_arrays(JointState(name=["j0"], position=[0.0, 1.0]))
    with pytest.raises(cv.ConversionError, match="non-finite"):
        cv.joint_state_to_embodiment(JointState(name=["j0", "j1", "j2"],
                                                position=[0.0, float("inf"), 1.0]),
                                     small_embodiment)
    # NaN in a joint the embodiment does not drive is not its concern.
    msg = JointState(name=["extra", "j2", "j0", "j1"], position=[float("nan"), 2.0, 0.0, 1.0])
    np.testing.assert_array_equal(cv.joint_state_to_embodiment(msg, small_embodiment),
                                  [0.0, 1.0, 2.0])


def test_chunk_round_trip_by_name(small_embodiment):
    emb = small_embodiment
    chunk = np.arange(12, dtype=float).reshape(4, 3) / 10
    msg = cv.chunk_to_msg(chunk, emb, cv.sec_to_time(3.0), model_id="m", inference_latency=0.1,
                          samples=[chunk + 1, chunk + 2])
    assert msg.dt == pytest.approx(0.1) and list(msg.joint_names) == emb.joint_names
    assert list(msg.positions) == pytest.approx(chunk.ravel().tolist())  # point after point
    fields = read_action_chunk(msg)
    np.testing.assert_allclose(fields.times, [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(fields.samples, [chunk + 1, chunk + 2])
    # Reorder the columns: mapping is by name.
    msg.joint_names = ["j2", "j0", "j1"]
    msg.positions = chunk[:, [2, 0, 1]].ravel().tolist()
    out, stamp = cv.msg_to_chunk(msg, emb)
    np.testing.assert_allclose(out, chunk)
    assert stamp == pytest.approx(3.0)
    with pytest.raises(cv.ConversionError, match="samples"):
        cv.chunk_to_msg(chunk, emb, cv.sec_to_time(3.0), samples=[chunk[:2]])


def test_legacy_chunk_layout_is_still_read(small_embodiment):
    """Bags recorded before the flat layout hold ``trajectory`` + JointTrajectory samples."""
    from types import SimpleNamespace as NS

    emb = small_embodiment
    chunk = np.arange(6, dtype=float).reshape(2, 3)
    traj = cv.chunk_to_trajectory(chunk[:, [1, 2, 0]], emb)
    traj.joint_names = ["j1", "j2", "j0"]
    sample = cv.chunk_to_trajectory(chunk + 5, emb)
    legacy = NS(trajectory=traj, samples=[sample])
    fields = read_action_chunk(legacy)
    assert fields.joint_names == ["j1", "j2", "j0"]
    np.testing.assert_allclose(fields.times, [0.1, 0.2])
    np.testing.assert_allclose(fields.positions, chunk[:, [1, 2, 0]])
    np.testing.assert_allclose(fields.samples[0], (chunk + 5)[:, [1, 2, 0]])
    traj.points[1].positions = [0.0]
    with pytest.raises(ChunkLayoutError, match="point 1"):
        read_action_chunk(legacy)


def test_stop_request_is_an_empty_chunk_for_this_embodiment(small_embodiment):
    emb = small_embodiment
    empty = cv.chunk_to_msg(np.zeros((0, 3)), emb, cv.sec_to_time(1.0), model_id="hold (x)")
    assert empty.embodiment == emb.name and cv.is_stop_request(empty, emb)
    empty.embodiment = ""  # a producer that names no embodiment
    assert cv.is_stop_request(empty, emb)
    empty.embodiment = "other"  # another robot's stop is not ours
    assert not cv.is_stop_request(empty, emb)
    assert not cv.is_stop_request(cv.chunk_to_msg(np.zeros((2, 3)), emb, cv.sec_to_time(1.0)),
                                  emb)


def test_chunk_errors(small_embodiment):
    emb = small_embodiment
    msg = cv.chunk_to_msg(np.zeros((2, 3)), emb, cv.sec_to_time(0.0))
    msg.joint_names = ["j0", "j1", "bogus"]
    with pytest.raises(cv.ConversionError, match="unknown joints"):
        cv.msg_to_chunk(msg, emb)
    msg.joint_names = ["j0", "j1", "j1"]
    with pytest.raises(cv.ConversionError, match="duplicate"):
        cv.msg_to_chunk(msg, emb)
    msg.joint_names = ["j0", "j1"]
    with pytest.raises(cv.ConversionError, match="lacks joints"):
        cv.msg_to_chunk(msg, emb)
    msg = cv.chunk_to_msg(np.zeros((2, 3)), emb, cv.sec_to_time(0.0))
    msg.positions = [0.0] * 5  # not a whole number of 3-joint points
    with pytest.raises(cv.ConversionError, match="malformed chunk: 5 positions"):
        cv.msg_to_chunk(msg, emb)
    msg = cv.chunk_to_msg(np.zeros((2, 3)), emb, cv.sec_to_time(0.0))
    msg.samples = [0.0] * 7
    with pytest.raises(cv.ConversionError, match="sample"):
        cv.msg_to_chunk(msg, emb)
    msg = cv.chunk_to_msg(np.zeros((0, 3)), emb, cv.sec_to_time(0.0))
    with pytest.raises(cv.ConversionError, match="no points"):
        cv.msg_to_chunk(msg, emb)
    msg = cv.chunk_to_msg(np.zeros((2, 3)), emb, cv.sec_to_time(0.0))
    msg.embodiment = "other"
    with pytest.raises(cv.ConversionError, match="other"):
        cv.msg_to_chunk(msg, emb)
    msg = cv.chunk_to_msg(np.zeros((2, 3)), emb, cv.sec_to_time(0.0))
    msg.dt = 0.25  # not this embodiment's control period
    with pytest.raises(cv.ConversionError, match="dt=0.1000 s apart"):
        cv.msg_to_chunk(msg, emb)
    assert cv.msg_to_chunk(msg, emb, check_timing=False)[0].shape == (2, 3)
    traj = cv.chunk_to_trajectory(np.zeros((2, 3)), emb)
    traj.points[1].time_from_start = cv.sec_to_duration(0.5)
    with pytest.raises(cv.ConversionError, match="time_from_start"):
        cv.trajectory_to_chunk(traj, emb)
    with pytest.raises(cv.ConversionError):
        cv.chunk_to_trajectory(np.zeros((2, 4)), emb)


def test_trajectory_points_any_timing_mapped_by_joint_name(small_embodiment):
    """What sim_robot_node follows: a trajectory in any joint order and timing."""
    emb = small_embodiment
    traj = cv.times_to_trajectory(np.array([0.0, 0.35]), np.array([[1.0, 2.0, 3.0],
                                                                  [4.0, 5.0, 6.0]]),
                                  ["j2", "j0", "j1"])
    times, pos = cv.trajectory_to_points(traj, emb)
    np.testing.assert_allclose(times, [0.0, 0.35])
    np.testing.assert_array_equal(pos, [[2.0, 3.0, 1.0], [5.0, 6.0, 4.0]])  # j0, j1, j2
    traj.joint_names = ["j0", "j1", "j9"]
    with pytest.raises(cv.ConversionError, match="unknown joints"):
        cv.trajectory_to_points(traj, emb)
    traj.joint_names, traj.points = ["j0", "j1", "j2"], []
    with pytest.raises(cv.ConversionError, match="no points"):
        cv.trajectory_to_points(traj, emb)


def test_image_encodings_and_padding():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    for enc in ("rgb8", "bgr8"):
        np.testing.assert_array_equal(cv.image_to_numpy(cv.numpy_to_image(rgb, encoding=enc)),
                                      rgb)
    # Padded rows (step > width * 3) and bgr.
    pad = np.zeros((5, 7 * 3 + 3), dtype=np.uint8)
    pad[:, :21] = rgb[..., ::-1].reshape(5, 21)
    msg = Image(height=5, width=7, encoding="bgr8", step=24, data=pad.tobytes())
    np.testing.assert_array_equal(cv.image_to_numpy(msg), rgb)
    grey = rgb[..., 0]
    out = cv.image_to_numpy(cv.numpy_to_image(grey, encoding="mono8"))
    assert out.shape == (5, 7, 3) and (out[..., 1] == grey).all()
    with pytest.raises(cv.ConversionError, match="encoding"):
        cv.image_to_numpy(Image(height=1, width=1, encoding="32FC1", step=4, data=b"\0" * 4))
    with pytest.raises(cv.ConversionError, match="bytes"):
        cv.image_to_numpy(Image(height=2, width=2, encoding="rgb8", step=6, data=b"\0" * 6))


def test_compressed_png_round_trip():
    rgb = np.random.default_rng(1).integers(0, 255, (8, 6, 3), dtype=np.uint8)
    msg = cv.numpy_to_compressed(rgb, fmt="png")
    np.testing.assert_array_equal(cv.compressed_to_numpy(msg), rgb)
    with pytest.raises(cv.ConversionError):
        cv.compressed_to_numpy(CompressedImage(format="jpeg", data=b"garbage"))


def test_observation_round_trip(small_embodiment):
    rgb = np.full((4, 4, 3), 7, dtype=np.uint8)
    msg = cv.observation_to_msg({"front": rgb}, ["j1", "j0", "j2"], np.array([1.0, 0.0, 2.0]),
                                cv.sec_to_time(1.5), "pick")
    images, q, instr, stamp = cv.msg_to_observation_data(msg, small_embodiment)
    np.testing.assert_array_equal(images["front"], rgb)
    np.testing.assert_array_equal(q, [0.0, 1.0, 2.0])
    assert instr == "pick" and stamp == 1.5
    obs = cv.msg_to_policy_observation(msg, small_embodiment)
    assert obs.qpos[1] == 1.0 and obs.mask[:3].all() and obs.stamp == 1.5

"""BagRecorder writes real bags that rosbags reads back, in all three storages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from ate_ros.core.data import topics as T
from ate_ros.core.data.bag_writer import BagRecorder, BagWriteError
from ate_ros.core.data.typestores import make_typestore

STORAGES = [("mcap", "bag_mcap"), ("sqlite3", "bag_sqlite"), ("ros1", "bag1.bag")]


def _read_all(path: Path):
    from rosbags.highlevel import AnyReader

    out: dict[str, list] = {}
    with AnyReader([path], default_typestore=make_typestore()) as r:
        for conn, t, raw in r.messages():
            out.setdefault(conn.topic, []).append((t, r.deserialize(raw, conn.msgtype)))
    return out


@pytest.mark.parametrize("storage,name", STORAGES)
def test_round_trip(tmp_path, storage, name):
    import cv2

    path = tmp_path / name
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0] = 200  # pure red: checks the RGB/BGR handling of the compressed path
    with BagRecorder(path, storage=storage) as rec:
        rec.set_metadata("instruction", "stack the cubes")
        for i in range(3):
            t = 5_000_000_000 + i * 100_000_000
            rec.write_joint_state(t, ["b", "a"], [i, -i], velocities=[0.5, 0.5],
                                  recv_delay_ns=2_000_000)
            rec.write_image(t, rgb, topic=T.camera_topic("wrist"))
            rec.write_image(t, rgb, topic=T.camera_topic("wrist", compressed=True),
                            compressed="png")
            rec.write_joint_trajectory(t, ["a", "b"], np.full((4, 2), float(i)), dt=0.1)
            rec.write_action_chunk(t, ["a", "b"], np.zeros((2, 2)), dt=0.05, model_id="m")
        rec.write_string(t, "stack the cubes")
    assert rec.counts[T.JOINT_STATES_TOPIC] == 3
    msgs = _read_all(path)

    js = msgs[T.JOINT_STATES_TOPIC]
    for i, (log_ns, m) in enumerate(js):
        stamp = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
        assert stamp == 5_000_000_000 + i * 100_000_000
        assert log_ns == stamp + 2_000_000  # receive time = stamp + delay
        assert list(m.name) == ["b", "a"]
        np.testing.assert_array_equal(m.position, [i, -i])

    raw = msgs[T.camera_topic("wrist")][0][1]
    assert (raw.encoding, raw.height, raw.width) == ("rgb8", 6, 8)
    np.testing.assert_array_equal(np.asarray(raw.data).reshape(6, 8, 3), rgb)
    comp = msgs[T.camera_topic("wrist", compressed=True)][0][1]
    assert comp.format == "png"
    dec = cv2.imdecode(np.asarray(comp.data), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(dec, rgb)

    traj = msgs[T.COMMAND_TOPIC][2][1]
    assert list(traj.joint_names) == ["a", "b"] and len(traj.points) == 4
    tfs = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in traj.points]
    np.testing.assert_allclose(tfs, [0.1, 0.2, 0.3, 0.4])
    chunk = msgs[T.ACTION_CHUNK_TOPIC][0][1]
    assert chunk.model_id == "m" and np.isnan(chunk.ood_score)
    assert list(chunk.joint_names) == ["a", "b"] and chunk.dt == pytest.approx(0.05)
    assert chunk.positions.shape == (4,)  # 2 points of 2 joints, point after point
    assert msgs[T.INSTRUCTION_TOPIC][0][1].data == "stack the cubes"

    if storage == "ros1":
        meta = [json.loads(m.data) for _, m in msgs[T.METADATA_TOPIC]]
        assert meta == [{"key": "instruction", "value": "stack the cubes"}]
    else:
        info = yaml.safe_load((path / "metadata.yaml").read_text())
        assert info["rosbag2_bagfile_information"]["custom_data"] == {
            "instruction": "stack the cubes"}


def test_exception_removes_partial_bag(tmp_path):
    path = tmp_path / "crash"
    with pytest.raises(RuntimeError):
        with BagRecorder(path) as rec:
            rec.write_joint_state(1, ["a"], [0.0])
            raise RuntimeError("simulated crash")
    assert not path.exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(BagWriteError, match="storage"):
        BagRecorder(tmp_path / "x", storage="rosbag3")
    with pytest.raises(BagWriteError, match=".bag"):
        BagRecorder(tmp_path / "x", storage="ros1")
    (tmp_path / "exists").mkdir()
    with pytest.raises(BagWriteError, match="exists"):
        BagRecorder(tmp_path / "exists")
    with BagRecorder(tmp_path / "ok") as rec:
        with pytest.raises(BagWriteError, match="names"):
            rec.write_joint_state(0, ["a", "b"], [1.0])
        with pytest.raises(BagWriteError, match="uint8"):
            rec.write_image(0, np.zeros((4, 4)), topic="/c/image_raw")
        with pytest.raises(BagWriteError, match="positions must be"):
            rec.write_joint_trajectory(0, ["a"], np.zeros((3, 2)), dt=0.1)
        rec.write_joint_state(0, ["a"], [1.0], topic="/t")
        with pytest.raises(BagWriteError, match="already carries"):
            rec.write_string(0, "x", topic="/t")

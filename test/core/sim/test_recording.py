"""sim-record writes real rosbags (read back with rosbags) and episode-format datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ate_ros.cli import main
from ate_ros.core.data.episode_format import episode_paths, read_episode


def test_sim_record_cli_writes_readable_mcap_bags(tmp_path):
    from rosbags.highlevel import AnyReader

    out = tmp_path / "bags"
    rc = main(["sim-record", "--embodiment", "sim_arm7", "--task", "reach", "--episodes", "2",
               "--out", str(out), "--seed", "3"])
    assert rc == 0
    bags = sorted(p for p in out.iterdir() if p.is_dir())
    assert [b.name for b in bags] == ["sim_arm7_reach_0000", "sim_arm7_reach_0001"]
    assert list(bags[0].glob("*.mcap"))
    with AnyReader([bags[0]]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types["/joint_states"] == "sensor_msgs/msg/JointState"
        assert types["/front/image_raw"] == "sensor_msgs/msg/Image"
        assert types["/arm_controller/joint_trajectory"] == "trajectory_msgs/msg/JointTrajectory"
        assert types["/instruction"] == "std_msgs/msg/String"
        ticks = counts["/front/image_raw"]
        assert counts["/arm_controller/joint_trajectory"] == ticks
        assert counts["/joint_states"] == 5 * ticks  # 50 Hz states, 10 Hz control
        stamps, positions, image = [], [], None
        for conn, _t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == "/joint_states":
                assert list(msg.name) == [f"arm7_joint{i}" for i in range(1, 8)]
                stamps.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
                positions.append(np.asarray(msg.position))
            elif conn.topic == "/instruction":
                assert msg.data.startswith("reach the ")
            elif conn.topic == "/front/image_raw" and image is None:
                assert (msg.height, msg.width, msg.encoding) == (96, 96, "rgb8")
                image = np.frombuffer(msg.data, np.uint8).reshape(96, 96, 3)
            elif conn.topic == "/arm_controller/joint_trajectory":
                assert len(msg.points) == 1 and len(msg.points[0].positions) == 7
        assert np.allclose(np.diff(stamps), 0.02, atol=1e-6)
        assert image.std() > 10
        # The arm moved during the episode.
        assert np.max(np.abs(positions[-1] - positions[0])) > 0.1
    meta = (bags[0] / "metadata.yaml").read_text()
    assert "instruction" in meta and "sim_arm7" in meta


def test_record_dataset_direct(tmp_path):
    from ate_ros.core.sim.recording import record_dataset

    summary = record_dataset("sim_arm6", "pick_color", 3, tmp_path, seed=1, val_fraction=0.34)
    assert summary.written == 3 and summary.failed == 0
    train, val = episode_paths(tmp_path, "train"), episode_paths(tmp_path, "val")
    assert len(train) == 2 and len(val) == 1
    ep = read_episode(train[0])
    assert ep.embodiment == "sim_arm6" and ep.task == "pick_color" and ep.success
    assert ep.instruction.startswith("touch the ")
    assert ep.qpos.shape == ep.action.shape and ep.qpos.shape[1] == 6
    assert ep.images["front"].shape == (len(ep), 96, 96, 3)
    assert list(ep.slots) == list(range(6)) and ep.rate_hz == 10.0
    np.testing.assert_allclose(np.diff(ep.timestamps), 0.1, atol=1e-9)
    # action[t] is reached about one period later: qpos[t+1] follows action[t].
    lag = np.abs(ep.qpos[1:] - ep.action[:-1]).mean()
    assert lag < 0.5 * np.abs(ep.qpos[1:] - ep.qpos[:-1]).mean() + 0.01
    assert Path(tmp_path / "embodiment.yaml").is_file()

"""bag2dataset end to end on real bags written by the tests (sqlite3, MCAP, ROS 1)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from support.fixtures_bags import (
    T0_NS,
    BagPlan,
    frame_image,
    joint_values,
    toy_embodiment,
    write_bag,
)

from ate_ros.core.data.convert import ConversionError, ConversionSpec, Manifest, convert_bags
from ate_ros.core.data.episode_format import read_episode
from ate_ros.core.data.verify import verify_dataset

STORAGES = [("mcap", "b_mcap"), ("sqlite3", "b_sqlite"), ("ros1", "b_ros1.bag")]


def _reconciles(manifest: Manifest) -> None:
    ok = [b for b in manifest.bags if b["status"] == "ok"]
    assert ok, manifest.bags
    for b in ok:
        read = {t: e for t, e in b["topics"].items() if "read" in e}
        assert read, f"no topic of {b} counts its messages"
        for topic, e in read.items():
            assert e["read"] == e["used"] + sum(e["dropped"].values()), (topic, e)
        f = b["frames"]
        assert f["candidates"] == f["written"] + sum(f["dropped"].values()), f


@pytest.mark.parametrize("storage,name", STORAGES)
@pytest.mark.parametrize("image", ["raw", "compressed"])
def test_values_are_aligned(tmp_path, storage, name, image):
    bag = write_bag(tmp_path / name, storage, BagPlan(image=image))
    m = convert_bags([bag], toy_embodiment(), tmp_path / "out", ConversionSpec(val_fraction=0))
    _reconciles(m)
    ep = read_episode(tmp_path / "out" / m.splits["train"][0])
    t = ep.timestamps - T0_NS / 1e9
    assert len(ep) == 31 and np.allclose(np.diff(ep.timestamps), 0.1)
    # Joint names arrive as j2, j0, j1: columns must come back in embodiment order.
    np.testing.assert_allclose(ep.qpos, joint_values(t), atol=1e-6)
    # Commands hold the plan one and two periods ahead: action[t] = plan(t + period).
    np.testing.assert_allclose(ep.action, joint_values(t + 0.1), atol=1e-6)
    # As-of: the newest 15 Hz frame at or before each tick (red channel = frame number).
    k = np.floor(t * 15 + 1e-6).astype(int)
    np.testing.assert_array_equal(ep.images["cam"][:, 0, 0, 0], k)
    assert ep.images["cam"].shape == (31, 12, 16, 3)
    assert ep.instruction == "stack the cubes" and ep.slots.tolist() == [0, 1, 2]
    assert verify_dataset(tmp_path / "out").ok


def test_resize_next_state_and_metadata_instruction(tmp_path):
    bag = write_bag(tmp_path / "b", "mcap", BagPlan(command_hz=0, img_size=(24, 32),
                                                    instruction_as="metadata"))
    m = convert_bags([bag], toy_embodiment(), tmp_path / "out", ConversionSpec())
    b = m.bags[0]
    assert b["action_source"] == "next_state"
    assert b["frames"]["dropped"] == {"no_next_state": 1}
    ep = read_episode(tmp_path / "out" / m.episodes[0]["file"])
    np.testing.assert_allclose(ep.action[:-1], ep.qpos[1:])
    assert ep.images["cam"].shape[1:] == (12, 16, 3)
    assert ep.instruction == "stack the cubes"


@pytest.mark.parametrize("storage,name", STORAGES)
def test_metadata_task_and_success_reach_the_episodes(tmp_path, storage, name):
    """task and success from the bag metadata (as sim-record writes them) become episode
    attributes; --task overrides the task; the embodiment named there is checked."""
    meta = {"task": "stack", "success": "true", "embodiment": "other_robot"}
    bag = write_bag(tmp_path / name, storage, BagPlan(duration_s=1.5, metadata=meta))
    failed = write_bag(tmp_path / ("f.bag" if storage == "ros1" else "f"), storage,
                       BagPlan(duration_s=1.5, metadata={"success": "False"}))
    odd = write_bag(tmp_path / ("o.bag" if storage == "ros1" else "o"), storage,
                    BagPlan(duration_s=1.5, metadata={"success": "maybe"}))
    m = convert_bags([bag, failed, odd], toy_embodiment(), tmp_path / "out",
                     ConversionSpec(val_fraction=0))
    eps = {Path(e["file"]).stem: e for e in m.episodes}
    read = {k: read_episode(tmp_path / "out" / e["file"]) for k, e in eps.items()}
    stem = Path(name).stem
    assert (read[stem].task, read[stem].success) == ("stack", True)
    assert (eps[stem]["task"], eps[stem]["success"]) == ("stack", True)
    assert (read["f"].task, read["f"].success) == ("", False)
    assert read["o"].success is None
    warnings = {Path(b["path"]).stem: b["warnings"] for b in m.bags}
    assert any("'other_robot'" in w for w in warnings[stem])
    assert any("'maybe'" in w for w in warnings["o"])
    m2 = convert_bags([bag], toy_embodiment(), tmp_path / "out2",
                      ConversionSpec(val_fraction=0, task="override"))
    assert read_episode(tmp_path / "out2" / m2.episodes[0]["file"]).task == "override"


def test_gap_split_and_drop(tmp_path):
    bag = write_bag(tmp_path / "b", "mcap", BagPlan(drop_joint_between=(1.0, 1.5)))
    emb = toy_embodiment()
    m = convert_bags([bag], emb, tmp_path / "split", ConversionSpec(val_fraction=0))
    _reconciles(m)
    assert [e["frames"] for e in m.episodes] == [10, 16]
    assert m.bags[0]["frames"]["dropped"] == {"joint_gap": 5}
    m2 = convert_bags([bag], emb, tmp_path / "drop",
                      ConversionSpec(val_fraction=0, gap_policy="drop"))
    assert [e["frames"] for e in m2.episodes] == [26]
    rep = verify_dataset(tmp_path / "drop")
    assert rep.ok and any("gaps" in w for w in rep.all_warnings)


def test_nan_reorder_and_clock_jump(tmp_path):
    plan = BagPlan(nan_at=[5], reorder_at=[40], clock_jump_at=2.0)
    bag = write_bag(tmp_path / "b.bag", "ros1", plan)
    m = convert_bags([bag], toy_embodiment(), tmp_path / "out", ConversionSpec(val_fraction=0))
    _reconciles(m)
    b = m.bags[0]
    js = b["topics"]["/joint_states"]["dropped"]
    assert js["nan_position"] == 1 and js["non_monotonic_stamp"] == 1
    assert any("clock jump" in w for w in b["warnings"])
    assert len(m.episodes) == 2  # cut at the jump
    assert verify_dataset(tmp_path / "out").ok
    with pytest.raises(ConversionError, match="jump backwards"):
        convert_bags([bag], toy_embodiment(), tmp_path / "out2",
                     ConversionSpec(clock_jump="error"))
    assert not (tmp_path / "out2").exists()


def test_split_topic_markers(tmp_path):
    bag = write_bag(tmp_path / "b", "sqlite3", BagPlan(markers_at=[1.5]))
    m = convert_bags([bag], toy_embodiment(), tmp_path / "out",
                     ConversionSpec(split_topic="/episode_start", val_fraction=0))
    assert [(e["start"] - 100, e["frames"]) for e in m.episodes] == [(0.0, 15), (1.5, 16)]


def test_unknown_joints_warn_missing_joints_fail(tmp_path):
    ok = write_bag(tmp_path / "extra", "mcap", BagPlan(extra_joints=["base_yaw"]))
    bad = write_bag(tmp_path / "missing", "mcap", BagPlan(joint_order=["j0", "j1"]))
    m = convert_bags([ok, bad], toy_embodiment(), tmp_path / "out", ConversionSpec())
    by = {Path(b["path"]).name: b for b in m.bags}
    assert any("base_yaw" in w for w in by["extra"]["warnings"])
    assert by["missing"]["status"] == "failed" and "['j2']" in by["missing"]["error"]
    assert sorted(m.files) == ["embodiment.yaml", "train/extra.hdf5"]  # nothing from the bad bag


def _unknown_type_bag(path: Path) -> Path:
    """sqlite3 bag (rosbag2 v8: no embedded definitions) with an undefined custom type."""
    from rosbags.rosbag2 import Writer

    from ate_ros.core.data.typestores import make_typestore

    ts = make_typestore()
    rihs = "RIHS01_" + "0" * 64
    with Writer(path, version=8) as w:
        js = w.add_connection("/joint_states", "sensor_msgs/msg/JointState", msgdef="",
                              rihs01=rihs)
        cam = w.add_connection("/cam/image_raw", "my_pkg/msg/Frame", msgdef="", rihs01=rihs)
        for k in range(100):
            t = T0_NS + k * 20_000_000
            msg = ts.types["sensor_msgs/msg/JointState"](
                header=ts.types["std_msgs/msg/Header"](
                    stamp=ts.types["builtin_interfaces/msg/Time"](sec=t // 10**9,
                                                                  nanosec=t % 10**9),
                    frame_id=""),
                name=["j0", "j1", "j2"], position=np.zeros(3), velocity=np.zeros(0),
                effort=np.zeros(0))
            w.write(js, t, ts.serialize_cdr(msg, "sensor_msgs/msg/JointState"))
            w.write(cam, t, b"\x00\x01\x00\x00garbage")
    return path


def test_bad_inputs_each_reported_others_converted(tmp_path):
    good = write_bag(tmp_path / "good", "mcap")
    trunc = write_bag(tmp_path / "trunc", "mcap")
    mcap_file = next(trunc.glob("*.mcap"))
    mcap_file.write_bytes(mcap_file.read_bytes()[: mcap_file.stat().st_size // 2])
    corrupt = write_bag(tmp_path / "corrupt", "sqlite3")
    next(corrupt.glob("*.db3")).write_bytes(b"this is not sqlite" * 100)
    ros1_trunc = write_bag(tmp_path / "r1.bag", "ros1")
    ros1_trunc.write_bytes(ros1_trunc.read_bytes()[:3000])
    from ate_ros.core.data.bag_writer import BagRecorder

    with BagRecorder(tmp_path / "empty"):
        pass
    with BagRecorder(tmp_path / "nojoints") as rec:
        rec.write_string(T0_NS, "hi")
    unknown = _unknown_type_bag(tmp_path / "unknown")
    nan_only = write_bag(tmp_path / "nan", "mcap", BagPlan(nan_at=list(range(200))))
    inputs = [good, trunc, corrupt, ros1_trunc, tmp_path / "empty", tmp_path / "nojoints",
              unknown, nan_only]
    m = convert_bags(inputs, toy_embodiment(), tmp_path / "out", ConversionSpec())
    _reconciles(m)
    status = {Path(b["path"]).name: (b["status"], b["error"]) for b in m.bags}
    assert status["good"] == ("ok", "")
    for name in ("trunc", "corrupt", "r1.bag", "empty", "nojoints", "unknown", "nan"):
        assert status[name][0] == "failed" and status[name][1], name
    assert "/joint_states" in status["nojoints"][1]
    assert "my_pkg/msg/Frame" in status["unknown"][1]
    assert "nan_position" in status["nan"][1]
    # Only the good bag's episode is written; no leftovers of the failed ones.
    files = sorted(p.relative_to(tmp_path / "out").as_posix()
                   for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert files == ["embodiment.yaml", "manifest.json", "train/good.hdf5"]
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_unknown_ignored_type_warns_and_msg_dir_registers(tmp_path):
    bag = _unknown_type_bag(tmp_path / "u")
    emb = toy_embodiment(camera=False)
    m = convert_bags([bag], emb, tmp_path / "o1", ConversionSpec())
    assert m.bags[0]["status"] == "ok"
    assert any("my_pkg/msg/Frame" in w for w in m.bags[0]["warnings"])
    msgs = tmp_path / "defs" / "my_pkg" / "msg"
    msgs.mkdir(parents=True)
    (msgs / "Frame.msg").write_text("uint8[] data\n")
    m2 = convert_bags([bag], emb, tmp_path / "o2", ConversionSpec(msg_dirs=[str(tmp_path /
                                                                            "defs")]))
    assert not any("my_pkg/msg/Frame" in w for w in m2.bags[0]["warnings"])


def test_verify_catches_tampering(tmp_path):
    bag = write_bag(tmp_path / "b", "mcap")
    m = convert_bags([bag], toy_embodiment(), tmp_path / "out", ConversionSpec())
    f = tmp_path / "out" / m.episodes[0]["file"]
    with h5py.File(f, "a") as h:
        h["qpos"][0, 0] = 5.0  # outside the limits, and changes the hash
        h.attrs["rate_hz"] = 20.0
    rep = verify_dataset(tmp_path / "out")
    assert not rep.ok
    text = "\n".join(rep.all_errors + rep.all_warnings)
    assert "SHA-256" in text and "differs from claimed" in text and "outside" in text


def test_split_is_by_bag_and_seeded(tmp_path):
    bags = [write_bag(tmp_path / f"b{i}", "mcap", BagPlan(duration_s=1.5, image="none"))
            for i in range(4)]
    emb = toy_embodiment(camera=False)
    spec = ConversionSpec(val_fraction=0.5, seed=3)
    m1 = convert_bags(bags, emb, tmp_path / "o1", spec)
    m2 = convert_bags(bags, emb, tmp_path / "o2", spec)
    assert m1.splits == m2.splits and len(m1.splits["val"]) == 2
    assert json.loads((tmp_path / "o1" / "manifest.json").read_text())["splits"] == m1.splits
    with pytest.raises(ConversionError, match="exists"):
        convert_bags(bags, emb, tmp_path / "o1", spec)


def test_cli_exit_codes(tmp_path):
    from ate_ros.cli import main

    good = write_bag(tmp_path / "good", "mcap", BagPlan(duration_s=1.5))
    bad = write_bag(tmp_path / "bad", "mcap", BagPlan(duration_s=1.5, joint_order=["j0"]))
    emb = tmp_path / "toy.yaml"
    toy_embodiment().to_yaml(emb)
    base = ["bag2dataset", "--embodiment", str(emb)]
    assert main(base + [str(good), "--out", str(tmp_path / "a")]) == 0
    assert main(base + [str(good), str(bad), "--out", str(tmp_path / "b")]) == 1
    assert (tmp_path / "b" / "train" / "good.hdf5").exists()  # the good bag still converted
    assert main(base + [str(good), str(bad), "--out", str(tmp_path / "c"), "--keep-going"]) == 0
    assert main(base + [str(bad), "--out", str(tmp_path / "d"), "--keep-going"]) == 1
    assert not (tmp_path / "d").exists()
    assert main(["verify-dataset", str(tmp_path / "a")]) == 0
    (tmp_path / "a" / "train" / "good.hdf5").unlink()
    assert main(["verify-dataset", str(tmp_path / "a")]) == 1


def test_workers_match_serial(tmp_path):
    bags = [write_bag(tmp_path / f"b{i}", "mcap", BagPlan(duration_s=1.5)) for i in range(2)]
    emb = toy_embodiment()
    m1 = convert_bags(bags, emb, tmp_path / "o1", ConversionSpec(val_fraction=0))
    m2 = convert_bags(bags, emb, tmp_path / "o2", ConversionSpec(val_fraction=0, workers=2))
    assert m1.splits == m2.splits
    for rel in m1.splits["train"]:
        a, b = read_episode(tmp_path / "o1" / rel), read_episode(tmp_path / "o2" / rel)
        np.testing.assert_array_equal(a.qpos, b.qpos)
        np.testing.assert_array_equal(a.images["cam"], b.images["cam"])


def test_frame_image_helper_encodes_index():
    assert frame_image(7)[0, 0, 0] == 7


def test_discover_bags_descends_into_task_folders(tmp_path) -> None:
    """bags/<task>/<episode> (how sim-record and many users lay bags out) is found whole."""
    from ate_ros.core.data.bags import BagError, discover_bags

    a = write_bag(tmp_path / "bags" / "reach" / "ep0", "mcap")
    b = write_bag(tmp_path / "bags" / "push" / "ep0", "sqlite3")
    found = discover_bags([tmp_path / "bags"])
    assert sorted(p.resolve() for p in found) == sorted(p.resolve() for p in (a, b))
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(BagError, match="holds no bags"):
        discover_bags([tmp_path / "empty"])

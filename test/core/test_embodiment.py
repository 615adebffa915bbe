"""Embodiment configs: validation, unified-space mapping, YAML round trip."""

from __future__ import annotations

import numpy as np
import pytest

from ate_ros.core.embodiment import (
    UNIFIED_DIM,
    Embodiment,
    EmbodimentError,
    JointSpec,
    load_embodiment,
)


def _emb(**kw) -> Embodiment:
    joints = kw.pop("joints", [JointSpec("b", 3, -1, 1), JointSpec("a", 1, -2, 2)])
    return Embodiment(name="e", joints=joints, **kw)


def test_joints_sorted_by_slot_and_unified_roundtrip() -> None:
    emb = _emb()
    assert emb.joint_names == ["a", "b"] and list(emb.slots) == [1, 3]
    q = np.array([[0.5, -0.25]], dtype=np.float32)
    u = emb.to_unified(q)
    assert u.shape == (1, UNIFIED_DIM) and u[0, 1] == 0.5 and u[0, 3] == -0.25
    assert np.count_nonzero(u) == 2
    np.testing.assert_array_equal(emb.from_unified(u), q)
    assert emb.mask.sum() == 2 and emb.mask[1] and emb.mask[3]


def test_named_slots() -> None:
    j = JointSpec("x", "left_arm_joint_pos[2]", -1, 1)
    assert j.slot == 52
    with pytest.raises(EmbodimentError, match="past the end"):
        JointSpec("x", "right_gripper_joint_pos[7]", -1, 1)
    with pytest.raises(EmbodimentError, match="unknown slot range"):
        JointSpec("x", "elbow[0]", -1, 1)


@pytest.mark.parametrize("bad, match", [
    (dict(joints=[JointSpec("a", 0, -1, 1), JointSpec("a", 1, -1, 1)]), "duplicate joint"),
    (dict(joints=[JointSpec("a", 0, -1, 1), JointSpec("b", 0, -1, 1)]), "share a slot"),
    (dict(joints=[]), "no joints"),
    (dict(control_rate_hz=0.0), "control_rate_hz"),
])
def test_invalid_configs(bad, match) -> None:
    with pytest.raises(EmbodimentError, match=match):
        _emb(**bad)


def test_joint_limit_validation() -> None:
    with pytest.raises(EmbodimentError, match="below upper"):
        JointSpec("a", 0, 1.0, 1.0)
    with pytest.raises(EmbodimentError, match="positive"):
        JointSpec("a", 0, -1, 1, max_velocity=0.0)
    with pytest.raises(EmbodimentError, match="outside the unified space"):
        JointSpec("a", 128, -1, 1)


def test_order_by_name_and_limits() -> None:
    emb = _emb()
    np.testing.assert_array_equal(emb.order_by_name(["b", "z", "a"], [0.1, 9.0, 0.2]), [0.2, 0.1])
    with pytest.raises(EmbodimentError, match=r"\['b'\] missing"):
        emb.order_by_name(["a"], [0.0])
    with pytest.raises(EmbodimentError, match="malformed"):
        emb.order_by_name(["a", "b"], [0.0])
    assert emb.unknown_joints(["a", "q"]) == ["q"]
    np.testing.assert_array_equal(emb.clip(np.array([5.0, -5.0])), [2.0, -1.0])
    assert list(emb.within_limits(np.array([[0.0, 0.0], [3.0, 0.0]]))) == [True, False]
    with pytest.raises(EmbodimentError, match="last dimension"):
        emb.to_unified(np.zeros(3))


def test_yaml_roundtrip_and_unknown_keys(tmp_path) -> None:
    emb = _emb(cameras=[{"name": "front", "width": 64, "height": 48}])
    path = tmp_path / "e.yaml"
    emb.to_yaml(path)
    back = load_embodiment(path)
    assert back.to_dict() == emb.to_dict()
    assert back.cameras[0].topic == "front/image_raw"
    path.write_text(path.read_text() + "typo_key: 1\n")
    with pytest.raises(EmbodimentError, match="typo_key"):
        load_embodiment(path)
    with pytest.raises(EmbodimentError, match="neither a YAML file"):
        load_embodiment("no_such_robot")

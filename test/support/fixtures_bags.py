"""Small real bags for the bag tests, written with BagRecorder (rosbags' writers).

The synthetic robot has joints ``j0..j2`` (embodiment ``toy3``, 10 Hz control) and one camera
``cam`` (16x12). Joint ``k`` follows ``0.5 * sin(t + k)`` so tests can check values at known
times; the camera frame's red channel encodes the frame number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ate_ros.core.data import topics as T
from ate_ros.core.data.bag_writer import BagRecorder
from ate_ros.core.embodiment import CameraSpec, Embodiment, JointSpec

NS = 1_000_000_000
JOINTS = ["j0", "j1", "j2"]
CAMERA = "cam"
IMG_H, IMG_W = 12, 16
T0_NS = 100 * NS


def toy_embodiment(camera: bool = True, rate: float = 10.0) -> Embodiment:
    """The 3-joint toy robot, optionally with one 16x12 camera."""
    return Embodiment(
        name="toy3",
        joints=[JointSpec(name=n, slot=i, lower=-2.0, upper=2.0) for i, n in enumerate(JOINTS)],
        control_rate_hz=rate,
        cameras=[CameraSpec(name=CAMERA, width=IMG_W, height=IMG_H)] if camera else [],
    )


def joint_values(t_s: float | np.ndarray) -> np.ndarray:
    """(..., 3) positions of the synthetic trajectory at time(s) ``t_s`` (bag clock, s)."""
    t = np.asarray(t_s, dtype=np.float64)[..., None]
    return 0.5 * np.sin(t + np.arange(3))


def frame_image(k: int, h: int = IMG_H, w: int = IMG_W) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = k % 256
    img[..., 1] = 100
    return img


@dataclass
class BagPlan:
    """What to put into a synthetic bag."""

    duration_s: float = 3.0
    joint_hz: float = 50.0
    image_hz: float = 15.0
    command_hz: float = 10.0  # 0: no command topic
    image: str = "raw"  # raw | compressed | none
    joint_order: list[str] = field(default_factory=lambda: ["j2", "j0", "j1"])
    extra_joints: list[str] = field(default_factory=list)
    instruction: str = "stack the cubes"
    instruction_as: str = "topic"  # topic | metadata | none
    drop_joint_between: tuple[float, float] | None = None  # seconds after start
    nan_at: list[int] = field(default_factory=list)  # joint message indices
    clock_jump_at: float | None = None  # seconds: header stamps go back by 10 s from here
    reorder_at: list[int] = field(default_factory=list)  # joint msgs stamped 30 ms earlier
    recv_delay_ns: int = 1_000_000
    img_size: tuple[int, int] = (IMG_H, IMG_W)
    markers_at: list[float] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)  # bag metadata besides instruction


def write_bag(path: str | Path, storage: str = "mcap", plan: BagPlan | None = None) -> Path:
    """Write a synthetic demonstration bag and return its path."""
    plan = plan or BagPlan()
    path = Path(path)
    jump_ns = -10 * NS

    def stamp(t_s: float) -> int:
        t = T0_NS + int(round(t_s * NS))
        if plan.clock_jump_at is not None and t_s >= plan.clock_jump_at:
            t += jump_ns
        return t

    with BagRecorder(path, storage=storage) as rec:
        for key, value in plan.metadata.items():
            rec.set_metadata(key, value)
        if plan.instruction_as == "metadata":
            rec.set_metadata("instruction", plan.instruction)
        if plan.instruction_as == "topic":
            rec.write_string(T0_NS, plan.instruction)
        events: list[tuple[float, str, int]] = []
        n_j = int(plan.duration_s * plan.joint_hz) + 1
        events += [(k / plan.joint_hz, "j", k) for k in range(n_j)]
        if plan.image != "none":
            events += [(k / plan.image_hz, "i", k)
                       for k in range(int(plan.duration_s * plan.image_hz) + 1)]
        if plan.command_hz:
            events += [(k / plan.command_hz, "c", k)
                       for k in range(int(plan.duration_s * plan.command_hz) + 1)]
        events += [(m, "m", i) for i, m in enumerate(plan.markers_at)]
        events.sort(key=lambda e: (e[0], e[1]))
        names = plan.joint_order + plan.extra_joints
        for t_s, kind, k in events:
            t_ns = stamp(t_s)
            # The header clock jumps, the recorder's receive clock does not.
            base_delay = plan.recv_delay_ns + (T0_NS + int(round(t_s * NS)) - t_ns)
            if kind == "j":
                if plan.drop_joint_between and (
                        plan.drop_joint_between[0] <= t_s < plan.drop_joint_between[1]):
                    continue
                q = dict(zip(JOINTS, joint_values(t_s), strict=True))
                vals = [q.get(n, 0.0) for n in plan.joint_order] + [9.0] * len(plan.extra_joints)
                if k in plan.nan_at:
                    vals[0] = float("nan")
                delay = base_delay
                if k in plan.reorder_at:  # stamped 30 ms early, received on time
                    t_ns, delay = t_ns - 30_000_000, delay + 30_000_000
                rec.write_joint_state(t_ns, names, vals, recv_delay_ns=delay)
            elif kind == "i":
                img = frame_image(k, *plan.img_size)
                if plan.image == "raw":
                    rec.write_image(t_ns, img, topic=T.camera_topic(CAMERA),
                                    recv_delay_ns=base_delay)
                else:
                    rec.write_image(t_ns, img, topic=T.camera_topic(CAMERA, compressed=True),
                                    compressed="png", recv_delay_ns=base_delay)
            elif kind == "c":
                dt = 1.0 / plan.command_hz
                # Command = the planned position one and two periods ahead.
                pts = joint_values(np.array([t_s + dt, t_s + 2 * dt]))
                rec.write_joint_trajectory(t_ns, JOINTS[::-1], pts[:, ::-1], dt=dt,
                                           recv_delay_ns=base_delay)
            else:
                rec.write_string(t_ns, f"episode {k}", topic="/episode_start")
    return path

"""Message <-> core type conversions (the only place nodes touch message fields in bulk).

- Time: :func:`time_to_sec`, :func:`sec_to_time`, :func:`time_to_ns`, :func:`ns_to_time`,
  :func:`duration_to_sec`, :func:`sec_to_duration` (builtin_interfaces Time/Duration).
- Joint states: :func:`joint_state_to_arrays`, :func:`joint_state_to_embodiment`.
- Chunks: :func:`chunk_to_msg`, :func:`msg_to_chunk` (``ate_ros/ActionChunk``, flat arrays:
  :mod:`ate_ros.core.chunk_layout`), :func:`chunk_to_trajectory`, :func:`trajectory_to_chunk`
  (trajectory_msgs/JointTrajectory), following the chunk timing convention of
  ``ate_ros.core.policy_contract``: point i is due ``(i + 1) * dt`` after the observation stamp.
- Images: :func:`image_to_numpy`, :func:`compressed_to_numpy` (the core decoder of
  :mod:`ate_ros.core.data.image_decoding`, shared with bag conversion), :func:`numpy_to_image`,
  :func:`numpy_to_compressed`.
- Environment state: :func:`env_state_to_msg`, :func:`msg_to_env_state`
  (``ate_ros/EnvironmentState``: the low-dimensional scene state of ``low_dim`` policies).
- Observations: :func:`observation_to_msg`, :func:`msg_to_observation_data`,
  :func:`observation_env_state`, :func:`msg_to_policy_observation`.

Errors are :class:`ConversionError` (a ValueError) with a message that says what was wrong.
"""

from __future__ import annotations

import array
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration, Time
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ate_ros.core.chunk_layout import (
    ChunkLayoutError,
    point_times,
    read_action_chunk,
    read_joint_trajectory,
)
from ate_ros.core.data.image_decoding import ImageDecodeError, decode_compressed, decode_image
from ate_ros.core.embodiment import Embodiment, EmbodimentError

__all__ = [
    "ConversionError",
    "chunk_takeover",
    "chunk_to_msg",
    "chunk_to_trajectory",
    "compressed_to_numpy",
    "duration_to_sec",
    "env_state_to_msg",
    "image_to_numpy",
    "is_stop_request",
    "joint_state_to_arrays",
    "joint_state_to_embodiment",
    "msg_to_chunk",
    "msg_to_env_state",
    "msg_to_observation_data",
    "msg_to_policy_observation",
    "ns_to_time",
    "numpy_to_compressed",
    "numpy_to_image",
    "observation_env_state",
    "observation_to_msg",
    "sec_to_duration",
    "sec_to_time",
    "time_to_ns",
    "time_to_sec",
    "times_to_trajectory",
    "trajectory_to_chunk",
    "trajectory_to_points",
]

_NS = 1_000_000_000


class ConversionError(ValueError):
    """A message cannot be converted (wrong lengths, unknown joints, bad encoding ...)."""


# ----- time ---------------------------------------------------------------------------------
def time_to_ns(t: Time) -> int:
    return int(t.sec) * _NS + int(t.nanosec)


def ns_to_time(ns: int) -> Time:
    sec, nsec = divmod(int(ns), _NS)
    return Time(sec=int(sec), nanosec=int(nsec))


def time_to_sec(t: Time) -> float:
    """builtin_interfaces/Time (or an rclpy Time's ``to_msg()``) -> float seconds."""
    return float(t.sec) + float(t.nanosec) * 1e-9


def sec_to_time(s: float) -> Time:
    if not math.isfinite(s):
        raise ConversionError(f"cannot convert {s} seconds to a time stamp")
    return ns_to_time(round(s * _NS))


def duration_to_sec(d: Duration) -> float:
    return float(d.sec) + float(d.nanosec) * 1e-9


def sec_to_duration(s: float) -> Duration:
    if not math.isfinite(s):
        raise ConversionError(f"cannot convert {s} seconds to a duration")
    sec, nsec = divmod(round(s * _NS), _NS)
    return Duration(sec=int(sec), nanosec=int(nsec))


# ----- joint states -------------------------------------------------------------------------
def joint_state_to_arrays(msg: JointState) -> tuple[list[str], np.ndarray]:
    """JointState -> (names, positions (N,) float64). Raises on mismatched lengths."""
    names = list(msg.name)
    pos = np.asarray(msg.position, dtype=np.float64)
    if len(names) != pos.shape[0]:
        raise ConversionError(
            f"JointState has {len(names)} names but {pos.shape[0]} positions")
    return names, pos


def joint_state_to_embodiment(msg: JointState, embodiment: Embodiment) -> np.ndarray:
    """JointState -> (D,) positions in the embodiment's joint order (extra joints ignored).

    Raises :class:`ConversionError` for missing joints, mismatched lengths, or a NaN/inf
    position of one of the embodiment's joints.
    """
    names, pos = joint_state_to_arrays(msg)
    try:
        q = embodiment.order_by_name(names, pos)
    except EmbodimentError as exc:
        raise ConversionError(str(exc)) from exc
    if not np.isfinite(q).all():
        raise ConversionError(f"non-finite joint positions {q.tolist()}")
    return q


# ----- chunks / trajectories ----------------------------------------------------------------
def chunk_to_trajectory(chunk: np.ndarray, embodiment: Embodiment, stamp: Time | None = None,
                        frame_id: str = "", dt: float | None = None) -> JointTrajectory:
    """(H, D) chunk in embodiment order -> JointTrajectory, ``time_from_start = (i+1) * dt``.

    ``stamp`` is the observation time (ActionChunk convention); ``dt`` defaults to the
    embodiment's control period.
    """
    c = _chunk_array(chunk, embodiment)
    dt = embodiment.control_period if dt is None else float(dt)
    return times_to_trajectory(point_times(dt, c.shape[0]), c, embodiment.joint_names, stamp,
                               frame_id)


def times_to_trajectory(times_from_start: np.ndarray, positions: np.ndarray,
                        joint_names: Sequence[str], stamp: Time | None = None,
                        frame_id: str = "") -> JointTrajectory:
    """Relative times (N,) and positions (N, D) -> JointTrajectory."""
    msg = JointTrajectory()
    msg.header = Header(stamp=stamp if stamp is not None else Time(), frame_id=frame_id)
    msg.joint_names = list(joint_names)
    pts = []
    for t, q in zip(np.asarray(times_from_start, dtype=np.float64),
                    np.asarray(positions, dtype=np.float64)):
        p = JointTrajectoryPoint()
        p.positions = q.tolist()
        p.time_from_start = sec_to_duration(float(t))
        pts.append(p)
    msg.points = pts
    return msg


def trajectory_to_chunk(traj: JointTrajectory, embodiment: Embodiment,
                        dt: float | None = None, check_timing: bool = True) -> np.ndarray:
    """JointTrajectory -> (H, D) chunk in embodiment order (columns mapped by joint name).

    Raises :class:`ConversionError` for unknown joints (a trajectory for another robot),
    missing or duplicate joints, points whose length differs from ``joint_names``, no points,
    or (with ``check_timing``) ``time_from_start`` not equal to ``(i + 1) * dt``.
    """
    t, positions = trajectory_to_points(traj, embodiment)
    if check_timing:
        dt = embodiment.control_period if dt is None else float(dt)
        if not np.allclose(t, point_times(dt, len(t)), atol=1e-3 * dt + 1e-6):
            raise ConversionError(
                f"time_from_start must be (i+1)*dt with dt={dt:.4f} s; got {t[:4].tolist()}...")
    return positions


def trajectory_to_points(traj: JointTrajectory, embodiment: Embodiment
                         ) -> tuple[np.ndarray, np.ndarray]:
    """JointTrajectory -> its points' ``time_from_start`` (H,) and positions (H, D) in
    embodiment order (columns mapped by joint name), whatever their timing.

    Raises :class:`ConversionError` as :func:`trajectory_to_chunk` does (but for timing).
    """
    order = _embodiment_columns(list(traj.joint_names), embodiment, "trajectory")
    if not traj.points:
        raise ConversionError("trajectory has no points")
    try:
        fields = read_joint_trajectory(traj)  # (H, n) in message order
    except ChunkLayoutError as exc:
        raise ConversionError(str(exc)) from exc
    return fields.times, fields.positions[:, order]


def _embodiment_columns(names: list[str], embodiment: Embodiment, what: str) -> list[int]:
    """Column of each of ``embodiment``'s joints in ``names``; ConversionError for unknown,
    duplicate or missing joints (a message for another robot)."""
    unknown = embodiment.unknown_joints(names)
    if unknown:
        raise ConversionError(f"unknown joints {unknown} for embodiment {embodiment.name} "
                              f"(joints: {embodiment.joint_names})")
    if len(set(names)) != len(names):
        raise ConversionError(f"duplicate joint names in {what}: {names}")
    missing = [n for n in embodiment.joint_names if n not in names]
    if missing:
        raise ConversionError(f"{what} lacks joints {missing} of {embodiment.name}")
    return [names.index(j) for j in embodiment.joint_names]


def chunk_to_msg(chunk: np.ndarray, embodiment: Embodiment, obs_stamp: Time,
                 model_id: str = "", inference_latency: float = 0.0,
                 ood_score: float = float("nan"),
                 samples: Sequence[np.ndarray] = (), dt: float | None = None,
                 takeover_index: int = 0) -> Any:
    """(H, D) chunk in embodiment order -> ``ate_ros/ActionChunk`` (header.stamp = observation
    time; ``dt`` defaults to the embodiment's control period). An (0, D) chunk is a stop
    request. ``takeover_index``: where it takes over the plan (real-time chunking); interfaces
    generated before the field existed cannot carry it (see :func:`chunk_takeover`)."""
    from ate_ros.msg import ActionChunk

    c = _chunk_array(chunk, embodiment)
    msg = ActionChunk()
    msg.header = Header(stamp=obs_stamp, frame_id=embodiment.base_frame)
    msg.embodiment = embodiment.name
    msg.model_id = model_id
    msg.joint_names = list(embodiment.joint_names)
    msg.dt = embodiment.control_period if dt is None else float(dt)
    # array.array('d') is taken as is by rclpy (a list would be checked value by value).
    msg.positions = array.array("d", c.tobytes())
    msg.inference_latency = float(inference_latency)
    msg.ood_score = float(ood_score)
    if takeover_index and hasattr(msg, "takeover_index"):
        msg.takeover_index = int(takeover_index)
    if len(samples):
        extra = [_chunk_array(s, embodiment) for s in samples]
        if any(e.shape != c.shape for e in extra):
            raise ConversionError(f"samples must be shaped like the chunk {c.shape}, got "
                                  f"{[e.shape for e in extra]}")
        msg.samples = array.array("d", np.concatenate(extra).tobytes())
    return msg


def _chunk_array(chunk: np.ndarray, embodiment: Embodiment) -> np.ndarray:
    c = np.ascontiguousarray(chunk, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != embodiment.dof:
        raise ConversionError(f"chunk must be (H, {embodiment.dof}) for {embodiment.name}, "
                              f"got {c.shape}")
    return c


def is_stop_request(msg: Any, embodiment: Embodiment) -> bool:
    """Whether an ``ate_ros/ActionChunk`` asks ``embodiment`` to stop: no points, and either
    naming this embodiment or none (see ActionChunk.msg). Empty chunks for another robot are
    not ours to act on."""
    return not len(msg.positions) and msg.embodiment in ("", embodiment.name)


def chunk_takeover(msg: Any) -> int:
    """An ``ate_ros/ActionChunk``'s ``takeover_index``; 0 from a producer (or interfaces built)
    without the field: the chunk takes over from its first point."""
    return int(getattr(msg, "takeover_index", 0) or 0)


def msg_to_chunk(msg: Any, embodiment: Embodiment,
                 check_timing: bool = True) -> tuple[np.ndarray, float]:
    """``ate_ros/ActionChunk`` -> ((H, D) chunk in embodiment order, observation stamp in s).

    Raises :class:`ConversionError` if the chunk names another embodiment, its joints do not
    map onto this one (unknown, duplicate or missing), its positions are not whole points, it
    has no points, or (``check_timing``) its ``dt`` is not the embodiment's control period.
    """
    if msg.embodiment and msg.embodiment != embodiment.name:
        raise ConversionError(f"chunk is for embodiment {msg.embodiment!r}, "
                              f"this executor drives {embodiment.name!r}")
    try:
        fields = read_action_chunk(msg)
    except ChunkLayoutError as exc:
        raise ConversionError(f"malformed chunk: {exc}") from exc
    order = _embodiment_columns(fields.joint_names, embodiment, "chunk")
    if not fields.horizon:
        raise ConversionError("chunk has no points")
    if check_timing:
        dt = embodiment.control_period
        expect = point_times(dt, fields.horizon)
        if not np.allclose(fields.times, expect, atol=1e-3 * dt + 1e-6):
            raise ConversionError(f"chunk points must be dt={dt:.4f} s apart (the control "
                                  f"period of {embodiment.name}); got times "
                                  f"{fields.times[:4].tolist()}...")
    return fields.positions[:, order], time_to_sec(msg.header.stamp)


# ----- images -------------------------------------------------------------------------------
def image_to_numpy(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> RGB uint8 (H, W, 3), honouring ``step`` (row padding).

    The decoder bag conversion uses (:func:`ate_ros.core.data.image_decoding.decode_image`,
    whose docstring lists the encodings and their channel order), so a camera is seen the same
    way in training data and at run time.
    """
    try:
        return decode_image(msg)
    except ImageDecodeError as exc:
        raise ConversionError(str(exc)) from exc


def numpy_to_image(img: np.ndarray, stamp: Time | None = None, frame_id: str = "",
                   encoding: str = "rgb8") -> Image:
    """uint8 (H, W, 3) RGB (or (H, W) grey with encoding mono8) -> sensor_msgs/Image."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ConversionError(f"image must be uint8, got {a.dtype}")
    if encoding == "mono8":
        if a.ndim == 3:
            a = a[..., 0]
        if a.ndim != 2:
            raise ConversionError(f"mono8 image must be (H, W), got {img.shape}")
        ch = 1
    elif encoding in ("rgb8", "bgr8"):
        if a.ndim != 3 or a.shape[2] != 3:
            raise ConversionError(f"{encoding} image must be (H, W, 3), got {a.shape}")
        if encoding == "bgr8":
            a = a[..., ::-1]
        ch = 3
    else:
        raise ConversionError(f"unsupported encoding {encoding!r} (rgb8, bgr8, mono8)")
    msg = Image()
    msg.header = Header(stamp=stamp if stamp is not None else Time(), frame_id=frame_id)
    msg.height, msg.width = int(a.shape[0]), int(a.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * ch
    msg.data = np.ascontiguousarray(a).tobytes()
    return msg


def compressed_to_numpy(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> RGB uint8 (H, W, 3), with the decoder bag
    conversion uses (:func:`ate_ros.core.data.image_decoding.decode_compressed`)."""
    try:
        return decode_compressed(msg)
    except ImageDecodeError as exc:
        raise ConversionError(str(exc)) from exc


def numpy_to_compressed(img: np.ndarray, stamp: Time | None = None, frame_id: str = "",
                        fmt: str = "jpeg", quality: int = 90) -> CompressedImage:
    """RGB uint8 (H, W, 3) -> sensor_msgs/CompressedImage (jpeg or png)."""
    import cv2

    ext = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}.get(fmt)
    if ext is None:
        raise ConversionError(f"unsupported compressed format {fmt!r} (jpeg, png)")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(np.asarray(img)[..., ::-1]), params)
    if not ok:
        raise ConversionError("OpenCV failed to encode the image")
    msg = CompressedImage()
    msg.header = Header(stamp=stamp if stamp is not None else Time(), frame_id=frame_id)
    msg.format = "jpeg" if ext == ".jpg" else "png"
    msg.data = buf.tobytes()
    return msg


# ----- environment state --------------------------------------------------------------------
def _env_state_array(values: np.ndarray, names: Sequence[str], what: str) -> np.ndarray:
    """(E,) float32 values, checked against ``names`` (one per value) and for NaN/inf."""
    v = np.ascontiguousarray(values, dtype=np.float32)
    if v.ndim != 1 or v.shape[0] != len(names):
        raise ConversionError(f"{what}: {len(names)} names but values of shape {v.shape}")
    if not np.isfinite(v).all():
        raise ConversionError(f"{what}: non-finite values {v.tolist()}")
    return v


def env_state_to_msg(values: np.ndarray, names: Sequence[str], stamp: Time | None = None,
                     frame_id: str = "") -> Any:
    """(E,) environment state and its names -> ``ate_ros/EnvironmentState``."""
    from ate_ros.msg import EnvironmentState

    v = _env_state_array(values, names, "environment state")
    msg = EnvironmentState()
    msg.header = Header(stamp=stamp if stamp is not None else Time(), frame_id=frame_id)
    msg.names = [str(n) for n in names]
    # array.array('f') is taken as is by rclpy (a list would be checked value by value).
    msg.values = array.array("f", v.tobytes())
    return msg


def msg_to_env_state(msg: Any, dim: int = 0) -> tuple[list[str], np.ndarray]:
    """``ate_ros/EnvironmentState`` -> (names, (E,) float32 values).

    Raises :class:`ConversionError` for mismatched lengths, NaN/inf values, or (``dim > 0``) a
    width other than ``dim`` (a state of another layout than the policy reads).
    """
    names = list(msg.names)
    v = _env_state_array(np.asarray(msg.values, dtype=np.float32), names, "EnvironmentState")
    if dim and v.shape[0] != dim:
        raise ConversionError(f"EnvironmentState has {v.shape[0]} values, the policy reads "
                              f"{dim}")
    return names, v


# ----- observations -------------------------------------------------------------------------
def observation_to_msg(images: dict[str, np.ndarray], joint_names: Sequence[str],
                       joint_positions: np.ndarray, stamp: Time, instruction: str = "",
                       frame_id: str = "", env_state: np.ndarray | None = None,
                       env_state_names: Sequence[str] = ()) -> Any:
    """Camera images (RGB uint8), joint positions (and optionally the (E,) environment state
    with its names) -> ``ate_ros/Observation``."""
    from ate_ros.msg import Observation

    q = np.asarray(joint_positions, dtype=np.float64)
    if q.shape != (len(joint_names),):
        raise ConversionError(f"{len(joint_names)} joint names but positions of shape {q.shape}")
    msg = Observation()
    if env_state is not None:
        msg.env_state_names = [str(n) for n in env_state_names]
        msg.env_state = array.array(
            "f", _env_state_array(env_state, env_state_names, "observation").tobytes())
    msg.header = Header(stamp=stamp, frame_id=frame_id)
    msg.camera_names = list(images)
    msg.images = [numpy_to_image(img, stamp, name) for name, img in images.items()]
    msg.joint_names = list(joint_names)
    msg.joint_positions = q.tolist()
    msg.instruction = instruction
    return msg


def msg_to_observation_data(msg: Any, embodiment: Embodiment | None = None
                            ) -> tuple[dict[str, np.ndarray], np.ndarray, str, float]:
    """``ate_ros/Observation`` -> (images RGB by camera, q (D,), instruction, stamp seconds).

    With an embodiment, ``q`` is in its joint order (by name); otherwise in message order.
    """
    if len(msg.camera_names) != len(msg.images):
        raise ConversionError(f"{len(msg.camera_names)} camera names but {len(msg.images)} "
                              f"images")
    images = {n: image_to_numpy(im) for n, im in zip(msg.camera_names, msg.images)}
    q = np.asarray(msg.joint_positions, dtype=np.float64)
    if len(msg.joint_names) != q.shape[0]:
        raise ConversionError(f"{len(msg.joint_names)} joint names but {q.shape[0]} positions")
    if embodiment is not None:
        try:
            q = embodiment.order_by_name(list(msg.joint_names), q)
        except EmbodimentError as exc:
            raise ConversionError(str(exc)) from exc
    return images, q, msg.instruction, time_to_sec(msg.header.stamp)


def observation_env_state(msg: Any) -> tuple[list[str], np.ndarray] | None:
    """The (names, (E,) float32) environment state an ``ate_ros/Observation`` carries, or None
    when it carries none (both fields empty)."""
    if not len(msg.env_state) and not len(msg.env_state_names):
        return None
    names = list(msg.env_state_names)
    return names, _env_state_array(np.asarray(msg.env_state, dtype=np.float32), names,
                                   "observation")


def msg_to_policy_observation(msg: Any, embodiment: Embodiment, env_state_dim: int = 0) -> Any:
    """``ate_ros/Observation`` -> ``PolicyObservation`` (unified qpos + mask, and the
    environment state when the message carries one).

    With ``env_state_dim > 0`` (the policy reads an environment state) an observation without
    one, or of another width, raises :class:`ConversionError` saying so, instead of failing
    inside the model.
    """
    env = observation_env_state(msg)
    if env_state_dim:
        if env is None:
            raise ConversionError(f"observation carries no environment state, the policy reads "
                                  f"{env_state_dim} values (perception_node env_state_dim)")
        if env[1].shape[0] != env_state_dim:
            raise ConversionError(f"observation environment state has {env[1].shape[0]} "
                                  f"values, the policy reads {env_state_dim}")
    return arrays_to_policy_observation(*msg_to_observation_data(msg, embodiment), embodiment,
                                        env_state=None if env is None else env[1])


def arrays_to_policy_observation(images: dict[str, np.ndarray], q: np.ndarray,
                                 instruction: str, stamp: float, embodiment: Embodiment,
                                 env_state: np.ndarray | None = None) -> Any:
    """Images by camera, (D,) joint positions in embodiment order (and optionally the (E,)
    environment state) -> ``PolicyObservation``."""
    from ate_ros.core.policy_contract import PolicyObservation

    q = np.asarray(q)
    if not np.isfinite(q).all():
        raise ConversionError("observation joint positions contain NaN or inf")
    return PolicyObservation(images=images, qpos=embodiment.to_unified(q.astype(np.float32)),
                             mask=embodiment.mask, instruction=instruction, stamp=stamp,
                             env_state=env_state)

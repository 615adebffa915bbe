"""Embodiments: a robot's joints, their limits, and their place in the unified action space.

Every robot is described by an :class:`Embodiment` (usually loaded from a YAML file under
``config/embodiments/``). Each joint owns one slot of RDT's 128-slot unified action space, so
chunks from different robots share one tensor layout ``(..., UNIFIED_DIM)`` plus a boolean mask.

Per-robot arrays (``qpos`` in episode files, limits) always list joints in ascending slot order;
:class:`Embodiment` sorts its joints on construction so that this holds everywhere.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ate_ros.core.config_fields import strict_from_dict

logger = logging.getLogger(__name__)

UNIFIED_DIM = 128
"""Width of RDT's unified action space."""

# RDT's slot ranges (start, stop) for embodiment YAML authors; see docs/method.md.
SLOT_RANGES: dict[str, tuple[int, int]] = {
    "right_arm_joint_pos": (0, 10),
    "right_gripper_joint_pos": (10, 15),
    "right_arm_joint_vel": (15, 25),
    "right_gripper_joint_vel": (25, 30),
    "right_eef_pos": (30, 33),
    "right_eef_rot6d": (33, 39),
    "right_eef_lin_vel": (39, 42),
    "right_eef_ang_vel": (42, 45),
    "left_arm_joint_pos": (50, 60),
    "left_gripper_joint_pos": (60, 65),
    "left_arm_joint_vel": (65, 75),
    "left_gripper_joint_vel": (75, 80),
    "left_eef_pos": (80, 83),
    "left_eef_rot6d": (83, 89),
    "left_eef_lin_vel": (89, 92),
    "left_eef_ang_vel": (92, 95),
    "base_lin_vel": (100, 102),
    "base_ang_vel": (102, 103),
}


class EmbodimentError(ValueError):
    """An embodiment config, or data checked against it, is invalid."""


def _parse_slot(value: int | str) -> int:
    """Accept an int slot or ``"<range name>[i]"`` (e.g. ``"right_arm_joint_pos[3]"``)."""
    if isinstance(value, (int, np.integer)):
        slot = int(value)
    elif isinstance(value, str) and value.endswith("]") and "[" in value:
        name, idx = value[:-1].split("[", 1)
        if name not in SLOT_RANGES:
            raise EmbodimentError(f"unknown slot range {name!r}; known: {sorted(SLOT_RANGES)}")
        start, stop = SLOT_RANGES[name]
        slot = start + int(idx)
        if slot >= stop:
            raise EmbodimentError(
                f"slot {value!r} is past the end of range {name} ({stop - start})")
    else:
        raise EmbodimentError(f"slot must be an int or 'range_name[i]', got {value!r}")
    if not 0 <= slot < UNIFIED_DIM:
        raise EmbodimentError(f"slot {slot} outside the unified space [0, {UNIFIED_DIM})")
    return slot


@dataclass
class JointSpec:
    """One controllable joint.

    Attributes:
        name: Joint name as it appears in ``sensor_msgs/JointState`` and trajectories.
        slot: Index in the 128-slot unified action space.
        lower: Lower position limit (rad or m).
        upper: Upper position limit (rad or m).
        max_velocity: Largest commanded speed (units/s) the executor lets through.
        max_acceleration: Largest commanded acceleration (units/s^2).
    """

    name: str
    slot: int
    lower: float
    upper: float
    max_velocity: float = 2.0
    max_acceleration: float = 20.0

    def __post_init__(self) -> None:
        self.slot = _parse_slot(self.slot)
        self.lower, self.upper = float(self.lower), float(self.upper)
        if not (np.isfinite(self.lower) and np.isfinite(self.upper)) or self.lower >= self.upper:
            raise EmbodimentError(
                f"joint {self.name!r}: lower ({self.lower}) must be finite and below upper "
                f"({self.upper})"
            )
        if not self.max_velocity > 0 or not self.max_acceleration > 0:
            raise EmbodimentError(
                f"joint {self.name!r}: max_velocity and max_acceleration must be positive"
            )


@dataclass
class CameraSpec:
    """A camera the policy sees, with the size images are resized to before the policy."""

    name: str
    width: int = 96
    height: int = 96
    topic: str = ""

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise EmbodimentError(f"camera {self.name!r}: width and height must be positive")
        if not self.topic:
            self.topic = f"{self.name}/image_raw"


@dataclass
class Embodiment:
    """A robot as the policy sees it: joints in the unified space, cameras, control rate.

    Attributes:
        name: Short identifier, stored in datasets and checkpoints.
        joints: Joint specs; sorted by slot on construction.
        control_rate_hz: Rate at which chunk points are executed.
        cameras: Cameras fed to the policy.
        ee_link: End-effector frame name for forward kinematics (visualisation).
        urdf: Optional URDF path (relative paths resolve against the YAML's folder).
        base_frame: Frame that markers and FK results are expressed in.
        max_start_deviation: Largest |first chunk point - measured position| (per joint)
            the executor accepts before refusing a chunk.
        description: Free text.
    """

    name: str
    joints: list[JointSpec]
    control_rate_hz: float = 10.0
    cameras: list[CameraSpec] = field(default_factory=list)
    ee_link: str = ""
    urdf: str = ""
    base_frame: str = "base_link"
    max_start_deviation: float = 0.5
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise EmbodimentError("embodiment name must not be empty")
        self.joints = [j if isinstance(j, JointSpec) else JointSpec(**j) for j in self.joints]
        self.cameras = [c if isinstance(c, CameraSpec) else CameraSpec(**c) for c in self.cameras]
        if not self.joints:
            raise EmbodimentError(f"embodiment {self.name!r} has no joints")
        self.joints.sort(key=lambda j: j.slot)
        names = [j.name for j in self.joints]
        if len(set(names)) != len(names):
            raise EmbodimentError(f"embodiment {self.name!r}: duplicate joint names in {names}")
        slots = [j.slot for j in self.joints]
        if len(set(slots)) != len(slots):
            raise EmbodimentError(f"embodiment {self.name!r}: two joints share a slot ({slots})")
        if not self.control_rate_hz > 0:
            raise EmbodimentError(f"control_rate_hz must be positive, got {self.control_rate_hz}")
        cams = [c.name for c in self.cameras]
        if len(set(cams)) != len(cams):
            raise EmbodimentError(f"embodiment {self.name!r}: duplicate camera names {cams}")

    # ----- derived arrays -------------------------------------------------------------------
    @property
    def dof(self) -> int:
        return len(self.joints)

    @property
    def joint_names(self) -> list[str]:
        return [j.name for j in self.joints]

    @property
    def slots(self) -> np.ndarray:
        """(D,) int64 unified-space index of each joint, ascending."""
        return np.array([j.slot for j in self.joints], dtype=np.int64)

    @property
    def mask(self) -> np.ndarray:
        """(UNIFIED_DIM,) bool, True where this robot has a joint."""
        m = np.zeros(UNIFIED_DIM, dtype=bool)
        m[self.slots] = True
        return m

    @property
    def lower(self) -> np.ndarray:
        return np.array([j.lower for j in self.joints], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        return np.array([j.upper for j in self.joints], dtype=np.float64)

    @property
    def max_velocity(self) -> np.ndarray:
        return np.array([j.max_velocity for j in self.joints], dtype=np.float64)

    @property
    def max_acceleration(self) -> np.ndarray:
        return np.array([j.max_acceleration for j in self.joints], dtype=np.float64)

    @property
    def control_period(self) -> float:
        return 1.0 / self.control_rate_hz

    # ----- unified space ----------------------------------------------------------------------
    def to_unified(self, q: np.ndarray) -> np.ndarray:
        """(..., D) robot values -> (..., UNIFIED_DIM), zeros outside this robot's slots."""
        q = np.asarray(q)
        if q.shape[-1] != self.dof:
            raise EmbodimentError(
                f"{self.name}: expected last dimension {self.dof} (joints {self.joint_names}), "
                f"got shape {q.shape}"
            )
        out = np.zeros(q.shape[:-1] + (UNIFIED_DIM,), dtype=q.dtype if q.dtype.kind == "f" else
                       np.float32)
        out[..., self.slots] = q
        return out

    def from_unified(self, u: np.ndarray) -> np.ndarray:
        """(..., UNIFIED_DIM) -> (..., D) in this robot's joint order."""
        u = np.asarray(u)
        if u.shape[-1] != UNIFIED_DIM:
            raise EmbodimentError(f"expected last dimension {UNIFIED_DIM}, got shape {u.shape}")
        return u[..., self.slots]

    def order_by_name(self, names: Sequence[str], values: Sequence[float]) -> np.ndarray:
        """Reorder ``values`` given for joints ``names`` (any order) into this robot's order.

        Extra joints (e.g. a mobile base the policy does not drive) are ignored; a missing
        joint is an error naming it.
        """
        if len(names) != len(values):
            raise EmbodimentError(
                f"{len(names)} joint names but {len(values)} values; message is malformed"
            )
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.joint_names if n not in index]
        if missing:
            raise EmbodimentError(
                f"{self.name}: joints {missing} missing from message (has {list(names)})"
            )
        return np.array([values[index[n]] for n in self.joint_names], dtype=np.float64)

    def unknown_joints(self, names: Iterable[str]) -> list[str]:
        """Names that are not joints of this embodiment."""
        known = set(self.joint_names)
        return [n for n in names if n not in known]

    def clip(self, q: np.ndarray) -> np.ndarray:
        """Clamp (..., D) positions into the joint limits."""
        return np.clip(q, self.lower, self.upper)

    def within_limits(self, q: np.ndarray, tol: float = 1e-9) -> np.ndarray:
        """(..., D) -> (...,) bool: every joint inside its limits (with tolerance)."""
        q = np.asarray(q)
        return np.all((q >= self.lower - tol) & (q <= self.upper + tol), axis=-1)

    # ----- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Embodiment:
        return strict_from_dict(cls, data, EmbodimentError)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Embodiment:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise EmbodimentError(f"embodiment file not found: {path}")
        try:
            with open(path) as f:
                data = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as exc:
            raise EmbodimentError(f"{path}: not a readable YAML file ({exc})") from exc
        try:
            emb = cls.from_dict(data)
        except EmbodimentError as exc:
            raise EmbodimentError(f"{path}: {exc}") from exc
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            # A field of the wrong type or shape (a string for a limit, a list for a joint).
            raise EmbodimentError(f"{path}: a field has the wrong type or shape ({exc})"
                                  ) from exc
        if emb.urdf and not Path(emb.urdf).is_absolute():
            emb.urdf = str((path.parent / emb.urdf).resolve())
        return emb

    def to_yaml(self, path: str | Path) -> None:
        import yaml

        with open(path, "w") as f:
            yaml.safe_dump(self.to_dict(), f, sort_keys=False)


def load_embodiment(spec: str | Path | Embodiment) -> Embodiment:
    """Load an embodiment from a YAML path or a bare name under ``config/embodiments``."""
    if isinstance(spec, Embodiment):
        return spec
    if not str(spec).strip():
        raise EmbodimentError("no embodiment given: pass a config/embodiments name or a YAML path")
    p = Path(spec)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return Embodiment.from_yaml(p)
    candidate = config_dir() / "embodiments" / f"{spec}.yaml"
    if candidate.is_file():
        return Embodiment.from_yaml(candidate)
    raise EmbodimentError(
        f"embodiment {spec!r} is neither a YAML file nor one of "
        f"{sorted(x.stem for x in (config_dir() / 'embodiments').glob('*.yaml'))}"
    )


def config_dir() -> Path:
    """The package's ``config/`` folder.

    Source checkout: ``<repo>/config``. Installed by colcon or pip (``data_files``):
    ``<prefix>/share/ate_ros/config``.
    """
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "config", Path(sys.prefix) / "share" / "ate_ros" / "config"]
    if len(here.parents) > 5:  # <prefix>/lib/pythonX/site-packages/ate_ros/core/embodiment.py
        candidates.insert(1, here.parents[5] / "share" / "ate_ros" / "config")
    for c in candidates:
        if (c / "embodiments").is_dir():
            return c
    return candidates[0]

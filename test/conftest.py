"""Test-session set-up shared by every test.

A unique ROS_DOMAIN_ID per session (from the pid) and localhost-only discovery keep parallel
runs on one machine, and CI, from ever seeing each other's DDS traffic. Set before anything imports
rclpy (the wheels' bootstrapper re-executes Python with the environment it finds).
"""

from __future__ import annotations

import os

os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "0")

import pytest  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    import torch

    # Two cores: more intra-op threads only add contention between pytest and DDS threads.
    torch.set_num_threads(2)


@pytest.fixture
def small_embodiment():
    """A 3-joint toy robot in slots 0-2 (tests that need any embodiment)."""
    from ate_ros.core.embodiment import Embodiment, JointSpec

    return Embodiment(
        name="toy3",
        joints=[JointSpec(name=f"j{i}", slot=i, lower=-2.0, upper=2.0, max_velocity=1.5,
                          max_acceleration=10.0) for i in range(3)],
        control_rate_hz=10.0,
    )


@pytest.fixture
def camera_embodiment():
    """Two joints (a, b) and one 32x24 camera, ``wrist`` (tests of camera inputs)."""
    from ate_ros.core.embodiment import CameraSpec, Embodiment, JointSpec

    return Embodiment(name="cam2", joints=[JointSpec("a", 0, -1, 1), JointSpec("b", 1, -1, 1)],
                      cameras=[CameraSpec("wrist", 32, 24)])


@pytest.fixture
def red_centred_frame():
    """An 80x48 rgb8 frame whose centre 64x48 (4:3, the camera's aspect) is pure red and whose
    sides are black: a centre crop to 32x24 keeps only red."""
    import numpy as np

    frame = np.zeros((48, 80, 3), np.uint8)
    frame[:, 8:72] = (255, 0, 0)
    return frame


@pytest.fixture(scope="session")
def toy_align_data(tmp_path_factory):
    """Pre-training episodes of a 3-joint arm and adaptation episodes of a 4-joint one, with
    their embodiment YAMLs (``arm3.yaml``, ``arm4.yaml``): small enough for seconds-long
    ``ate-ros align`` runs."""
    from ate_ros.core.align.synthetic import toy_arm, write_toy_dataset

    root = tmp_path_factory.mktemp("toy_align")
    a3, a4 = toy_arm("arm3", 3), toy_arm("arm4", 4)
    write_toy_dataset(root / "pre", a3, n_train=4, n_val=2, length=24, seed=0)
    write_toy_dataset(root / "ada", a4, n_train=3, n_val=2, length=20, seed=1, offset=0.3)
    a3.to_yaml(root / "arm3.yaml")
    a4.to_yaml(root / "arm4.yaml")
    return root

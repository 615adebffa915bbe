"""`colcon build` of the package in a fresh workspace, as users on a robot build it.

Uses the venv's ament/rosidl (ROS 2 wheels); then imports ate_ros.msg / ate_ros.action and the
Python sources from the install space and publishes an ActionChunk with them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import ROOT

PACKAGE_CONTENT = ["package.xml", "CMakeLists.txt", "msg", "action", "ate_ros", "launch", "config",
                   "scripts"]

pytestmark = pytest.mark.slow

PROBE = r"""
import json, sys
import ate_ros, ate_ros.msg, ate_ros.action, ate_ros.core.embodiment
import rclpy
from ate_ros.msg import ActionChunk
from ate_ros.action import ExecuteChunk
rclpy.init()
node = rclpy.create_node("colcon_probe")
pub = node.create_publisher(ActionChunk, "action_chunk", 1)  # loads the C typesupport
pub.publish(ActionChunk(embodiment="probe"))
node.destroy_node(); rclpy.shutdown()
print(json.dumps({"msg": ate_ros.msg.__file__, "core": ate_ros.core.embodiment.__file__,
                  "goal_fields": sorted(ExecuteChunk.Goal.get_fields_and_field_types())}))
"""


def test_colcon_build_and_import(tmp_path: Path) -> None:
    venv = Path(sys.prefix)
    colcon = venv / "bin" / "colcon"
    if not colcon.exists():
        pytest.skip("colcon is not installed in this environment (make setup installs it)")
    src = tmp_path / "ws" / "src" / "ate_ros"
    src.mkdir(parents=True)
    for name in PACKAGE_CONTENT:
        p = ROOT / name
        (shutil.copytree if p.is_dir() else shutil.copy2)(
            p, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if p.is_dir()
                              else {}))
    env = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}",
               CMAKE_PREFIX_PATH=str(venv), AMENT_PREFIX_PATH=str(venv))
    build = subprocess.run(
        [str(colcon), "build", "--cmake-args",
         f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
        cwd=tmp_path / "ws", env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]

    install = tmp_path / "ws" / "install" / "ate_ros"
    site = next(install.glob("lib/python3*/site-packages"))
    for exe in ("perception_node", "policy_node", "executor_node", "sim_robot_node", "ate-ros"):
        assert os.access(install / "lib" / "ate_ros" / exe, os.X_OK), exe
    assert (install / "share" / "ate_ros" / "launch").is_dir()
    assert (install / "share" / "ate_ros" / "config").is_dir()

    # Isolated from the source checkout: run from tmp, install space first on both paths.
    env = dict(os.environ, PYTHONPATH=str(site),
               LD_LIBRARY_PATH=f"{install / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}")
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert report["msg"].startswith(str(site)), report
    assert report["core"].startswith(str(site)), report
    assert report["goal_fields"] == ["chunk"]

"""ate_ros.core must import without rclpy, launch or any *_msgs package (training machines)."""

from __future__ import annotations

import json
import subprocess
import sys

from support.paths import ROOT

CORE = ROOT / "ate_ros" / "core"

PROBE = r"""
import importlib, json, pkgutil, sys
import ate_ros.core as core
failed = {}
for info in pkgutil.walk_packages(core.__path__, prefix="ate_ros.core."):
    try:
        importlib.import_module(info.name)
    except Exception as exc:  # reported, so a broken module cannot hide a ROS import
        failed[info.name] = repr(exc)
bad = sorted(m for m in sys.modules
             if m.split(".")[0] in ("rclpy", "launch", "launch_ros", "ament_index_python")
             or m.split(".")[0].endswith("_msgs")
             or m.startswith(("ate_ros.msg", "ate_ros.action", "ate_ros.ros", "ate_ros.nodes")))
print(json.dumps({"bad": bad, "failed": failed, "n": len(sys.modules)}))
"""


def test_core_imports_no_ros_modules() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         timeout=300)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["bad"] == [], f"ate_ros.core pulled in ROS modules: {report['bad']}"
    assert report["failed"] == {}, f"core modules failed to import: {report['failed']}"


def test_core_sources_have_no_ros_imports() -> None:
    """A static check too: a lazily imported ROS module would escape the runtime probe."""
    import ast

    offenders = []
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                top = n.split(".")[0]
                if top in ("rclpy", "launch", "launch_ros") or top.endswith("_msgs") or \
                        n.startswith(("ate_ros.msg", "ate_ros.action", "ate_ros.ros",
                                      "ate_ros.nodes")):
                    offenders.append(f"{path.relative_to(CORE.parent.parent)}:{node.lineno} {n}")
    assert offenders == [], "\n".join(offenders)


def test_probe_detects_a_ros_import(tmp_path) -> None:
    """The probe itself must be able to fail: importing rclpy shows up in its report."""
    code = "import rclpy, sys, json; print(json.dumps(sorted(m for m in sys.modules " \
           "if m.startswith('rclpy'))[:1]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["rclpy"]

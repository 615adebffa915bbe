"""Launch files, parameter YAMLs and installed executables agree with each other.

Parsed with ``ast`` (no launch_ros needed): every ate_ros executable a launch file starts exists
in scripts/ and is installed by CMakeLists.txt; every file it names exists; every parameter in a
node's YAML and every parameter a launch file sets is declared by that node's config dataclass;
every LaunchConfiguration used is declared. When launch_ros is importable, the descriptions are
also built for real.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from support.paths import ROOT

from ate_ros.core.config_fields import walk_fields
from ate_ros.core.deploy.node_configs import NODE_CONFIGS, NODE_NAMES

LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
# Nodes of other packages the launch files may start (not in package.xml: optional, each behind a
# launch argument) -> that argument.
EXTERNAL = {("rviz2", "rviz2"): "rviz",
            ("robot_state_publisher", "robot_state_publisher"): "robot_state_publisher"}
BUILTIN_PARAMS = {"use_sim_time"}


def node_config_classes():
    return {n.name: n.config for n in NODE_CONFIGS}


def declared(cls) -> set[str]:
    """Dotted parameter names of a config dataclass (the one field walk)."""
    return {f.name for f in walk_fields(cls, ros_only=True)}


def flatten(d: dict, prefix="") -> set[str]:
    out: set[str] = set()
    for k, v in d.items():
        if isinstance(v, dict):
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out.add(prefix + k)
    return out


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _const(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


class LaunchInfo:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.tree = ast.parse(path.read_text(), str(path))
        self.dicts: dict[str, ast.Dict] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        self.dicts[t.id] = node.value
        self.nodes = []  # (package, executable, name, yaml files, param keys)
        for call in (n for n in ast.walk(self.tree) if isinstance(n, ast.Call)):
            exe = _const(_kw(call, "executable"))
            if exe is None:
                continue
            files, keys = [], set()
            params = _kw(call, "parameters")
            for el in params.elts if isinstance(params, ast.List) else []:
                d = self.dicts.get(el.id) if isinstance(el, ast.Name) else el
                if isinstance(d, ast.Dict):
                    keys |= {_const(k) for k in d.keys if _const(k)}
                for c in ast.walk(el):
                    s = _const(c)
                    if s and s.endswith(".yaml"):
                        files.append(s)
            self.nodes.append((_const(_kw(call, "package")), exe, _const(_kw(call, "name")),
                               files, keys))
        self.strings = {_const(n) for n in ast.walk(self.tree) if _const(n)}
        self.used_args = {_const(n.args[0]) for n in ast.walk(self.tree)
                          if isinstance(n, ast.Call) and getattr(n.func, "id", "")
                          == "LaunchConfiguration" and n.args and _const(n.args[0])}
        self.declared_args: set[str] = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "ARGUMENTS"
                                                    for t in node.targets):
                self.declared_args |= {_const(e.elts[0]) for e in node.value.elts}


@pytest.fixture(scope="module", params=[p.name for p in LAUNCH_FILES])
def launch(request) -> LaunchInfo:
    return LaunchInfo(ROOT / "launch" / request.param)


def test_launch_files_exist():
    assert {p.name for p in LAUNCH_FILES} >= {"ate.launch.py", "sim.launch.py"}


def test_executables_exist_and_are_installed(launch):
    cmake = (ROOT / "CMakeLists.txt").read_text()
    ours = [n for n in launch.nodes if n[0] == "ate_ros"]
    assert ours, f"{launch.path.name} starts no ate_ros node"
    for _, exe, *_ in ours:
        assert (ROOT / "scripts" / exe).is_file(), f"scripts/{exe} missing"
        assert f"scripts/{exe}" in cmake, f"CMakeLists.txt does not install scripts/{exe}"
    for exe in NODE_NAMES:
        assert (ROOT / "scripts" / exe).is_file() and f"scripts/{exe}" in cmake


def test_referenced_files_exist(launch):
    files = [s for s in launch.strings
             if " " not in s and s.endswith((".yaml", ".rviz", ".launch.py"))]  # not help text
    assert files, f"{launch.path.name} references no config or launch file"
    for s in files:
        where = "launch" if s.endswith(".launch.py") else "config"
        assert (ROOT / where / s).is_file(), f"{launch.path.name}: {where}/{s} missing"


def test_parameters_are_declared(launch):
    classes = node_config_classes()
    for pkg, exe, name, files, keys in launch.nodes:
        if pkg != "ate_ros":
            continue
        names = declared(classes[exe])
        unknown = keys - names - BUILTIN_PARAMS
        assert not unknown, f"{launch.path.name}: {exe} is given undeclared {sorted(unknown)}"
        for f in files:
            data = yaml.safe_load((ROOT / "config" / f).read_text())
            section = data[name or exe]["ros__parameters"]
            unknown = flatten(section) - names - BUILTIN_PARAMS
            assert not unknown, f"config/{f}: {exe} does not declare {sorted(unknown)}"


def test_launch_arguments_declared(launch):
    missing = launch.used_args - launch.declared_args
    assert not missing, f"{launch.path.name} uses undeclared arguments {sorted(missing)}"


def test_robot_launch_arguments():
    info = LaunchInfo(ROOT / "launch" / "ate.launch.py")
    assert {"policy", "vae", "embodiment", "dry_run", "use_sim_time"} <= info.declared_args
    assert {n[1] for n in info.nodes} >= {"perception_node", "policy_node", "executor_node"}
    sim = LaunchInfo(ROOT / "launch" / "sim.launch.py")
    assert "sim_robot_node" in {n[1] for n in sim.nodes} and "ate.launch.py" in sim.strings


def test_observation_source_argument():
    """observation_source:=sensors drops perception_node and tells policy_node so; sim.launch.py
    forwards the argument (and so every argument ate.launch.py declares that it also does)."""
    robot = LaunchInfo(ROOT / "launch" / "ate.launch.py")
    perception = next(c for c in ast.walk(robot.tree) if isinstance(c, ast.Call)
                      and _const(_kw(c, "executable")) == "perception_node")
    cond = _kw(perception, "condition")  # IfCondition(NotEqualsSubstitution(<arg>, "sensors"))
    assert isinstance(cond, ast.Call) and cond.func.id == "IfCondition"
    (test,) = cond.args
    assert isinstance(test, ast.Call) and test.func.id == "NotEqualsSubstitution"
    arg, value = test.args
    assert arg.func.id == "LaunchConfiguration" and _const(arg.args[0]) == "observation_source"
    assert _const(value) == "sensors"
    policy = next(n for n in robot.nodes if n[1] == "policy_node")
    assert "observation_source" in policy[4]
    from ate_ros.core.deploy import OBSERVATION_SOURCES

    assert "sensors" in OBSERVATION_SOURCES
    sim = LaunchInfo(ROOT / "launch" / "sim.launch.py")
    forwarded = next(n for n in ast.walk(sim.tree) if isinstance(n, ast.Assign) and any(
        getattr(t, "id", "") == "ROBOT_ARGUMENTS" for t in n.targets))
    names = {_const(e) for e in forwarded.value.elts}
    assert "observation_source" in names and names <= sim.declared_args


def test_robot_nodes_are_lifecycle_nodes_brought_up_at_start():
    """perception, policy and executor are lifecycle nodes; autostart configures and activates
    each (a ChangeState per transition and node)."""
    robot = LaunchInfo(ROOT / "launch" / "ate.launch.py")
    kinds = {_const(_kw(c, "executable")): c.func.id for c in ast.walk(robot.tree)
             if isinstance(c, ast.Call) and _const(_kw(c, "executable"))}
    assert kinds == {n: "LifecycleNode" for n in ("perception_node", "policy_node",
                                                  "executor_node")}
    transitions = [a.attr for c in ast.walk(robot.tree)
                   if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "ChangeState"
                   for a in ast.walk(c) if isinstance(a, ast.Attribute)
                   and a.attr.startswith("TRANSITION_")]
    assert sorted(set(transitions)) == ["TRANSITION_ACTIVATE", "TRANSITION_CONFIGURE"]
    assert "LaunchConfigurationNotEquals" not in robot.path.read_text()  # deprecated


def test_external_nodes_are_known(launch):
    """Only known external packages are started, each behind its on/off launch argument."""
    for pkg, exe, *_ in launch.nodes:
        if pkg == "ate_ros":
            continue
        assert (pkg, exe) in EXTERNAL, f"{launch.path.name}: unexpected external node {pkg}/{exe}"
        assert EXTERNAL[pkg, exe] in launch.declared_args, (
            f"{launch.path.name}: {pkg} is not behind a `{EXTERNAL[pkg, exe]}` argument")


def test_sim_robot_state_publisher():
    """sim.launch.py: robot_state_publisher gets the generated URDF as a parameter; the real-robot
    launch leaves robot_description to the robot's own bringup."""
    sim = LaunchInfo(ROOT / "launch" / "sim.launch.py")
    rsp = [n for n in sim.nodes if n[:2] == ("robot_state_publisher", "robot_state_publisher")]
    assert len(rsp) == 1
    assert {"robot_description", "use_sim_time"} <= rsp[0][4]
    assert "robot_state_publisher" in sim.declared_args
    # auto: started where installed, one line where not (ros/optional_packages.py); no
    # IfCondition, which would hand a missing package to launch's own error.
    entries = next(n.value.elts for n in ast.walk(sim.tree) if isinstance(n, ast.Assign)
                   and any(getattr(t, "id", "") == "ARGUMENTS" for t in n.targets))
    defaults = {_const(e.elts[0]): _const(e.elts[1]) for e in entries}
    assert defaults["robot_state_publisher"] == "auto"
    assert "IfCondition(LaunchConfiguration(\"robot_state_publisher\"))" not in \
        sim.path.read_text()
    imports = {(n.module, a.name) for n in ast.walk(sim.tree) if isinstance(n, ast.ImportFrom)
               for a in n.names}
    assert ("ate_ros.core.sim.urdf", "build_urdf") in imports
    assert ("ate_ros.ros.optional_packages", "optional_package") in imports
    pytest.importorskip("mujoco")
    from ate_ros.core.sim import urdf

    robot_xml = urdf.build_urdf("sim_arm6")  # what the launch file passes on
    assert '<robot name="sim_arm6"' in robot_xml and robot_xml.count("<joint ") >= 6
    robot = LaunchInfo(ROOT / "launch" / "ate.launch.py")
    assert "robot_state_publisher" not in {n[0] for n in robot.nodes}


def test_all_node_yamls_match_dataclasses():
    for node in NODE_CONFIGS:
        exe, cls, f = node.name, node.config, ROOT / node.yaml
        data = yaml.safe_load(f.read_text())
        unknown = flatten(data[exe]["ros__parameters"]) - declared(cls) - BUILTIN_PARAMS
        assert not unknown, f"{f.name}: undeclared {sorted(unknown)}"


def test_node_parameters_are_declarable_and_described():
    """Every field the walk gives a node becomes a ROS parameter (a type rclpy can hold, one
    name each) with a description, as the ROS helper declares it."""
    pytest.importorskip("rclpy")
    from ate_ros.ros.params import parameter_specs

    for node in NODE_CONFIGS:
        specs = parameter_specs(node.config)
        names = [s.name for s in specs]
        assert len(names) == len(set(names)) and set(names) == declared(node.config)
        undescribed = [s.name for s in specs if not s.field.help]
        assert not undescribed, f"{node.name}: parameters without help {undescribed}"


def test_launch_descriptions_build():
    pytest.importorskip("launch_ros")
    import importlib.util

    for path in LAUNCH_FILES:
        spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        assert mod.generate_launch_description().entities

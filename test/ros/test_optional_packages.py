"""ros/optional_packages.py: a launch argument for a node of a package that may be missing
(sim.launch.py's robot_state_publisher)."""

from __future__ import annotations

import pytest

from ate_ros.ros.optional_packages import (
    MissingPackageError,
    optional_package,
    package_installed,
)

ARG = "robot_state_publisher"


@pytest.mark.parametrize("value, installed, start", [
    ("auto", True, True), ("true", True, True), ("True", True, True), ("1", True, True),
    ("false", True, False), ("false", False, False), ("off", False, False),
])
def test_start_follows_the_argument_and_the_installation(value, installed, start):
    assert optional_package(ARG, value, "rsp_pkg", installed) == (start, "")


def test_auto_without_the_package_skips_it_with_one_line_naming_the_argument():
    start, message = optional_package(ARG, "auto", "rsp_pkg", False, "apt install rsp")
    assert not start
    assert "rsp_pkg is not installed (apt install rsp)" in message
    assert f"{ARG}:=false" in message and "\n" not in message


def test_true_without_the_package_names_package_and_argument():
    with pytest.raises(MissingPackageError, match=rf"{ARG}:=true but rsp_pkg is not installed"
                                                  rf".*{ARG}:=false"):
        optional_package(ARG, "true", "rsp_pkg", False)


def test_a_value_that_is_no_choice_is_refused():
    with pytest.raises(ValueError, match="expected true, false or auto"):
        optional_package(ARG, "maybe", "rsp_pkg", True)


def test_package_installed_reads_the_ament_index(tmp_path, monkeypatch):
    """A prefix whose resource index lists a package: found; another name, or no ament
    environment at all: not found (the launch then skips the node instead of failing)."""
    (tmp_path / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (tmp_path / "share" / "ament_index" / "resource_index" / "packages" / "rsp_pkg").touch()
    (tmp_path / "share" / "rsp_pkg").mkdir()
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    assert package_installed("rsp_pkg")
    assert not package_installed("no_such_package_here")
    monkeypatch.delenv("AMENT_PREFIX_PATH")
    assert not package_installed("rsp_pkg")

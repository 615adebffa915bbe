"""ate_ros.ros.params: dataclass -> declared parameters, descriptors, validation on set."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from support.paths import ROOT

rclpy = pytest.importorskip("rclpy")

from rclpy.parameter import Parameter  # noqa: E402

from ate_ros.core.execution import ExecutionConfig, ExecutorNodeConfig  # noqa: E402
from ate_ros.ros.params import (  # noqa: E402
    DataclassParameters,
    ParameterConfigError,
    dataclass_parameter_names,
)

pytestmark = pytest.mark.ros


@dataclass
class Inner:
    gain: float = field(default=0.5, metadata={"help": "a gain", "min": 0.0, "max": 1.0})
    names: list[str] = field(default_factory=lambda: ["a", "b"], metadata={"help": "names"})


@dataclass
class Cfg:
    rate: float = field(default=10.0, metadata={"help": "rate in Hz", "min": 0.1, "max": 100.0})
    steps: int = field(default=3, metadata={"help": "steps", "min": 0, "max": 10})
    mode: str = field(default="x", metadata={"help": "mode", "read_only": True})
    flag: bool = field(default=False, metadata={"help": "flag"})
    limit: float | None = field(default=None, metadata={"help": "optional limit"})
    weights: list[float] = field(default_factory=list, metadata={"help": "weights"})
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        if isinstance(self.inner, dict):
            self.inner = Inner(**self.inner)
        if self.steps > 5 and self.flag:
            raise ValueError(f"steps ({self.steps}) must be <= 5 when flag is set")


@pytest.fixture(scope="module")
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


def _node(name, overrides=()):
    return rclpy.create_node(name, parameter_overrides=list(overrides))


def test_names():
    assert dataclass_parameter_names(Cfg) == [
        "rate", "steps", "mode", "flag", "limit", "weights", "inner.gain", "inner.names"]


def test_declare_read_back_and_descriptors(ros):
    node = _node("p1", [Parameter("rate", value=20), Parameter("inner.gain", value=0.25),
                        Parameter("limit", value=0.3)])
    try:
        b = DataclassParameters(node, Cfg)
        cfg = b.config
        assert cfg.rate == 20.0 and isinstance(cfg.rate, float)  # int override accepted
        assert cfg.inner.gain == 0.25 and cfg.inner.names == ["a", "b"]
        assert cfg.limit == pytest.approx(0.3) and cfg.weights == []
        d = node.describe_parameter("rate")
        assert d.description == "rate in Hz"
        assert d.floating_point_range[0].from_value == 0.1
        assert node.describe_parameter("steps").integer_range[0].to_value == 10
        assert node.describe_parameter("mode").read_only
    finally:
        node.destroy_node()


def test_none_round_trip_and_defaults_from_instance(ros):
    node = _node("p2")
    try:
        cfg = DataclassParameters(node, Cfg, defaults=Cfg(steps=4)).config
        assert cfg.limit is None and cfg.steps == 4
    finally:
        node.destroy_node()


def test_invalid_override_raises_clear_error(ros):
    node = _node("p3", [Parameter("steps", value=7), Parameter("flag", value=True)])
    try:
        with pytest.raises(ParameterConfigError, match="steps"):
            DataclassParameters(node, Cfg)
    finally:
        node.destroy_node()


def test_set_validation_and_on_change(ros):
    node = _node("p4")
    seen = []
    try:
        b = DataclassParameters(node, Cfg, on_change=seen.append)
        r = node.set_parameters([Parameter("steps", value=7)])[0]
        assert r.successful
        r = node.set_parameters([Parameter("flag", value=True)])[0]
        assert not r.successful and "steps" in r.reason  # __post_init__ refuses the combo
        r = node.set_parameters([Parameter("rate", value=1000.0)])[0]
        assert not r.successful  # outside the descriptor's range
        r = node.set_parameters([Parameter("mode", value="y")])[0]
        assert not r.successful  # read-only
        assert b.config.steps == 7 and b.config.flag is False
        assert seen and seen[-1].steps == 7
    finally:
        node.destroy_node()


def test_execution_config_set_rejects_bad_blend(ros):
    node = _node("p5")
    try:
        b = DataclassParameters(node, ExecutorNodeConfig)
        assert isinstance(b.config.execution, ExecutionConfig)
        r = node.set_parameters([Parameter("execution.blend", value="bogus")])[0]
        assert not r.successful and "blend" in r.reason
        assert node.set_parameters([Parameter("execution.blend", value="ensemble")])[0].successful
        assert b.config.execution.blend == "ensemble"
    finally:
        node.destroy_node()


def _flatten(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def test_executor_yaml_parameters_are_declared():
    import yaml

    path = ROOT / "config" / "executor.yaml"
    data = yaml.safe_load(path.read_text())
    params = set(_flatten(data["executor_node"]["ros__parameters"]))
    declared = set(dataclass_parameter_names(ExecutorNodeConfig))
    assert params - {"use_sim_time"} <= declared, params - declared
    assert declared <= params, f"not in executor.yaml: {declared - params}"


@dataclass
class Strict:
    """No __post_init__: choices and strict bounds are enforced by the parameter binding alone."""

    mode: str = field(default="a", metadata={"help": "mode", "choices": ("a", "b")})
    period: float = field(default=1.0, metadata={"help": "period (s)", "min": 0.0,
                                                 "min_exclusive": True})
    count: int = field(default=2, metadata={"help": "count", "min": 0, "min_exclusive": True,
                                            "max": 10})


def test_choices_and_strict_bounds_enforced_on_set(ros):
    node = _node("p6")
    try:
        b = DataclassParameters(node, Strict)
        d = node.describe_parameter("mode")
        assert d.additional_constraints == "one of: a, b"
        assert "must be > 0.0" in node.describe_parameter("period").additional_constraints
        assert node.describe_parameter("count").integer_range[0].from_value == 1
        r = node.set_parameters([Parameter("mode", value="c")])[0]
        assert not r.successful and "mode must be one of ('a', 'b')" in r.reason
        r = node.set_parameters([Parameter("period", value=0.0)])[0]  # inside the ROS range
        assert not r.successful and r.reason == "period must be > 0.0, got 0.0"
        assert node.set_parameters([Parameter("mode", value="b")])[0].successful
        assert node.set_parameters([Parameter("period", value=0.5)])[0].successful
        assert (b.config.mode, b.config.period) == ("b", 0.5)
    finally:
        node.destroy_node()

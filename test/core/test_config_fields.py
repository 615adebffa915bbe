"""ate_ros.core.config_fields: the one field walk and the validation every config runs.

The bound tests are parametrised from the walk over every config dataclass, so a field that gets
a bound (or a new rate, period, duration or count field) is covered without editing this file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import pytest

from ate_ros.core.config_fields import (
    FieldInfo,
    bound_text,
    check_value,
    validate_fields,
    walk_fields,
)


@dataclass
class Inner:
    gain: float = field(default=0.5, metadata={"help": "a gain", "min": 0.0, "max": 1.0})

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass
class Outer:
    rate_hz: float = field(default=10.0, metadata={"help": " rate ", "min": 0.0,
                                                   "min_exclusive": True})
    mode: str = field(default="x", metadata={"choices": ("x", "y"), "read_only": True})
    limit: float | None = field(default=None, metadata={"min": 0.0})
    widths: list[int] = field(default_factory=lambda: [1, 2], metadata={"min": 1})
    hidden: int = field(default=0, metadata={"ros": False})
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        validate_fields(self)


def test_walk_flattens_nested_configs_and_reads_metadata() -> None:
    infos = {f.name: f for f in walk_fields(Outer)}
    assert list(infos) == ["rate_hz", "mode", "limit", "widths", "hidden", "inner.gain"]
    rate = infos["rate_hz"]
    assert (rate.type, rate.default, rate.help, rate.min, rate.min_exclusive) == (
        float, 10.0, "rate", 0.0, True)
    assert infos["mode"].choices == ("x", "y") and infos["mode"].read_only
    assert infos["limit"].optional and infos["limit"].type is float
    assert infos["widths"].is_list and infos["widths"].element_type is int
    assert infos["widths"].default == [1, 2]
    gain = infos["inner.gain"]
    assert gain.path == ("inner", "gain") and gain.owner is Inner and gain.max == 1.0
    assert gain.default == 0.5

    @dataclass
    class Parent:
        tuned: Inner = field(default_factory=lambda: Inner(gain=0.25))

    assert [(f.name, f.default) for f in walk_fields(Parent)] == [("tuned.gain", 0.25)]
    assert [f.name for f in walk_fields(Outer, "n.", ros_only=True)] == [
        "n.rate_hz", "n.mode", "n.limit", "n.widths", "n.inner.gain"]


def test_validation_names_the_field_and_the_bound() -> None:
    with pytest.raises(ValueError, match=r"^rate_hz must be > 0.0, got 0.0$"):
        Outer(rate_hz=0.0)
    with pytest.raises(ValueError, match=r"^rate_hz must be > 0.0, got nan$"):
        Outer(rate_hz=math.nan)
    with pytest.raises(ValueError, match=r"^mode must be one of \('x', 'y'\), got 'z'$"):
        Outer(mode="z")
    with pytest.raises(ValueError, match=r"^widths must be >= 1, got 0$"):
        Outer(widths=[3, 0])
    with pytest.raises(ValueError, match=r"^gain must be in \[0.0, 1.0\], got 1.5$"):
        Outer(inner=Inner(gain=1.5))
    with pytest.raises(ValueError, match="limit must be >= 0.0"):
        Outer(limit=-1.0)
    ok = Outer(rate_hz=1e-9, mode="y", limit=None, widths=[])
    assert ok.rate_hz == 1e-9 and ok.limit is None


def test_bound_text_and_strict_upper_bounds() -> None:
    def info(**md) -> FieldInfo:
        @dataclass
        class C:
            x: float = field(default=0.5, metadata=md)
        return next(walk_fields(C))

    assert bound_text(info(min=0.0, max=1.0, max_exclusive=True)) == "in [0.0, 1.0)"
    assert bound_text(info(max=2)) == "<= 2"
    check_value(info(min=0.0, max=1.0, max_exclusive=True), 0.0)
    with pytest.raises(ValueError, match=r"x must be in \[0.0, 1.0\), got 1.0"):
        check_value(info(min=0.0, max=1.0, max_exclusive=True), 1.0)
    with pytest.raises(ValueError, match="x must be < 2"):
        check_value(info(max=2, max_exclusive=True), 2)
    with pytest.raises(ValueError, match="x must be >= 0"):
        check_value(info(min=0), True)  # a bool is not a number here


# ----- every config dataclass --------------------------------------------------------------
def _configs() -> dict[type, dict]:
    """Each config class with the smallest valid constructor arguments."""
    from ate_ros.core.align.configuration_vae import AlignConfig, StageConfig, VAEConfig
    from ate_ros.core.data.convert.spec import ConversionSpec
    from ate_ros.core.deploy.configs import (
        PerceptionConfig,
        PolicyNodeConfig,
        SensorInputsConfig,
        SimRobotConfig,
    )
    from ate_ros.core.execution.config import ExecutionConfig, ExecutorNodeConfig
    from ate_ros.core.sim.experts import ExpertConfig
    from ate_ros.core.steer.guidance import GuidanceConfig
    from ate_ros.core.steer.lerobot.finetune import LeRobotFinetuneConfig
    from ate_ros.core.steer.policies.configuration_vla import VLAConfig
    from ate_ros.core.steer.rtc.configuration_rtc import RTCConfig
    from ate_ros.core.steer.trainer import FinetuneConfig, PretrainConfig
    from ate_ros.core.training.config import TrainConfig
    from ate_ros.core.viz.chunk_paths import ChunkVizConfig

    train = {"data": ["d"], "out": "o"}
    return {
        SensorInputsConfig: {}, PerceptionConfig: {}, PolicyNodeConfig: {}, SimRobotConfig: {},
        ExecutionConfig: {}, ExecutorNodeConfig: {}, RTCConfig: {}, ConversionSpec: {},
        TrainConfig: train, PretrainConfig: train,
        FinetuneConfig: {**train, "policy_path": "p", "vae": "v"},
        GuidanceConfig: {}, VLAConfig: {}, VAEConfig: {}, StageConfig: {},
        AlignConfig: {"out": "o", "pretrain": ["p"], "embodiment_pre": ["e"]},
        LeRobotFinetuneConfig: {"policy_path": "p", "data": "d", "out": "o", "vae": "v"},
        ExpertConfig: {}, ChunkVizConfig: {},
    }


CONFIGS = _configs()


def _build(cls: type, **overrides):
    """Construct ``cls`` and run its validation (training configs validate on demand)."""
    config = cls(**{**CONFIGS[cls], **overrides})
    if hasattr(config, "validate"):
        config.validate()
    return config


def _own_fields(cls: type) -> list[FieldInfo]:
    return [f for f in walk_fields(cls) if len(f.path) == 1]


def _numeric(f: FieldInfo) -> bool:
    return f.element_type in (int, float)


BOUNDED = [pytest.param(cls, f, id=f"{cls.__name__}.{f.name}")
           for cls in CONFIGS for f in _own_fields(cls) if _numeric(f) and f.has_bounds]
CHOICES = [pytest.param(cls, f, id=f"{cls.__name__}.{f.name}")
           for cls in CONFIGS for f in _own_fields(cls) if f.choices is not None]
QUANTITY = re.compile(r"(rate|_hz|period|duration|timeout|_age|age_s|steps|every|episodes|"
                      r"epochs|size|workers|frames|samples|horizon|patience|history|_dim|layers|"
                      r"heads|tokens|length|channels|grid|threads|lr$|factor|lag|margin|decay|slots|d_model|"
                      r"hidden|skew|tolerance|accel|memory)")
QUANTITIES = [pytest.param(cls, f, id=f"{cls.__name__}.{f.name}")
              for cls in CONFIGS for f in _own_fields(cls)
              if _numeric(f) and QUANTITY.search(f.name)]


@pytest.mark.parametrize("cls", list(CONFIGS), ids=lambda c: c.__name__)
def test_defaults_are_valid(cls: type) -> None:
    _build(cls)


@pytest.mark.parametrize(("cls", "info"), QUANTITIES)
def test_rates_durations_and_counts_are_bounded_below(cls: type, info: FieldInfo) -> None:
    """Every rate, period, duration and count (found by its name) declares a lower bound of at
    least 0, so negative values never pass; those that may be 0 (a count of none, ``0 = off``)
    say so with an inclusive ``min: 0``, the others are ``> 0`` or ``>= 1``."""
    assert info.min is not None and info.min >= 0, (
        f"{cls.__name__}.{info.name} needs metadata min (>= 0, or min_exclusive)")
    with pytest.raises(ValueError, match=re.escape(f"{info.name} must be")):
        _build(cls, **{info.name: [-1] if info.is_list else -1})


@pytest.mark.parametrize(("cls", "info"), BOUNDED)
def test_values_outside_the_bounds_are_refused(cls: type, info: FieldInfo) -> None:
    step = 1 if info.element_type is int else 1.0
    bad = []
    if info.min is not None:
        bad += [info.min - step, -abs(info.min) - 1e3 * step] + (
            [info.min] if info.min_exclusive else [])
        if info.min_exclusive and info.min == 0:
            bad.append(0 * step)
    if info.max is not None:
        bad += [info.max + step] + ([info.max] if info.max_exclusive else [])
    if info.element_type is int:
        bad = [int(v) for v in bad]
    for value in bad:
        v = [value] if info.is_list else value
        with pytest.raises(ValueError, match=re.escape(f"{info.name} must be {bound_text(info)}")):
            _build(cls, **{info.name: v})


@pytest.mark.parametrize(("cls", "info"), CHOICES)
def test_values_outside_the_choices_are_refused(cls: type, info: FieldInfo) -> None:
    bogus = "__bogus__" if info.element_type is str else -12345
    with pytest.raises(ValueError, match=re.escape(f"{info.name} must be one of")):
        _build(cls, **{info.name: bogus})
    for choice in info.choices:
        if choice is not None:
            check_value(info, choice)  # every listed choice passes the field's own check

"""What a resume compares (:func:`ate_ros.core.training.output_guard.differing_settings`): a
setting the saved run lacks stands for its default; real differences are named."""

from __future__ import annotations

from dataclasses import dataclass, field

from ate_ros.core.training.output_guard import differing_settings, field_defaults


@dataclass
class _Inner:
    width: int = 3


@dataclass
class _Config:
    data: list[str]
    lr: float = 1e-4
    key: str = "auto"
    names: list[str] = field(default_factory=lambda: ["a"])
    inner: _Inner = field(default_factory=_Inner)


def test_field_defaults_as_asdict_records_them():
    assert field_defaults(_Config) == {"lr": 1e-4, "key": "auto", "names": ["a"],
                                       "inner": {"width": 3}}


def test_a_missing_setting_is_its_default_and_other_values_still_differ():
    defaults = field_defaults(_Config)
    now = {"data": ["d"], "lr": 1e-4, "key": "auto", "names": ["a"], "inner": {"width": 3}}
    older = {k: v for k, v in now.items() if k not in ("key", "inner")}  # before they existed
    assert differing_settings(older, now, defaults=defaults) == []
    assert differing_settings(older, {**now, "key": "qpos"}, defaults=defaults) == [
        "key: 'auto' then, 'qpos' now"]
    # without defaults a missing setting is None, as before
    assert differing_settings(older, now) == ["inner: None then, {'width': 3} now",
                                              "key: None then, 'auto' now"]
    assert differing_settings({**now, "lr": 3e-4}, now, defaults=defaults) == [
        "lr: 0.0003 then, 0.0001 now"]
    assert differing_settings({**now, "lr": 3e-4}, now, ignored=["lr"]) == []

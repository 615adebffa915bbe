"""Options derived from config dataclasses (``ate_ros.commands.arguments``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from ate_ros.commands.arguments import add_dataclass_options, dataclass_kwargs
from ate_ros.commands.pretrain import add_common_arguments, common_config
from ate_ros.core.training.config import TrainConfig


@dataclass
class _Toy:
    data: list[str] = field(metadata={"help": "folders"})
    batch_size: int = 32
    mode: str = field(default="a", metadata={"choices": ("a", "b"), "help": "the mode"})
    limit: float | None = None
    resume: bool = False
    amp: bool = field(default=True, metadata={"help_off": "disable amp"})
    internal: int = field(default=7, metadata={"cli": False})


def _parser(**kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_dataclass_options(p, _Toy, **kw)
    return p


def test_types_flags_defaults_and_round_trip():
    args = _parser().parse_args(["--data", "x, y", "--batch-size", "8", "--limit", "0.5",
                                 "--resume", "--no-amp"])
    assert dataclass_kwargs(_Toy, args) == {"data": ["x", "y"], "batch_size": 8, "mode": "a",
                                            "limit": 0.5, "resume": True, "amp": False}
    defaults = dataclass_kwargs(_Toy, _parser().parse_args(["--data", "x"]))
    assert defaults == {"data": ["x"], "batch_size": 32, "mode": "a", "limit": None,
                        "resume": False, "amp": True}
    assert _Toy(**defaults).internal == 7  # cli: False stays off the command line


def test_required_choices_overrides_and_help():
    p = _parser(defaults={"batch_size": 4})
    with pytest.raises(SystemExit):
        p.parse_args([])  # --data is required (no default)
    with pytest.raises(argparse.ArgumentError):
        p.parse_args(["--data", "x", "--mode", "c"])
    assert p.parse_args(["--data", "x"]).batch_size == 4
    assert not hasattr(p.parse_args(["--data", "x"]), "internal")
    text = p.format_help()
    assert "the mode" in text and "disable amp" in text and "--internal" not in text


def test_train_config_options_build_the_config():
    p = argparse.ArgumentParser()
    add_common_arguments(p, TrainConfig, defaults={"steps": 2000, "lr": 1e-4})
    args = p.parse_args(["--data", "a,b", "--out", "o", "--no-progress", "--patience", "3",
                         "--overwrite"])
    cfg = TrainConfig(**common_config(args, TrainConfig))
    assert (cfg.data, cfg.out, cfg.steps, cfg.lr) == (["a", "b"], "o", 2000, 1e-4)
    assert cfg.show_progress is False and cfg.amp is True and cfg.patience == 3
    assert cfg.overwrite is True
    assert (args.no_amp, args.no_progress) == (False, True)  # the dests commands read


@dataclass(kw_only=True)
class _Shapes:
    src: list[str] = field(metadata={"positional": True, "nargs": "+", "help": "inputs"})
    out: str = field(default="", metadata={"flag": ["-o", "--out"], "help": "output"})
    ray: str | None = field(default=None, metadata={"nargs": "?", "const": "local",
                                                    "help": "address"})
    dirs: list[str] = field(default_factory=list, metadata={"action": "append", "help": "d"})
    topics: dict[str, str] = field(default_factory=dict, metadata={
        "flag": "--topic", "metavar": "NAME=TOPIC", "help": "topics"})
    codec: str | None = field(default=None, metadata={"choices": (None, "lzf"), "help": "c"})
    dry: bool | None = field(default=None, metadata={"help": "dry"})
    count: int = field(default=3, metadata={"min": 1, "max": 5, "help": "count"})


def _shapes(argv: list[str]) -> tuple[argparse.ArgumentParser, dict]:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_dataclass_options(p, _Shapes)
    return p, dataclass_kwargs(_Shapes, p.parse_args(argv))


def test_positional_alias_append_pairs_none_word_and_optional_switch():
    _, kw = _shapes(["a", "b"])
    assert kw == {"src": ["a", "b"], "out": "", "ray": None, "dirs": [], "topics": {},
                  "codec": None, "dry": None, "count": 3}
    _, kw = _shapes(["a", "-o", "x.png", "--ray", "--dirs", "m1", "--dirs", "m2", "--topic",
                     "front=/cam", "--codec", "lzf", "--no-dry", "--count", "5"])
    assert kw == {"src": ["a"], "out": "x.png", "ray": "local", "dirs": ["m1", "m2"],
                  "topics": {"front": "/cam"}, "codec": "lzf", "dry": False, "count": 5}
    assert _shapes(["a", "--codec", "none", "--dry"])[1] == {
        **_shapes(["a"])[1], "dry": True}
    with pytest.raises(argparse.ArgumentTypeError, match="--topic expects NAME=TOPIC"):
        _shapes(["a", "--topic", "front"])


def test_range_metadata_is_checked_and_shown():
    p, _ = _shapes(["a"])
    with pytest.raises(argparse.ArgumentError, match=r"value must be in \[1, 5\], got 6"):
        p.parse_args(["a", "--count", "6"])
    with pytest.raises(argparse.ArgumentError, match="invalid int value"):
        p.parse_args(["a", "--count", "x"])
    assert "in [1, 5]" in " ".join(p.format_help().split())


def test_a_strict_bound_of_the_config_is_the_command_line_bound():
    """``rate_hz`` must be > 0 (``min_exclusive``): ``--rate 0`` is refused by argparse with
    the config's own message, as ``ConversionSpec(rate_hz=0)`` is."""
    from ate_ros.core.data.convert.spec import ConversionSpec

    p = argparse.ArgumentParser(exit_on_error=False)
    add_dataclass_options(p, ConversionSpec, only=("rate_hz",))
    with pytest.raises(argparse.ArgumentError, match="must be > 0"):
        p.parse_args(["--rate", "0"])
    with pytest.raises(ValueError, match="rate_hz must be > 0"):
        ConversionSpec(rate_hz=0.0)
    assert p.parse_args(["--rate", "0.5"]).rate_hz == 0.5


@dataclass
class _Base:
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate"})
    nested: _Toy | None = None


@dataclass
class _Derived(_Base):
    lr: float = 1e-4


def test_redeclared_field_keeps_its_help_and_only_names_known_fields():
    p = argparse.ArgumentParser()
    add_dataclass_options(p, _Derived, only=("lr",))
    assert p.parse_args([]).lr == 1e-4
    assert "peak learning rate" in p.format_help()
    with pytest.raises(TypeError, match="no fields"):
        add_dataclass_options(argparse.ArgumentParser(), _Derived, only=("lr", "typo"))

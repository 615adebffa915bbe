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
    add_common_arguments(p, steps=2000, lr=1e-4)
    args = p.parse_args(["--data", "a,b", "--out", "o", "--no-progress", "--patience", "3"])
    cfg = TrainConfig(**common_config(args))
    assert (cfg.data, cfg.out, cfg.steps, cfg.lr) == (["a", "b"], "o", 2000, 1e-4)
    assert cfg.show_progress is False and cfg.amp is True and cfg.patience == 3
    assert (args.no_amp, args.no_progress) == (False, True)  # the dests commands read

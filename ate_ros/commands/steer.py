"""``ate-ros steer``: fine-tune a policy on adaptation data with ATE latent guidance."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from ate_ros.commands.arguments import add_dataclass_options, dataclass_kwargs, error, interrupted
from ate_ros.commands.pretrain import add_common_arguments, common_config

GUIDANCE_FIELDS = ("scale", "clamp", "clamp_mode", "direction")
"""The ``GuidanceConfig`` fields ``ate-ros steer`` sets from the command line."""


@dataclass(kw_only=True)
class SteerOptions:
    """The option of ``ate-ros steer`` that is no config field: guidance on or off."""

    guidance: str = field(default="on", metadata={
        "choices": ("on", "off"),
        "help": "off: direct fine-tuning baseline (exactly the plain loss)"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ate_ros.core.steer.guidance import GuidanceConfig
    from ate_ros.core.steer.trainer import FinetuneConfig

    add_common_arguments(parser, FinetuneConfig, defaults={"steps": 2000},
                         required=("policy_path",))
    add_dataclass_options(parser, SteerOptions)
    add_dataclass_options(parser, GuidanceConfig, only=GUIDANCE_FIELDS)


def _guidance(args: argparse.Namespace):
    from ate_ros.core.steer.guidance import GuidanceConfig

    return GuidanceConfig(enabled=args.guidance == "on",
                          **dataclass_kwargs(GuidanceConfig, args, only=GUIDANCE_FIELDS))


def run(args: argparse.Namespace) -> int:
    from ate_ros.core.lerobot_compat import is_lerobot_spec

    if is_lerobot_spec(args.policy_path):
        return run_lerobot(args)
    from ate_ros.core.data.policy_dataset import PolicyDatasetError
    from ate_ros.core.embodiment import EmbodimentError
    from ate_ros.core.steer.trainer import FinetuneConfig, finetune_policy, format_summary
    from ate_ros.core.training.files import CheckpointError
    from ate_ros.core.training.output_guard import resume_dir

    try:
        cfg = FinetuneConfig(guidance=_guidance(args), **common_config(args, FinetuneConfig))
        out = finetune_policy(cfg)
    except KeyboardInterrupt:
        return interrupted("steer", args, resume_dir(args.out))
    except (ValueError, FileNotFoundError, PolicyDatasetError, EmbodimentError,
            CheckpointError) as exc:
        return error("steer", exc)
    print(f"policy written to {out}")
    print(format_summary(out))
    return 0


def run_lerobot(args: argparse.Namespace) -> int:
    """``--policy lerobot:<dir>``: LeRobot's policy, processors and data, our guided loss."""
    from ate_ros.core.lerobot_compat import LeRobotUnavailable, lerobot_path
    from ate_ros.core.steer.lerobot.finetune import LeRobotFinetuneConfig, finetune_lerobot_policy
    from ate_ros.core.training.files import CheckpointError
    from ate_ros.core.training.runtime import select_device

    if len(args.data) != 1:
        return error("steer", "a LeRobot policy fine-tunes on one --data folder")
    try:
        cfg = LeRobotFinetuneConfig(
            policy_path=str(lerobot_path(args.policy_path)), data=args.data[0], out=args.out,
            vae=args.vae, guidance=_guidance(args), steps=args.steps, batch_size=args.batch_size,
            lr=args.lr, seed=args.seed, device=str(select_device(args.device)),
            log_every=args.log_every)
        out = finetune_lerobot_policy(cfg)
    except (ValueError, FileNotFoundError, LeRobotUnavailable, CheckpointError) as exc:
        return error("steer", exc)
    print(f"LeRobot policy written to {out}")
    return 0

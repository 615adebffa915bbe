"""``ate-ros pretrain``: train the compact VLA policy on pre-training embodiments."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from ate_ros.commands.arguments import (
    add_dataclass_options,
    add_overwrite_argument,
    dataclass_kwargs,
    error,
    interrupted,
)

OBSERVATION_TRACKS = ("image", "low_dim", "image+low_dim")
POLICY_FIELDS = ("head", "prediction_type", "flow_convention", "chunk_size", "camera_names",
                 "action_mode", "n_action_steps", "env_object_slots", "env_slot_size",
                 "image_size", "d_model", "n_layers", "vision_pool", "vision_grid",
                 "instruction_keypoints", "state_dropout", "goal_loss_weight",
                 "num_inference_steps", "text_encoder")
"""The ``VLAConfig`` fields ``ate-ros pretrain`` sets from the command line."""


@dataclass(kw_only=True)
class PretrainOptions:
    """The option of ``ate-ros pretrain`` that is no config field: the observation track."""

    observation: str = field(default="image", metadata={
        "choices": OBSERVATION_TRACKS,
        "help": "what the policy reads besides joints and instruction: camera images, the "
                "low-dimensional environment state recorded with the episodes (object "
                "positions), or both"})


def add_common_arguments(parser: argparse.ArgumentParser, config: type, **kw: Any) -> None:
    """Options shared with ``ate-ros steer``: the fields of its ``TrainConfig`` subclass
    ``config`` (nested configs left out; ``kw`` as for ``add_dataclass_options``), and
    --overwrite."""
    add_dataclass_options(parser, config, **kw)
    add_overwrite_argument(parser)


def common_config(args: argparse.Namespace, config: type) -> dict:
    """The ``config`` (a ``TrainConfig`` subclass) arguments of the parsed options."""
    return {**dataclass_kwargs(config, args), "overwrite": args.overwrite}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ate_ros.core.steer.policies.configuration_vla import VLAConfig
    from ate_ros.core.steer.trainer import PretrainConfig

    add_common_arguments(parser, PretrainConfig)
    add_dataclass_options(parser, PretrainOptions)
    add_dataclass_options(parser, VLAConfig, only=POLICY_FIELDS)


def env_state_width(data_dirs: list[str]) -> int:
    """Width of the environment state in the first training episode of ``data_dirs``."""
    from ate_ros.core.data.episode_format import episode_paths, read_episode

    ep = read_episode(episode_paths(data_dirs[0], "train")[0], load_images=False)
    if ep.env_state is None:
        raise ValueError(f"{data_dirs[0]}: episodes hold no environment_state; the low_dim "
                         "track needs it (sim-record writes it)")
    return int(ep.env_state.shape[1])


def run(args: argparse.Namespace) -> int:
    from ate_ros.core.data.policy_dataset import PolicyDatasetError
    from ate_ros.core.embodiment import EmbodimentError
    from ate_ros.core.steer.policies import VLAConfig
    from ate_ros.core.steer.trainer import PretrainConfig, format_summary, pretrain_policy
    from ate_ros.core.training.files import CheckpointError
    from ate_ros.core.training.output_guard import resume_dir

    try:
        low_dim = "low_dim" in args.observation
        policy = VLAConfig(**{
            **dataclass_kwargs(VLAConfig, args, only=POLICY_FIELDS),
            # the observation track decides what the policy reads
            "camera_names": args.camera_names if "image" in args.observation else [],
            "env_state_dim": env_state_width(args.data) if low_dim else 0,
            "env_object_slots": args.env_object_slots if low_dim else 0})
        out = pretrain_policy(PretrainConfig(policy=policy,
                                             **common_config(args, PretrainConfig)))
    except KeyboardInterrupt:
        return interrupted("pretrain", args, resume_dir(args.out))
    except (ValueError, FileNotFoundError, PolicyDatasetError, EmbodimentError,
            CheckpointError) as exc:
        return error("pretrain", exc)
    print(f"policy written to {out}")
    print(format_summary(out))
    return 0

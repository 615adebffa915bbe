"""``ate-ros pretrain``: train the compact VLA policy on pre-training embodiments."""

from __future__ import annotations

import argparse

from ate_ros.commands.arguments import (
    add_dataclass_options,
    add_overwrite_argument,
    csv_list,
    dataclass_kwargs,
    error,
    interrupted,
)


def add_common_arguments(parser: argparse.ArgumentParser, steps: int, lr: float) -> None:
    """Options shared with ``ate-ros steer``: the fields of ``TrainConfig``, and --overwrite."""
    from ate_ros.core.training.config import TrainConfig

    add_dataclass_options(parser, TrainConfig, defaults={"steps": steps, "lr": lr})
    add_overwrite_argument(parser)


def common_config(args: argparse.Namespace) -> dict:
    """The ``TrainConfig`` arguments of the parsed options."""
    from ate_ros.core.training.config import TrainConfig

    return {**dataclass_kwargs(TrainConfig, args), "overwrite": args.overwrite}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, steps=3000, lr=3e-4)
    parser.add_argument("--head", default="diffusion", choices=("diffusion", "flow"))
    parser.add_argument("--prediction", default="epsilon", choices=("epsilon", "sample"),
                        help="diffusion head output")
    parser.add_argument("--flow-convention", default="openpi", choices=("openpi", "paper"))
    parser.add_argument("--chunk", type=int, default=16, help="chunk size H")
    parser.add_argument("--cameras", type=csv_list, default=["front"])
    parser.add_argument("--observation", default="image", choices=OBSERVATION_TRACKS,
                        help="what the policy reads besides joints and instruction: camera "
                             "images, the low-dimensional environment state recorded with the "
                             "episodes (object positions), or both")
    parser.add_argument("--action-mode", default="absolute", choices=("absolute", "relative"),
                        help="predict joint targets, or offsets from the observed joint state")
    parser.add_argument("--n-action-steps", type=int, default=0,
                        help="chunk points executed before the next chunk (receding horizon; "
                             "0: the executor's replan_steps)")
    parser.add_argument("--env-object-slots", type=int, default=0, metavar="S",
                        help="low_dim: the environment state starts with S object slots; one "
                             "token each plus one for the object the instruction names")
    parser.add_argument("--env-slot-size", type=int, default=4,
                        help="values per object slot (default 4: present, dx, dy, dz)")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vision-pool", default="keypoints", choices=("avg", "max", "keypoints"),
                        help="image token pooling (keypoints keep object positions)")
    parser.add_argument("--vision-grid", type=int, default=4,
                        help="image tokens per camera = grid^2")
    parser.add_argument("--instruction-keypoints", action="store_true",
                        help="let the instruction steer the keypoint attention maps (which "
                             "object to locate)")
    parser.add_argument("--state-dropout", type=float, default=0.0,
                        help="probability of hiding a sample's joint state in training")
    parser.add_argument("--goal-loss", type=float, default=0.0,
                        help="weight of the auxiliary episode-goal prediction loss (0: off)")
    parser.add_argument("--vision-init", default=None, metavar="DIR",
                        help="start the image encoder from an `ate-ros pretrain-vision` output "
                             "(same --image-size, --d-model, --vision-pool and --vision-grid)")
    parser.add_argument("--inference-steps", type=int, default=10)
    parser.add_argument("--text-encoder", default="minilm", choices=("minilm", "hash"))


OBSERVATION_TRACKS = ("image", "low_dim", "image+low_dim")


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
        cameras = args.cameras if "image" in args.observation else []
        policy = VLAConfig(head=args.head, prediction_type=args.prediction,
                           flow_convention=args.flow_convention, chunk_size=args.chunk,
                           camera_names=cameras, image_size=args.image_size,
                           env_state_dim=env_state_width(args.data) if low_dim else 0,
                           env_object_slots=args.env_object_slots if low_dim else 0,
                           env_slot_size=args.env_slot_size,
                           action_mode=args.action_mode, n_action_steps=args.n_action_steps,
                           d_model=args.d_model, n_layers=args.layers,
                           vision_pool=args.vision_pool, vision_grid=args.vision_grid,
                           instruction_keypoints=args.instruction_keypoints,
                           state_dropout=args.state_dropout,
                           goal_loss_weight=args.goal_loss,
                           num_inference_steps=args.inference_steps,
                           text_encoder=args.text_encoder)
        out = pretrain_policy(PretrainConfig(policy=policy, vision_init=args.vision_init,
                                             **common_config(args)))
    except KeyboardInterrupt:
        return interrupted("pretrain", args, resume_dir(args.out))
    except (ValueError, FileNotFoundError, PolicyDatasetError, EmbodimentError,
            CheckpointError) as exc:
        return error("pretrain", exc)
    print(f"policy written to {out}")
    print(format_summary(out))
    return 0

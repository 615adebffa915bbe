"""``ate-ros steer``: fine-tune a policy on adaptation data with ATE latent guidance."""

from __future__ import annotations

import argparse

from ate_ros.commands.arguments import error, interrupted
from ate_ros.commands.pretrain import add_common_arguments, common_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, steps=2000, lr=1e-4)
    parser.add_argument("--policy", required=True,
                        help="pre-trained policy folder, or lerobot:<dir> for a LeRobot "
                             "checkpoint (docs/lerobot.md)")
    parser.add_argument("--vae", default=None, help="`ate-ros align` output folder")
    parser.add_argument("--guidance", default="on", choices=("on", "off"),
                        help="off: direct fine-tuning baseline (exactly the plain loss)")
    parser.add_argument("--lambda", dest="lambda_", type=float, default=2.0,
                        help="guidance strength lambda")
    parser.add_argument("--clamp", type=float, default=0.1, help="clamp on the scaled gradient")
    parser.add_argument("--clamp-mode", default="norm", choices=("norm", "element", "none"),
                        help="norm: cap per-sample RMS keeping direction; element: reference")
    parser.add_argument("--direction", default="classifier", choices=("classifier", "paper"),
                        help="sign of the guidance term: textbook classifier guidance (default), "
                             "or the published formulas verbatim, which lowered success in "
                             "bench_adaptation (see ate_ros/core/steer/guidance.py)")
    parser.add_argument("--refit-stats", default="missing", choices=("missing", "all", "none"),
                        help="refit normalisation on slots pre-training never saw / all / none")
    parser.add_argument("--eval-task", default=None, metavar="TASK[,TASK...]",
                        help="simulation task for closed-loop success during fine-tuning")
    parser.add_argument("--eval-episodes", type=int, default=10)


def run(args: argparse.Namespace) -> int:
    from ate_ros.core.lerobot_compat import is_lerobot_spec

    if is_lerobot_spec(args.policy):
        return run_lerobot(args)
    from ate_ros.core.data.policy_dataset import PolicyDatasetError
    from ate_ros.core.embodiment import EmbodimentError
    from ate_ros.core.steer.guidance import GuidanceConfig
    from ate_ros.core.steer.trainer import FinetuneConfig, finetune_policy, format_summary
    from ate_ros.core.training.files import CheckpointError
    from ate_ros.core.training.output_guard import resume_dir

    try:
        guidance = GuidanceConfig(enabled=args.guidance == "on", scale=args.lambda_,
                                  clamp=args.clamp, clamp_mode=args.clamp_mode,
                                  direction=args.direction)
        cfg = FinetuneConfig(policy_path=args.policy, vae=args.vae, guidance=guidance,
                             refit_stats=args.refit_stats, eval_task=args.eval_task,
                             eval_episodes=args.eval_episodes, **common_config(args))
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
    from ate_ros.core.steer.guidance import GuidanceConfig
    from ate_ros.core.steer.lerobot.finetune import LeRobotFinetuneConfig, finetune_lerobot_policy
    from ate_ros.core.training.files import CheckpointError
    from ate_ros.core.training.runtime import select_device

    if len(args.data) != 1:
        return error("steer", "a LeRobot policy fine-tunes on one --data folder")
    try:
        guidance = GuidanceConfig(enabled=args.guidance == "on", scale=args.lambda_,
                                  clamp=args.clamp, clamp_mode=args.clamp_mode,
                                  direction=args.direction)
        cfg = LeRobotFinetuneConfig(
            policy_path=str(lerobot_path(args.policy)), data=args.data[0], out=args.out,
            vae=args.vae, guidance=guidance, steps=args.steps, batch_size=args.batch_size,
            lr=args.lr, seed=args.seed, device=str(select_device(args.device)),
            log_every=args.log_every)
        out = finetune_lerobot_policy(cfg)
    except (ValueError, FileNotFoundError, LeRobotUnavailable, CheckpointError) as exc:
        return error("steer", exc)
    print(f"LeRobot policy written to {out}")
    return 0

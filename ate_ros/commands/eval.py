"""``ate-ros eval``: closed-loop evaluation of a trained policy in the MuJoCo simulation.

Chunks run through the same :class:`ChunkScheduler` as the robot's executor node. Writes
``results.json`` (success rate, 95% Wilson interval, per-episode records, executor counters) and
PNG strips of the first episodes into ``--out``.

``--policy lerobot:<dir>`` evaluates a LeRobot checkpoint the same way (its own processors, its
actions on the embodiment's joints; :mod:`ate_ros.core.deploy.policy_factory`): each chunk's
``n_action_steps`` points are executed before the next one is asked for, as LeRobot's
``select_action`` does, and its observation history restarts with every episode.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ate_ros.core.execution.config import CHUNKING_MODES

    parser.add_argument("--policy", required=True,
                        help="policy folder (as saved by training), or lerobot:<dir> for a "
                             "LeRobot checkpoint (docs/lerobot.md)")
    parser.add_argument("--embodiment", required=True,
                        help="simulated arm: sim_arm6, sim_arm5, sim_arm7 or a YAML path")
    parser.add_argument("--task", required=True, help="reach, push or pick_color")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes")
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed")
    parser.add_argument("--out", required=True, help="folder for results.json and PNG strips")
    parser.add_argument("--num-steps", type=int, default=None,
                        help="denoising/integration steps (default: the policy's)")
    parser.add_argument("--render-episodes", type=int, default=3,
                        help="episodes saved as PNG strips")
    parser.add_argument("--blend", choices=("replace", "crossfade", "ensemble"),
                        default="crossfade", help="how new chunks join the plan (sync "
                                                  "chunking)")
    parser.add_argument("--inference-delay", type=int, default=0, metavar="D",
                        help="control periods the policy takes per chunk, simulated on the "
                             "stepped clock (the arm keeps moving meanwhile unless --chunking "
                             "sync)")
    parser.add_argument("--chunking", choices=CHUNKING_MODES,
                        default="sync",
                        help="sync: the arm holds while the policy runs; the others run it "
                             "beside execution with that executor blend (rtc: real-time "
                             "chunking, the policy inpaints the committed prefix)")
    parser.add_argument("--replan-steps", type=int, default=None,
                        help="request a new chunk when fewer planned points remain (default: "
                             "chunk size minus the policy's n_action_steps when it sets them, "
                             "else 4)")
    parser.add_argument("--device", default="cpu", help="torch device for the policy")


def run(args: argparse.Namespace) -> int:
    import shutil
    from dataclasses import replace
    from pathlib import Path

    from ate_ros.commands.arguments import error
    from ate_ros.core.deploy.policy_factory import load_run_policy
    from ate_ros.core.lerobot_compat import LeRobotUnavailable
    from ate_ros.core.sim.env import check_sim_inputs
    from ate_ros.core.sim.evaluate import default_execution, evaluate_policy, supports_rtc
    from ate_ros.core.training.files import CheckpointError

    # Arguments, embodiment, task and policy are checked before --out is created.
    for name in ("episodes", "render_episodes", "inference_delay"):
        if getattr(args, name) < (1 if name == "episodes" else 0):
            return error("eval", f"--{name.replace('_', '-')} must be >= "
                                 f"{1 if name == 'episodes' else 0}, got {getattr(args, name)}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        return error("eval", f"--out {args.out} is a file, not a folder")
    try:
        embodiment = check_sim_inputs(args.embodiment, args.task)
        policy = load_run_policy(args.policy, embodiment, device=args.device,
                                 num_steps=args.num_steps)
    except (ValueError, FileNotFoundError, CheckpointError, LeRobotUnavailable) as exc:
        # PolicyFeatureError, EmbodimentError and ArmSpecError are ValueErrors naming what is
        # missing.
        return error("eval", exc)
    if args.chunking == "rtc" and not supports_rtc(policy):
        return error("eval", f"--chunking rtc needs a policy that takes a committed prefix "
                             f"({args.policy} does not)")
    out = Path(args.out)
    try:
        execution = replace(default_execution(policy), blend=args.blend)
        if args.replan_steps is not None:
            execution = replace(execution, replan_steps=args.replan_steps)
    except ValueError as exc:
        return error("eval", exc)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = evaluate_policy(
            policy, args.embodiment, args.task, episodes=args.episodes, seed=args.seed,
            num_steps=args.num_steps,
            execution=execution,
            render_dir=out, render_episodes=args.render_episodes,
            inference_delay=args.inference_delay, chunking=args.chunking)
    except ValueError as exc:  # a policy/scene mismatch found at the first step
        if created:
            shutil.rmtree(out, ignore_errors=True)
        return error("eval", exc)
    result.save(out / "results.json")
    print(result.summary())
    print(f"results: {out / 'results.json'}")
    return 0

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
from dataclasses import dataclass, field

from ate_ros.commands.arguments import SimTaskOptions, add_dataclass_options
from ate_ros.core.execution.config import BLEND_MODES, CHUNKING_MODES


@dataclass(kw_only=True)
class EvalOptions:
    """The options of ``ate-ros eval`` besides the arm and task: what ``evaluate_policy`` is
    given, and the two executor settings it overrides."""

    policy: str = field(metadata={
        "help": "policy folder (as saved by training), or lerobot:<dir> for a LeRobot checkpoint "
                "(docs/lerobot.md)"})
    episodes: int = field(default=20, metadata={"help": "evaluation episodes"})
    seed: int = field(default=0, metadata={"help": "evaluation seed"})
    out: str = field(metadata={"help": "folder for results.json and PNG strips"})
    num_steps: int | None = field(default=None, metadata={
        "help": "denoising/integration steps (default: the policy's)"})
    render_episodes: int = field(default=3, metadata={"help": "episodes saved as PNG strips"})
    blend: str = field(default="crossfade", metadata={
        "help": "how new chunks join the plan (sync chunking; the executor's execution.blend)",
        "choices": tuple(b for b in BLEND_MODES if b != "rtc")})
    inference_delay: int = field(default=0, metadata={
        "metavar": "D",
        "help": "control periods the policy takes per chunk, simulated on the stepped clock (the "
                "arm keeps moving meanwhile unless --chunking sync)"})
    chunking: str = field(default="sync", metadata={
        "choices": CHUNKING_MODES,
        "help": "sync: the arm holds while the policy runs; the others run it beside execution "
                "with that executor blend (rtc: real-time chunking, the policy inpaints the "
                "committed prefix)"})
    replan_steps: int | None = field(default=None, metadata={
        "help": "request a new chunk when fewer planned points remain (the executor's "
                "execution.replan_steps; default: chunk size minus the policy's n_action_steps "
                "when it sets them, else 4)"})
    device: str = field(default="cpu", metadata={"help": "torch device for the policy"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_options(parser, SimTaskOptions)
    add_dataclass_options(parser, EvalOptions)


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

"""``ate-ros demo``: the whole ATE pipeline on the MuJoCo simulation, end to end.

    ate-ros demo [--out demo_out] [--tiny]

1. ``sim-record``   scripted-expert demonstrations as MCAP rosbags: the pre-training arms
                    (``sim_arm6``, ``sim_arm5``) and a few demos of the new robot (``sim_arm7``)
2. ``bag2dataset``  bags -> verified episode datasets (one per arm), then ``verify-dataset``
3. ``align``        stage-1 VAE on the pre-training arms, prior, stage-2 VAE on the new arm
4. ``pretrain-vision``, ``pretrain``   the image encoder on labelled scenes of the pre-training
                    arms, then the compact VLA (image track), and the low-dimensional policy
                    (object positions) on their demonstrations (tiny budgets: they show the steps
                    work; adaptation starts from the committed low-dim checkpoint in
                    ``assets/pretrained_lowdim/`` when present, see its README for the commands)
5. ``steer``        fine-tune on the new arm twice, same steps/seed/data: ATE guidance and direct
6. ``eval``         closed-loop success of pre-trained, direct and ATE policies on the new arm
7. ``run --sim``    the ROS 2 graph (sim robot, perception, policy + OOD monitor, executor) closed
                    loop with the ATE policy over DDS
Every step runs the real ``ate-ros`` subcommand (in-process, or a subprocess for the ROS graph),
so the demo exercises exactly what a user types. A summary table ends the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ate_ros.commands.arguments import add_dataclass_options

PRETRAINED_DIR = Path(__file__).resolve().parents[2] / "assets" / "pretrained_lowdim"


@dataclass(frozen=True)
class DemoProfile:
    """Budgets of one demo size. ``tiny`` runs inside the test suite (< 2 min)."""

    tasks: tuple[str, ...]
    pre_episodes: int          # per pre-training arm and task
    ada_episodes: int          # adaptation demos per task (the "few demonstrations")
    align_epochs: tuple[int, int]
    vision_frames: int         # labelled frames for the demo's image-encoder pre-training
    vision_steps: int
    pretrain_steps: int        # the demo's own pre-training run (tiny budget)
    steer_steps: int
    eval_episodes: int         # per task and policy
    ros_duration: float        # sim seconds of the closed-loop ROS run
    batch_size: int = 32


PROFILES = {
    "tiny": DemoProfile(tasks=("reach",), pre_episodes=3, ada_episodes=4, align_epochs=(2, 2),
                        vision_frames=32, vision_steps=3, pretrain_steps=4, steer_steps=6,
                        eval_episodes=2, ros_duration=3.0,
                        batch_size=8),
    "default": DemoProfile(tasks=("reach", "push", "pick_color"), pre_episodes=6,
                           ada_episodes=10, align_epochs=(20, 40), vision_frames=600,
                           vision_steps=60, pretrain_steps=30,
                           steer_steps=600, eval_episodes=20, ros_duration=12.0),
}


@dataclass(kw_only=True)
class DemoOptions:
    """The options of ``ate-ros demo``."""

    out: str = field(default="demo_out", metadata={"help": "folder for every artefact"})
    tiny: bool = field(default=False, metadata={
        "help": "smallest budgets (CI smoke test, ~1-2 min); numbers mean nothing"})
    pretrained: str = field(default=str(PRETRAINED_DIR), metadata={
        "help": "pre-trained policy to adapt ('' = use the demo's own pretrain run)"})
    skip_ros: bool = field(default=False, metadata={"help": "skip the ROS 2 graph step"})
    device: str = field(default="cpu", metadata={"help": "torch device for training/inference"})
    seed: int = field(default=0, metadata={
        "help": "seed of every step (recording seeds are offset per arm)"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_options(parser, DemoOptions)


class _Pipeline:
    """Runs numbered steps, timing each and stopping at the first failure."""

    def __init__(self, total: int) -> None:
        self.total, self.index, self.timings = total, 0, {}

    def step(self, name: str, argv: list[str]) -> None:
        from ate_ros.cli import main as cli_main

        self.index += 1
        print(f"\n[{self.index}/{self.total}] ate-ros {' '.join(argv)}", flush=True)
        t0 = time.monotonic()
        rc = cli_main(argv)
        self.timings[name] = self.timings.get(name, 0.0) + time.monotonic() - t0
        if rc != 0:
            raise SystemExit(f"demo step '{name}' failed with exit code {rc}")


def _usable_pretrained(path: str) -> Path | None:
    p = Path(path) if path else None
    if p and (p / "config.json").is_file() and any(p.glob("*.safetensors")):
        return p
    return None


DEMO_MARKER = ".ate_ros_demo"


def prepare_output_dir(out: Path) -> None:
    """Start ``out`` empty: an earlier demo's folder (marked) is replaced, anything else that is
    not empty is refused, so a second ``make demo`` works and no user data is deleted."""
    if out.exists() and any(out.iterdir()):
        if not ((out / DEMO_MARKER).is_file() or (out / "summary.json").is_file()):
            raise ValueError(f"{out} is not empty and not an earlier demo's output; "
                             "choose another --out")
        print(f"replacing the earlier demo output in {out}")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text("written by `ate-ros demo`; the next demo replaces it\n")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from ate_ros.core.sim import ADAPT_EMBODIMENT, PRETRAIN_EMBODIMENTS

    prof = PROFILES["tiny" if args.tiny else "default"]
    out = Path(args.out).resolve()
    try:
        prepare_output_dir(out)
    except ValueError as exc:
        print(f"ate-ros demo: error: {exc}")
        return 2
    arms_pre, arm_ada = list(PRETRAIN_EMBODIMENTS), ADAPT_EMBODIMENT
    pretrained = _usable_pretrained(args.pretrained)
    n_steps = (len(arms_pre) + 1) * len(prof.tasks) + (len(arms_pre) + 1) * 2 + 1 + 3 + 2 \
        + 3 * len(prof.tasks) + (0 if args.skip_ros else 1)
    pipe = _Pipeline(n_steps)
    t_start = time.monotonic()
    print(f"ate-ros demo ({'tiny' if args.tiny else 'default'} profile) -> {out}\n"
          f"pre-training arms {arms_pre}, new robot {arm_ada}, tasks {list(prof.tasks)}; "
          f"{prof.ada_episodes} demos per task on the new robot")

    # 1. Demonstrations as real rosbags.
    for arm in [*arms_pre, arm_ada]:
        n = prof.ada_episodes if arm == arm_ada else prof.pre_episodes
        for k, task in enumerate(prof.tasks):
            pipe.step("sim-record", ["sim-record", "--embodiment", arm, "--task", task,
                                     "--episodes", str(n), "--seed", str(args.seed + 100 * k),
                                     "--out", str(out / "bags" / arm / task)])
    # 2. Bags -> datasets, verified.
    data = {}
    for arm in [*arms_pre, arm_ada]:
        data[arm] = out / "data" / arm
        pipe.step("bag2dataset", ["bag2dataset", str(out / "bags" / arm), "--embodiment", arm,
                                  "--out", str(data[arm]), "--overwrite",
                                  "--seed", str(args.seed)])
        pipe.step("verify-dataset", ["verify-dataset", str(data[arm])])
    # 3. Alignment VAEs.
    vae = out / "vae"
    pipe.step("align", ["align", "--pretrain", ",".join(str(data[a]) for a in arms_pre),
                        "--embodiment-pre", ",".join(arms_pre), "--adapt", str(data[arm_ada]),
                        "--embodiment-ada", arm_ada, "--out", str(vae),
                        "--epochs-stage1", str(prof.align_epochs[0]),
                        "--epochs-stage2", str(prof.align_epochs[1]), "--short", "pad",
                        "--no-control", "--device", args.device, "--seed", str(args.seed),
                        "--no-progress"])
    # 4. Pre-training (tiny budget; the committed checkpoint is what we adapt when present).
    vision = out / "vision_encoder"
    pipe.step("pretrain-vision", ["pretrain-vision", "--out", str(vision), "--embodiments",
                                  ",".join(arms_pre), "--tasks", ",".join(prof.tasks),
                                  "--frames", str(prof.vision_frames), "--steps",
                                  str(prof.vision_steps), "--batch-size", str(prof.batch_size),
                                  "--seed", str(args.seed)])
    own_pretrain = out / "policy_pretrain"
    pipe.step("pretrain", ["pretrain", "--data", ",".join(str(data[a]) for a in arms_pre),
                           "--vision-init", str(vision), "--goal-loss", "1.0",
                           "--instruction-keypoints",
                           "--out", str(own_pretrain), "--steps", str(prof.pretrain_steps),
                           "--batch-size", str(prof.batch_size), "--device", args.device,
                           "--seed", str(args.seed), "--no-progress"])
    own_low_dim = out / "policy_pretrain_lowdim"
    pipe.step("pretrain", ["pretrain", "--data", ",".join(str(data[a]) for a in arms_pre),
                           "--observation", "low_dim", "--action-mode", "relative",
                           "--n-action-steps", "8",
                           "--out", str(own_low_dim), "--steps", str(prof.pretrain_steps),
                           "--batch-size", str(prof.batch_size), "--device", args.device,
                           "--seed", str(args.seed), "--no-progress"])
    base = pretrained or own_low_dim
    # 5. Fine-tuning on the new robot: ATE guidance vs direct, same everything else.
    policies = {"pretrained (zero-shot)": base}
    for name, guidance in (("direct fine-tuning", "off"), ("ATE", "on")):
        dst = out / ("policy_ate" if guidance == "on" else "policy_direct")
        pipe.step(f"steer ({guidance})", [
            "steer", "--policy", str(base), "--vae", str(vae), "--data", str(data[arm_ada]),
            "--out", str(dst), "--guidance", guidance, "--steps", str(prof.steer_steps),
            "--batch-size", str(prof.batch_size), "--device", args.device,
            "--seed", str(args.seed), "--no-progress"])
        policies[name] = dst
    # 6. Closed-loop evaluation on the new robot.
    results: dict[str, dict[str, dict]] = {}
    for name, pol in policies.items():
        for task in prof.tasks:
            dst = out / "eval" / pol.name / task
            pipe.step("eval", ["eval", "--policy", str(pol), "--embodiment", arm_ada,
                               "--task", task, "--episodes", str(prof.eval_episodes),
                               "--seed", str(args.seed + 1000), "--out", str(dst),
                               "--render-episodes", "1", "--device", args.device])
            results.setdefault(name, {})[task] = json.loads((dst / "results.json").read_text())
    # 7. The ROS 2 graph, closed loop, with the ATE policy and the OOD monitor.
    ros_summary = None
    if not args.skip_ros:
        ros_json = out / "ros_run.json"
        argv = ["run", "--sim", "--policy", str(policies["ATE"]), "--vae", str(vae),
                "--embodiment", arm_ada, "--task", prof.tasks[0], "--duration",
                str(prof.ros_duration), "--device", args.device, "--json", str(ros_json)]
        pipe.index += 1
        print(f"\n[{pipe.index}/{pipe.total}] ate-ros {' '.join(argv)}", flush=True)
        t0 = time.monotonic()
        # A subprocess: rclpy's global state and DDS threads stay out of this process.
        proc = subprocess.run([sys.executable, "-m", "ate_ros.cli", *argv], timeout=600)
        pipe.timings["ros graph"] = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"demo step 'run --sim' failed with exit code {proc.returncode}")
        ros_summary = json.loads(ros_json.read_text())

    summary = {"profile": "tiny" if args.tiny else "default", "profile_budgets": asdict(prof),
               "pretrained_from": str(base), "results": results, "ros": ros_summary,
               "timings_s": pipe.timings, "total_s": time.monotonic() - t_start,
               "artefacts": {"bags": str(out / "bags"), "datasets": str(out / "data"),
                             "vae": str(vae), "policies": {k: str(v) for k, v in
                                                           policies.items()},
                             "eval": str(out / "eval")}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print_summary(summary, prof)
    return 0


def pooled(per_task: dict[str, dict]) -> tuple[list[int], float, float, float]:
    """Episode outcomes over all tasks, their success rate and 95% Wilson interval."""
    from ate_ros.core.sim.evaluate import wilson_interval

    outcomes = [int(r["success"]) for t in sorted(per_task) for r in per_task[t]["records"]]
    lo, hi = wilson_interval(sum(outcomes), len(outcomes))
    return outcomes, sum(outcomes) / max(len(outcomes), 1), lo, hi


MIN_PAIRS = 150
"""Paired evaluation episodes below which the demo does not conclude either way: at 150 pairs
the 95% interval of a difference between two ~50% success rates is still about +-11 points,
and the demo trains one seed, so its interval holds the evaluation variance only."""


def paired_verdict(ate: list[int], direct: list[int], reps: int = 5000, seed: int = 0,
                   min_pairs: int = MIN_PAIRS) -> str:
    """One sentence: ATE minus direct over the same evaluation episodes, with a paired
    bootstrap 95% interval, and whether the sample is large enough to conclude (the interval
    excludes zero and there are at least ``min_pairs`` pairs)."""
    import numpy as np

    from ate_ros.core.sim.evaluate import paired_bootstrap

    d = np.asarray(ate, float) - np.asarray(direct, float)
    diff, lo, hi = paired_bootstrap([[d]], reps, seed)
    ahead = "ATE" if diff > 0 else "direct" if diff < 0 else "neither"
    small = []
    if lo <= 0 <= hi:
        small.append("the interval includes zero")
    if len(d) < min_pairs:
        small.append(f"{len(d)} paired episodes are fewer than {min_pairs}")
    if small:
        verdict = (f"{ahead} is ahead, but the sample is too small to conclude "
                   f"({' and '.join(small)}; one training seed); "
                   "benchmarks/bench_adaptation.py is the measurement")
    elif lo > 0:
        verdict = ("ATE is better on these episodes, and the interval excludes zero (one "
                   "training seed: evaluation variance only)")
    else:
        verdict = ("direct fine-tuning is better on these episodes, and the interval excludes "
                   "zero (one training seed: evaluation variance only)")
    return (f"ATE - direct = {100 * diff:+.1f} points [95% paired interval {100 * lo:+.0f}, "
            f"{100 * hi:+.0f}] over {len(d)} episodes: {verdict}.")


def print_summary(s: dict, prof: DemoProfile) -> None:
    tasks = list(prof.tasks)
    print("\n" + "=" * 78)
    print(f"ATE demo summary ({s['profile']} profile, {s['total_s'] / 60:.1f} min)")
    print(f"success on the new robot, {prof.eval_episodes} episodes per task "
          "[95% Wilson interval]")
    print(f"{'policy':26s}" + "".join(f"{t:>17s}" for t in tasks))
    for name, per_task in s["results"].items():
        cells = []
        for t in tasks:
            r = per_task[t]
            cells.append(f"{100 * r['success_rate']:5.0f}% [{100 * r['ci_low']:2.0f}-"
                         f"{100 * r['ci_high']:3.0f}]")
        _, rate, lo, hi = pooled(per_task)
        print(f"{name:26s}" + "".join(f"{c:>17s}" for c in cells)
              + f"   all: {100 * rate:3.0f}% [{100 * lo:2.0f}-{100 * hi:3.0f}]")
    res = s["results"]
    if "ATE" in res and "direct fine-tuning" in res:
        print(paired_verdict(pooled(res["ATE"])[0], pooled(res["direct fine-tuning"])[0]))
    if s.get("ros"):
        r = s["ros"]
        ood = r.get("ood_score_mean")
        print(f"ROS graph ({r.get('embodiment')}): {r.get('chunks')} chunks, latency p50 "
              f"{r.get('latency_p50_ms', float('nan')):.1f} ms / p99 "
              f"{r.get('latency_p99_ms', float('nan')):.1f} ms, model p50 "
              f"{r.get('model_time_p50_ms', float('nan')):.1f} ms, OOD score "
              f"{'-' if ood is None else f'{ood:.2f}'}, task success {r.get('success')}")
    print("step times: " + ", ".join(f"{k} {v:.0f}s" for k, v in s["timings_s"].items()))
    print("artefacts: " + ", ".join(f"{k}={v}" for k, v in s["artefacts"].items()
                                    if isinstance(v, str)))
    print("=" * 78)

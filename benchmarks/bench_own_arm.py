"""Own-arm success: does the pre-trained policy do its own tasks on the arms it was trained on?

Before adaptation to a new robot can be judged, the base policy must work where it was trained:
each committed simulation policy is evaluated closed loop (chunks through the executor's
``ChunkScheduler``, MuJoCo physics) for every task on every pre-training arm.

    python benchmarks/bench_own_arm.py                 # 50 episodes per task and arm
    python benchmarks/bench_own_arm.py --quick         # 10 episodes, low-dim policy only
    python benchmarks/bench_own_arm.py --policy assets/pretrained_sim --episodes 16

Prints one row per (policy, arm, task) with the success rate and its 95% Wilson interval, and
writes ``benchmarks/results/own_arm_success[_quick].json``. Evaluation seeds (``--seed``, default
0) are kept apart from the development seed used while choosing the policy's settings (1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_POLICIES = (ROOT / "assets" / "pretrained_lowdim", ROOT / "assets" / "pretrained_sim")
TARGET = 0.8
"""Success each task must reach on each pre-training arm (issue 14)."""


def evaluate_one(policy_dir: str, arm: str, task: str, episodes: int, seed: int) -> dict:
    """One (policy, arm, task) cell; runs in its own process with one torch thread."""
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("MUJOCO_GL", "egl")
    from ate_ros.core.sim import evaluate_policy
    from ate_ros.core.steer.policies import load_policy

    policy = load_policy(policy_dir)
    r = evaluate_policy(policy, arm, task, episodes=episodes, seed=seed)
    return {"policy": Path(policy_dir).name, "arm": arm, "task": task,
            "successes": r.successes, "episodes": r.episodes, "success_rate": r.success_rate,
            "ci95": [r.ci_low, r.ci_high], "mean_steps": r.mean_steps,
            "seconds": round(r.seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--policy", action="append", default=None,
                   help="policy folder (repeatable); default: the committed low-dim and image "
                        "policies")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0, help="evaluation seed")
    p.add_argument("--tasks", default="reach,push,pick_color")
    p.add_argument("--arms", default="", help="comma-separated own arms of the policies "
                   "(default: the committed policies' pre-training arms)")
    p.add_argument("--jobs", type=int, default=2, help="parallel processes (one thread each)")
    p.add_argument("--quick", action="store_true", help="10 episodes, low-dim policy only")
    p.add_argument("--out", default="", help="result JSON (default: benchmarks/results/...)")
    args = p.parse_args(argv)
    from ate_ros.core.sim import PRETRAIN_EMBODIMENTS

    policies = args.policy or [str(DEFAULT_POLICIES[0])] + (
        [] if args.quick else [str(DEFAULT_POLICIES[1])])
    episodes = 10 if args.quick else args.episodes
    missing = [d for d in policies if not (Path(d) / "config.json").is_file()]
    if missing:
        print(f"no policy at {missing}", file=sys.stderr)
        return 2
    arms = args.arms.split(",") if args.arms else PRETRAIN_EMBODIMENTS
    cells = [(d, arm, task) for d in policies for arm in arms
             for task in args.tasks.split(",")]
    t0 = time.monotonic()
    if args.jobs <= 1:
        rows = [evaluate_one(d, a, t, episodes, args.seed) for d, a, t in cells]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            rows = list(pool.map(evaluate_one, *zip(*[(d, a, t, episodes, args.seed)
                                                      for d, a, t in cells])))
    print(f"\nOwn-arm closed-loop success ({episodes} episodes per cell, seed {args.seed})")
    hdr = f"{'policy':20} {'arm':9} {'task':11} {'success':>8} {'95% CI':>13} {'>= 80%':>7}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        lo, hi = r["ci95"]
        ok = "yes" if r["success_rate"] >= TARGET else "no"
        print(f"{r['policy']:20} {r['arm']:9} {r['task']:11} {r['success_rate']:8.0%} "
              f"{f'[{lo:.0%}, {hi:.0%}]':>13} {ok:>7}")
    result = {"benchmark": "own_arm_success", "date": time.strftime("%Y-%m-%d"),
              "machine": f"{platform.machine()} {os.cpu_count()} cpu",
              "command": " ".join(["python benchmarks/bench_own_arm.py",
                                   *(sys.argv[1:] if argv is None else argv)]),
              "episodes": episodes, "seed": args.seed, "target": TARGET, "rows": rows,
              "wall_s": round(time.monotonic() - t0, 1)}
    out = Path(args.out) if args.out else RESULTS / (
        "own_arm_success" + ("_quick" if args.quick else "") + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

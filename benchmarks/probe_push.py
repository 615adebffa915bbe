"""What holds push back? The four suspects of issue #28 item 4, measured on every sim arm.

1. Scripted expert quality: the expert's own success on each arm, and the recorded demos'.
2. Observations: the low-dim policy's environment state names the block (offset from the
   fingertip) and the goal (offset from the block) at every tick of every push demo.
3. Horizon: the expert's completion time (ticks to success) against the episode horizon, and
   the pre-trained low-dim policy on its own arms with the horizon at 8, 12 and 16 s.
4. Success tolerance: the same policy at 8 s with a 5 cm instead of a 3 cm tolerance.

Episode seeds come from their own range (``PROBE_SEED``), apart from every benchmark split.

    python benchmarks/probe_push.py            # ~1 min on 2 cores
    python benchmarks/probe_push.py --episodes 20

Prints a table and writes ``benchmarks/results/probe_push.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from result_meta import result_meta  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROBE_SEED = 90_000
POLICY = ROOT / "assets" / "pretrained_lowdim"
HORIZONS_S = (8.0, 12.0, 16.0)


def expert_completion(arm: str, task: str, episodes: int) -> dict:
    """The expert's success and ticks to success (the held ticks after success not counted)."""
    from ate_ros.core.sim.env import SimEnv
    from ate_ros.core.sim.experts import ScriptedExpert
    from ate_ros.core.sim.recording import episode_seed, rollout_expert

    hold = 6  # rollout_expert's default hold_steps: it records hold + 1 ticks after success
    with SimEnv(arm, task, seed=0) as env:
        expert = ScriptedExpert(env, seed=1)
        ticks, ok = [], []
        for i in range(episodes):
            expert.rng = np.random.default_rng(episode_seed(PROBE_SEED, i, 1))
            r = rollout_expert(env, expert, seed=episode_seed(PROBE_SEED, i), render=False,
                               hold_steps=hold)
            ok.append(r.success)
            if r.success:
                ticks.append(len(r) - hold - 1)
        horizon = env.max_steps
    t = np.asarray(ticks or [horizon])
    return {"arm": arm, "task": task, "episodes": episodes, "expert_success": float(np.mean(ok)),
            "horizon_ticks": horizon, "completion_median": float(np.median(t)),
            "completion_p90": float(np.percentile(t, 90)), "completion_max": int(t.max()),
            "p90_over_horizon": float(np.percentile(t, 90) / horizon)}


def demo_observations(arm: str, episodes: int) -> dict:
    """Recorded push demos: kept (successful) share, and whether the state names the objects."""
    from ate_ros.core.data.episode_format import read_episode
    from ate_ros.core.sim.object_labels import ENV_STATE_NAMES
    from ate_ros.core.sim.recording import record_dataset

    with tempfile.TemporaryDirectory() as tmp:
        s = record_dataset(arm, "push", episodes, tmp, seed=PROBE_SEED, val_fraction=0.0,
                           render=False)
        target = ENV_STATE_NAMES.index("target/present")
        goal = ENV_STATE_NAMES.index("goal/present")
        named, moved = [], []
        for p in s.paths:
            e = read_episode(p)
            st = np.asarray(e.env_state)
            named.append(bool(np.all(st[:, target] == 1) and np.all(st[:, goal] == 1)))
            # The block's offset from the fingertip changes: the state follows the block.
            moved.append(float(np.ptp(st[:, target + 1:target + 3], axis=0).max()))
    return {"arm": arm, "demos": s.written, "attempts": s.attempts,
            "expert_success_rate": s.expert_success_rate,
            "state_names_block_and_goal": bool(all(named)),
            "min_block_offset_range_m": float(min(moved)),
            "demo_ticks_max": int(max(s.lengths))}


def policy_success(arm: str, episodes: int, horizon_s: float, tolerance: float) -> dict:
    """The pre-trained low-dim policy on push with another horizon or tolerance."""
    from ate_ros.core.sim import tasks
    from ate_ros.core.sim.evaluate import evaluate_policy
    from ate_ros.core.steer.policies import load_policy

    saved = tasks.PushTask.time_limit, tasks.PUSH_TOLERANCE
    tasks.PushTask.time_limit, tasks.PUSH_TOLERANCE = horizon_s, tolerance
    try:
        r = evaluate_policy(load_policy(POLICY), arm, "push", episodes=episodes,
                            seed=PROBE_SEED)
    finally:
        tasks.PushTask.time_limit, tasks.PUSH_TOLERANCE = saved
    steps = np.asarray([e.steps for e in r.records])
    ok = np.asarray([e.success for e in r.records])
    return {"arm": arm, "horizon_s": horizon_s, "tolerance_m": tolerance, "episodes": episodes,
            "success": float(ok.mean()), "ci95": [r.ci_low, r.ci_high],
            "success_within_80_ticks": float(np.mean(ok & (steps <= 80))),
            "success_ticks_p90": float(np.percentile(steps[ok], 90)) if ok.any() else None}


def main(argv: list[str] | None = None) -> int:
    from ate_ros.core.sim import PRETRAIN_EMBODIMENTS, SIM_EMBODIMENTS, SIM_TASKS
    from ate_ros.core.sim.tasks import PUSH_TOLERANCE, PushTask

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "probe_push.json"))
    args = p.parse_args(argv)
    n = args.episodes
    expert = [expert_completion(a, t, n) for t in SIM_TASKS for a in SIM_EMBODIMENTS]
    print(f"{'task':10} {'arm':9} expert  horizon  completion median/p90/max  p90/horizon")
    for e in expert:
        print(f"{e['task']:10} {e['arm']:9} {e['expert_success']:6.0%}  {e['horizon_ticks']:7d}"
              f"  {e['completion_median']:6.0f} {e['completion_p90']:4.0f} "
              f"{e['completion_max']:4d}            {e['p90_over_horizon']:.2f}")
    demos = [demo_observations(a, min(n, 20)) for a in SIM_EMBODIMENTS]
    for d in demos:
        print(f"push demos {d['arm']}: {d['demos']} of {d['attempts']} attempts kept, state "
              f"names block and goal: {d['state_names_block_and_goal']}, block offset range "
              f">= {d['min_block_offset_range_m']:.3f} m")
    policy = [policy_success(a, n, h, PUSH_TOLERANCE) for a in PRETRAIN_EMBODIMENTS
              for h in HORIZONS_S]
    policy += [policy_success(a, n, 8.0, 0.05) for a in PRETRAIN_EMBODIMENTS]
    print(f"\npre-trained low-dim policy, push on its own arms (current horizon "
          f"{PushTask.time_limit:g} s, tolerance {PUSH_TOLERANCE} m)")
    for r in policy:
        print(f"{r['arm']:9} horizon {r['horizon_s']:4.0f} s  tolerance {r['tolerance_m']:.2f} m"
              f"  success {r['success']:5.0%} [{r['ci95'][0]:.0%}, {r['ci95'][1]:.0%}]"
              f"  p90 ticks of successes {r['success_ticks_p90']}")
    res = {"benchmark": "probe_push", "meta": {**result_meta(), "seeds": [PROBE_SEED]},
           "horizon_s": {t: float(v) for t, v in _horizons().items()},
           "tolerance_m": PUSH_TOLERANCE, "expert": expert, "demos": demos, "policy": policy}
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


def _horizons() -> dict[str, float]:
    from ate_ros.core.sim.tasks import TASKS

    return {name: cls.time_limit for name, cls in TASKS.items()}


if __name__ == "__main__":
    sys.exit(main())

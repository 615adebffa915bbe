"""Real-time chunking under inference delay: success and smoothness of each chunking mode.

The low-dimensional pre-trained policy does its own-arm tasks closed loop (MuJoCo, chunks
through the executor's ``ChunkScheduler``) while every chunk takes D control periods to
compute, simulated on the stepped clock (``evaluate_policy(inference_delay=D)``), so the
numbers do not depend on this machine's speed. Modes: ``sync`` (the arm holds while the policy
runs), ``replace`` / ``crossfade`` / ``ensemble`` (asynchronous, that executor blend) and
``rtc`` (asynchronous; the sampler inpaints the committed prefix, switch at index D). The sixth
mode, ``rtc_trained``, is training-time RTC: the policy fine-tuned on each arm's own expert
demonstrations with ``VLAConfig.rtc_train_max_delay`` (the first d ~ U(0, d_max) points of a
chunk given clean and left out of the loss), which then conditions on the committed prefix
instead of guided sampling; executed as ``rtc``. Its control, ``rtc_finetuned``, is the same
fine-tuning on the same demonstrations without training-time RTC, run with guided ``rtc`` (what
the fine-tuning alone changes). ``--train-rtc DIR`` records the demonstrations and fine-tunes
(short: ``--train-steps``; ``DIR/<arm>``, the control in ``DIR/finetuned/<arm>``),
``--trained-policy DIR`` reuses them::

    python benchmarks/bench_rtc.py --modes rtc_trained --train-rtc runs/rtc_trained \
        --out benchmarks/results/bench_rtc_trained.json

    python benchmarks/bench_rtc.py                # 3 seeds x 50 episodes, all tasks and arms
    python benchmarks/bench_rtc.py --quick        # 1 seed x 10 episodes, sim_arm6
    python benchmarks/bench_rtc.py --seeds 3 --episodes 20 --arms sim_arm6

One row per (mode, D) over all cells: success with its 95% Wilson interval, mean velocity jump
and mean peak acceleration at chunk switches, RMS jerk of the commands, mean completion time of
successful episodes and the fraction of ticks the arm held. Writes
``benchmarks/results/bench_rtc[_quick].json`` (``meta``, ``rows``, per-cell ``cells``) and a PNG
of one joint around the switches per mode at ``--plot-delay``. Then checks issue 30's targets.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # run as a script, or loaded by path in a test
from result_meta import result_meta  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
POLICY = ROOT / "assets" / "pretrained_lowdim"
MODES = ("sync", "replace", "crossfade", "ensemble", "rtc", "rtc_trained", "rtc_finetuned")
# Fine-tuned modes, run with chunking rtc: their policies per arm under <trained dir>/<sub>/<arm>
# and their training-time RTC d_max (None: --train-max-delay).
TRAINED = {"rtc_trained": ("", None), "rtc_finetuned": ("finetuned", 0)}
DELAYS = (0, 1, 2, 4, 6)
TARGET_DELAY = 4


def run_cell(policy_dir: str, arm: str, task: str, mode: str, delay: int, seed: int,
             episodes: int, traces: int) -> dict:
    """One (arm, task, mode, D, seed) cell; runs in its own process with one torch thread."""
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("MUJOCO_GL", "egl")
    from ate_ros.core.sim import evaluate_policy
    from ate_ros.core.steer.policies import load_policy
    from ate_ros.core.steer.rtc import RTCConfig

    chunking = mode
    if mode in TRAINED:
        policy_dir, chunking = str(Path(policy_dir) / TRAINED[mode][0] / arm), "rtc"
    policy = load_policy(policy_dir)
    # The paper's exponential schedule and beta; soft weights over the whole committed prefix.
    policy.set_rtc(RTCConfig(prefix_attention_schedule="exp", max_guidance_weight=5.0,
                             execution_horizon=policy.chunk_size))
    r = evaluate_policy(policy, arm, task, episodes=episodes, seed=seed, inference_delay=delay,
                        chunking=chunking, keep_traces=traces)
    recs = r.records
    return {"arm": arm, "task": task, "mode": mode, "delay": delay, "seed": seed,
            "episodes": r.episodes, "successes": r.successes,
            "jumps": [x.switch_velocity_jump for x in recs],
            "peaks": [x.switch_peak_acceleration for x in recs],
            "jerks": [x.rms_jerk for x in recs],
            "durations": [x.duration for x in recs if x.success],
            "pauses": sum(x.pause_ticks for x in recs), "steps": sum(x.steps for x in recs),
            "rejected": sum(x.rejected_chunks for x in recs),
            "traces": r.traces, "seconds": round(r.seconds, 2)}


def train_rtc_policies(root: Path, sub: str, policy_dir: str, arms: list[str],
                       tasks: list[str], episodes: int, steps: int, d_max: int) -> dict:
    """Fine-tuned policies, one per arm: ``episodes`` expert demonstrations per task (seeds
    disjoint from the evaluation's; in ``root/data``, shared by every ``sub``), then
    ``policy_dir`` fine-tuned on them (no ATE guidance) with ``rtc_train_max_delay = d_max``;
    written to ``root/sub/<arm>``."""
    from ate_ros.core.sim.recording import record_dataset
    from ate_ros.core.steer.guidance import GuidanceConfig
    from ate_ros.core.steer.policies import VLAPolicy
    from ate_ros.core.steer.trainer import FinetuneConfig, finetune_policy

    info = {"demonstrations_per_task": episodes, "steps": steps, "rtc_train_max_delay": d_max,
            "base_policy": Path(policy_dir).name, "seconds": {}}
    out = root / sub
    for a, arm in enumerate(arms):
        t0 = time.monotonic()
        data = []
        for k, task in enumerate(tasks):
            folder = root / "data" / f"{arm}-{task}"
            if not (folder / "manifest.json").is_file():
                record_dataset(arm, task, episodes, folder, seed=70000 + 1000 * (3 * a + k),
                               render=False)
            data.append(str(folder))
        base = out / "base_rtc"  # the pre-trained policy with training-time RTC switched on
        if not d_max:
            base = Path(policy_dir)
        elif not (base / "config.json").is_file():
            pol = VLAPolicy.from_pretrained(policy_dir)
            pol.config.rtc_train_max_delay = d_max
            pol.save_pretrained(base, extra={"training": {
                "stats_slots": _json(Path(policy_dir) / "config.json")["training"]
                ["stats_slots"]}})
        if not (out / arm / "model.safetensors").is_file():
            finetune_policy(FinetuneConfig(
                data=data, out=str(out / arm), policy_path=str(base),
                guidance=GuidanceConfig(enabled=False), steps=steps, batch_size=64,
                eval_every=steps, save_every=steps, show_progress=False, device="cpu",
                seed=a, overwrite=True))
        info["seconds"][arm] = round(time.monotonic() - t0, 1)
    return info


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _mean(values) -> float | None:
    v = [x for x in values if x is not None]
    return float(sum(v) / len(v)) if v else None


def aggregate(cells: list[dict]) -> list[dict]:
    from ate_ros.core.sim.evaluate import wilson_interval

    rows = []
    keys = sorted({(c["mode"], c["delay"]) for c in cells},
                  key=lambda k: (MODES.index(k[0]) if k[0] in MODES else 99, k[1]))
    for mode, delay in keys:
        cs = [c for c in cells if c["mode"] == mode and c["delay"] == delay]
        n = sum(c["episodes"] for c in cs)
        k = sum(c["successes"] for c in cs)
        lo, hi = wilson_interval(k, n)
        rows.append({
            "mode": mode, "delay": delay, "episodes": n, "success_rate": k / n,
            "ci95": [lo, hi],
            "switch_velocity_jump": _mean(j for c in cs for j in c["jumps"]),
            "switch_peak_acceleration": _mean(p for c in cs for p in c["peaks"]),
            "rms_jerk": _mean(j for c in cs for j in c["jerks"]),
            "completion_time_s": _mean(d for c in cs for d in c["durations"]),
            "pause_fraction": sum(c["pauses"] for c in cs) / max(sum(c["steps"] for c in cs), 1),
            "rejected_chunks": sum(c["rejected"] for c in cs)})
    return rows


def compact(cell: dict) -> dict:
    """A cell as written to the JSON: its means instead of the per-episode lists."""
    out = {k: v for k, v in cell.items() if k not in ("jumps", "peaks", "jerks", "durations",
                                                       "traces")}
    out.update(switch_velocity_jump=_mean(cell["jumps"]),
               switch_peak_acceleration=_mean(cell["peaks"]), rms_jerk=_mean(cell["jerks"]),
               completion_time_s=_mean(cell["durations"]))
    return out


def plot(cells: list[dict], delay: int, path: Path, joint: int = 0) -> bool:
    """One joint's commands around the switches, one panel per mode (first traced episode)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot")
        return False
    import numpy as np

    traced = {c["mode"]: c["traces"][0] for c in cells if c["delay"] == delay and c["traces"]}
    modes = [m for m in MODES if m in traced]
    if not modes:
        return False
    fig, axes = plt.subplots(len(modes), 1, figsize=(8, 1.9 * len(modes)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, mode in zip(axes, modes):
        tr = traced[mode]
        c = np.asarray(tr["commands"])[:, joint]
        t = (np.arange(len(c)) + 1) * tr["dt"]
        ax.plot(t, c, ".-", lw=1, ms=3, color="tab:blue")
        for s in tr["switches"][1:]:
            ax.axvline((s + 1) * tr["dt"], color="tab:red", lw=0.8, alpha=0.6)
        ax.set_ylabel(f"{mode}\nq{joint} (rad)", fontsize=8)
    axes[-1].set_xlabel(f"time (s); red: first command of a new chunk (D = {delay})")
    fig.suptitle(f"Commanded joint {joint} around chunk switches, inference delay {delay}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def check_targets(rows: list[dict]) -> list[str]:
    """Issue 30's 'done when', each line saying whether it holds."""
    def row(mode, delay):
        return next((r for r in rows if r["mode"] == mode and r["delay"] == delay), None)

    rtc, sync0 = row("rtc", TARGET_DELAY), row("sync", 0)
    rep, sync4 = row("replace", TARGET_DELAY), row("sync", TARGET_DELAY)
    out = []
    if rtc and sync0:
        ok = rtc["success_rate"] >= sync0["success_rate"] - 0.05
        out.append(f"rtc success at D={TARGET_DELAY} {rtc['success_rate']:.3f} within 5 points "
                   f"of sync at D=0 {sync0['success_rate']:.3f}: {'yes' if ok else 'NO'}")
    if rtc and rep and rtc["switch_velocity_jump"] and rep["switch_velocity_jump"]:
        ratio = rtc["switch_velocity_jump"] / rep["switch_velocity_jump"]
        out.append(f"rtc switch velocity jump / replace's at D={TARGET_DELAY} = {ratio:.2f} "
                   f"(<= 0.33): {'yes' if ratio <= 1 / 3 else 'NO'}")
    if rtc and sync4 and rtc["completion_time_s"] and sync4["completion_time_s"]:
        ok = rtc["completion_time_s"] < sync4["completion_time_s"]
        out.append(f"rtc completion {rtc['completion_time_s']:.2f} s < sync's "
                   f"{sync4['completion_time_s']:.2f} s at D={TARGET_DELAY}: "
                   f"{'yes' if ok else 'NO'}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--policy", default=str(POLICY))
    p.add_argument("--arms", default="", help="comma-separated (default: the pre-training arms)")
    p.add_argument("--tasks", default="reach,push,pick_color")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--delays", default=",".join(map(str, DELAYS)))
    p.add_argument("--seeds", type=int, default=3, help="evaluation seeds 0 .. seeds-1")
    p.add_argument("--episodes", type=int, default=50, help="episodes per seed and cell")
    p.add_argument("--plot-delay", type=int, default=TARGET_DELAY)
    p.add_argument("--jobs", type=int, default=2, help="parallel processes (one thread each)")
    p.add_argument("--quick", action="store_true", help="1 seed x 10 episodes on sim_arm6")
    p.add_argument("--out", default="", help="result JSON (default: benchmarks/results/...)")
    p.add_argument("--train-rtc", default="", metavar="DIR",
                   help="rtc_trained: record demonstrations and fine-tune the policies here")
    p.add_argument("--trained-policy", default="", metavar="DIR",
                   help="rtc_trained: the per-arm policies (<DIR>/<arm>) of an earlier "
                        "--train-rtc")
    p.add_argument("--train-episodes", type=int, default=60, help="demonstrations per task")
    p.add_argument("--train-steps", type=int, default=1500)
    p.add_argument("--train-max-delay", type=int, default=max(DELAYS), help="d_max")
    args = p.parse_args(argv)
    # At the start: the commit and date of the code that runs (not of edits made meanwhile).
    meta = result_meta(None if argv is None else [__file__, *argv])
    from ate_ros.core.sim import PRETRAIN_EMBODIMENTS

    if not (Path(args.policy) / "config.json").is_file():
        print(f"no policy at {args.policy}", file=sys.stderr)
        return 2
    arms = args.arms.split(",") if args.arms else (["sim_arm6"] if args.quick
                                                   else list(PRETRAIN_EMBODIMENTS))
    seeds, episodes = (1, 10) if args.quick else (args.seeds, args.episodes)
    modes = args.modes.split(",")
    delays = [int(d) for d in args.delays.split(",")]
    tasks = args.tasks.split(",")
    trained, training = args.trained_policy or args.train_rtc, None
    for mode in [m for m in modes if m in TRAINED]:
        if not trained:
            print(f"mode {mode} needs --train-rtc DIR or --trained-policy DIR",
                  file=sys.stderr)
            return 2
        if args.train_rtc:
            sub, d_max = TRAINED[mode]
            training = {**(training or {}), mode: train_rtc_policies(
                Path(args.train_rtc), sub, args.policy, arms, tasks, args.train_episodes,
                args.train_steps, args.train_max_delay if d_max is None else d_max)}
    jobs = []
    for mode in modes:
        for delay in delays:
            for arm in arms:
                for task in tasks:
                    for seed in range(seeds):
                        first = arm == arms[0] and task == tasks[0] and seed == 0
                        traces = 1 if first and delay == args.plot_delay else 0
                        jobs.append((trained if mode in TRAINED else args.policy, arm, task,
                                     mode, delay, seed, episodes, traces))
    t0 = time.monotonic()
    if args.jobs <= 1:
        cells = [run_cell(*j) for j in jobs]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            cells = list(pool.map(run_cell, *zip(*jobs)))
    rows = aggregate(cells)

    def f(v, fmt):
        return format(v, fmt) if v is not None and not (isinstance(v, float) and math.isnan(v)) \
            else "-"

    print(f"\nChunking under inference delay ({', '.join(arms)}; {', '.join(tasks)}; "
          f"{seeds} seed(s) x {episodes} episodes per cell)")
    hdr = (f"{'mode':10} {'D':>2} {'success':>8} {'95% CI':>13} {'v-jump':>7} {'peak acc':>9} "
           f"{'rms jerk':>9} {'done (s)':>9} {'held':>6}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        lo, hi = r["ci95"]
        print(f"{r['mode']:10} {r['delay']:>2} {r['success_rate']:8.1%} "
              f"{f'[{lo:.0%}, {hi:.0%}]':>13} {f(r['switch_velocity_jump'], '7.3f'):>7} "
              f"{f(r['switch_peak_acceleration'], '9.2f'):>9} {f(r['rms_jerk'], '9.1f'):>9} "
              f"{f(r['completion_time_s'], '9.2f'):>9} {r['pause_fraction']:6.1%}")
    targets = check_targets(rows)
    print("\nIssue 30 targets:")
    for line in targets:
        print("  " + line)
    stem = "bench_rtc" + ("_quick" if args.quick else "")
    out = Path(args.out) if args.out else RESULTS / f"{stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    plotted = plot(cells, args.plot_delay, png)
    result = {
        "meta": {"benchmark": "bench_rtc",
                 **meta,
                 "policy": Path(args.policy).name, "arms": arms, "tasks": tasks,
                 "seeds": seeds, "episodes_per_seed": episodes,
                 "rtc": {"prefix_attention_schedule": "exp", "max_guidance_weight": 5.0,
                         "execution_horizon": "chunk_size"},
                 "metrics": "commands (what the executor sends), control period dt; jump: "
                            "max-joint |v after - v before| at a switch; peak acc: within a "
                            "tick of a switch; completion: successful episodes",
                 "wall_s": round(time.monotonic() - t0, 1)},
        **({"rtc_training": training} if training else {}),
        "rows": rows, "targets": targets, "cells": [compact(c) for c in cells],
        "plot": str(png.relative_to(ROOT)) if plotted and png.is_relative_to(ROOT) else None}
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}" + (f" and {png}" if plotted else "") +
          f" ({result['meta']['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

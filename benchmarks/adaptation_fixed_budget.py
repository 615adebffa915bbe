"""The fixed-budget adaptation protocol (retired by issue #28: it stopped training before it
converged; benchmarks/bench_adaptation.py is the current one). Kept for
``scan_inference_steering.py``, which loads the policies this protocol fine-tuned.

Cross-embodiment adaptation in simulation: direct fine-tuning vs ATE guidance.

A policy pre-trained on the pre-training arms (``sim_arm6``, ``sim_arm5``;
``assets/pretrained_lowdim``, which does its own tasks: ``benchmarks/bench_own_arm.py``) is
fine-tuned on the new 7-DoF arm (``sim_arm7``) with K scripted demonstrations per task, with the
same steps, seeds and data: direct fine-tuning, ATE guidance (stage-2 VAE aligned to the
pre-training latent prior; the paper's sign) and the classifier-sign variant of guidance. Each
result is evaluated closed loop in MuJoCo (chunks through the executor's ChunkScheduler) on the
same evaluation episodes, so ATE and direct are compared pair by pair.

    python benchmarks/bench_adaptation.py --quick --jobs 2   # < 10 min: K=10, one seed
    python benchmarks/bench_adaptation.py --jobs 2           # K in {5,10,25}, 3 seeds, 3 tasks

Prints a table (success, 95% Wilson interval pooled over seeds and tasks, and per guided method
the difference to direct fine-tuning with a paired 95% bootstrap interval) and writes
``benchmarks/results/bench_adaptation[_quick].json`` and a success-vs-steps plot ``.png``.
Evaluation seeds (``20000 + seed``) are kept apart from the development seeds used while
choosing settings (``--eval-offset``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_adaptation import _cli, _log, wilson  # noqa: E402  (one copy of the run helpers)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "retired"  # its results are retired (#28)


@dataclass
class BenchConfig:
    ks: tuple[int, ...] = (5, 10, 25)
    seeds: tuple[int, ...] = (0, 1, 2)
    tasks: tuple[str, ...] = ("reach", "push", "pick_color")
    methods: tuple[str, ...] = ("direct", "ate", "ate_classifier")
    steps: int = 600
    curve_every: int = 150
    curve_episodes: int = 6
    eval_episodes: int = 50
    eval_offset: int = 20_000  # evaluation seed = eval_offset + seed
    align_epochs: tuple[int, int] = (12, 80)  # stage 1 sees ~25k chunks of runs/pretrain_data
    pretrain_per_task: int = 60       # pre-training demos per arm and task (stage-1 data)
    val_per_task: int = 3             # held-out adaptation demos per task
    batch_size: int = 32
    lam: float = 2.0
    clamp: float = 0.1
    inference_steering: float = 0.0  # >0: also evaluate each final policy steered at inference
    extra: dict = field(default_factory=dict)


QUICK = BenchConfig(ks=(10,), seeds=(0,), methods=("direct", "ate", "ate_classifier"), steps=300,
                    curve_every=150, curve_episodes=4, eval_episodes=20, align_epochs=(8, 30),
                    pretrain_per_task=20)
BOOTSTRAP_REPS = 10_000

METHOD_GUIDANCE = {"direct": None, "ate": "paper", "ate_classifier": "classifier"}


def make_adaptation_sets(cfg: BenchConfig, work: Path, seed: int = 7) -> dict[int, Path]:
    """Record max(K) + val demos per task on the new arm once; K-subsets share the val split."""
    from ate_ros.core.data.episode_format import EMBODIMENT_FILE
    from ate_ros.core.sim import ADAPT_EMBODIMENT
    from ate_ros.core.sim.recording import record_dataset

    full = work / "ada_full"
    n = max(cfg.ks) + cfg.val_per_task
    for i, task in enumerate(cfg.tasks):
        if not (full / task).is_dir():
            record_dataset(ADAPT_EMBODIMENT, task, n, full / task, seed=seed + 1000 * i,
                           val_fraction=cfg.val_per_task / n)
    sets = {}
    for k in cfg.ks:
        dst = work / f"ada_k{k}"
        if dst.is_dir():
            shutil.rmtree(dst)
        for task in cfg.tasks:
            train = sorted((full / task / "train").iterdir())[:k]
            for split, files in (("train", train), ("val", sorted((full / task / "val")
                                                                  .iterdir()))):
                (dst / split).mkdir(parents=True, exist_ok=True)
                for f in files:
                    os.link(f, dst / split / f.name)
        shutil.copy(full / cfg.tasks[0] / EMBODIMENT_FILE, dst / EMBODIMENT_FILE)
        sets[k] = dst
    return sets


def pretraining_sets(cfg: BenchConfig, work: Path) -> list[Path]:
    """The pre-training datasets (``runs/pretrain_data`` when present, else recorded here)."""
    from ate_ros.core.sim import PRETRAIN_EMBODIMENTS
    from ate_ros.core.sim.recording import record_dataset

    shared = ROOT / "runs" / "pretrain_data"
    if shared.is_dir() and any(shared.iterdir()):
        return sorted(p for p in shared.iterdir() if p.is_dir())
    out = []
    for a, arm in enumerate(PRETRAIN_EMBODIMENTS):
        for t, task in enumerate(cfg.tasks):
            dst = work / "pretrain_data" / f"{arm}-{task}"
            if not dst.is_dir():
                record_dataset(arm, task, cfg.pretrain_per_task, dst,
                               seed=5000 + 100 * (3 * a + t))
            out.append(dst)
    return out


def finetune(cfg: BenchConfig, pretrained: Path, data: Path, vae: Path, out: Path, method: str,
             seed: int) -> dict:
    from ate_ros.core.steer.guidance import GuidanceConfig
    from ate_ros.core.steer.trainer import FinetuneConfig, finetune_policy
    from ate_ros.core.training.files import read_json

    direction = METHOD_GUIDANCE[method]
    guidance = GuidanceConfig(enabled=direction is not None, scale=cfg.lam, clamp=cfg.clamp,
                              direction=direction or "paper")
    finetune_policy(FinetuneConfig(
        data=[str(data)], out=str(out), policy_path=str(pretrained), vae=str(vae),
        guidance=guidance, steps=cfg.steps, batch_size=cfg.batch_size, seed=seed, device="cpu",
        eval_every=cfg.curve_every, save_every=cfg.steps, eval_task=",".join(cfg.tasks),
        eval_episodes=cfg.curve_episodes, show_progress=False, log_every=50))
    hist = read_json(out / "metrics.json")["history"]
    return {"curve": hist.get("eval/success_rate", []), "action_mse": hist.get("eval/action_mse",
                                                                                [])}


def evaluate(policy_dir: Path, cfg: BenchConfig, seed: int, vae: Path | None = None) -> dict:
    from ate_ros.core.sim import ADAPT_EMBODIMENT, evaluate_policy
    from ate_ros.core.steer.policies import load_policy

    policy = load_policy(policy_dir)
    if vae is not None:
        from ate_ros.core.align import load_alignment

        policy.set_inference_guidance(load_alignment(vae), scale=cfg.inference_steering)
    out = {}
    for task in cfg.tasks:
        r = evaluate_policy(policy, ADAPT_EMBODIMENT, task, episodes=cfg.eval_episodes,
                            seed=cfg.eval_offset + seed)
        out[task] = {"successes": r.successes, "episodes": r.episodes,
                     "nearer_target": r.nearer_target,
                     "outcomes": [int(e.success) for e in r.records]}
    return out


def paired_difference(runs: list[dict], k: int, method: str, cfg: BenchConfig,
                      reps: int = BOOTSTRAP_REPS, seed: int = 0) -> dict | None:
    """``method - direct`` success at K, paired by (seed, task, evaluation episode).

    Both methods are evaluated on the same episodes (same initial states) for each seed, so the
    difference is taken episode by episode. The 95% interval is a two-level bootstrap: seeds are
    resampled (the training-run variance), then episodes within each drawn seed and task (the
    evaluation variance).
    """
    by = {(r["method"], r["seed"]): r for r in runs if r["k"] == k}
    seeds = [s for s in cfg.seeds if (method, s) in by and ("direct", s) in by]
    if not seeds:
        return None
    diffs = []  # per seed: per task (E,) array of paired differences
    for s in seeds:
        a, b = by[(method, s)]["eval"], by[("direct", s)]["eval"]
        if any("outcomes" not in a[t] or "outcomes" not in b[t] for t in cfg.tasks):
            return None
        diffs.append([np.asarray(a[t]["outcomes"], float) - np.asarray(b[t]["outcomes"], float)
                      for t in cfg.tasks])
    from ate_ros.core.sim.evaluate import paired_bootstrap

    mean, lo, hi = paired_bootstrap(diffs, reps, seed)
    return {"diff": mean, "ci95": [lo, hi], "seeds": len(seeds),
            "pairs": int(sum(len(d) for per_seed in diffs for d in per_seed)),
            "separates": bool(lo > 0 or hi < 0)}


RUN_RESULT = "bench_run.json"


def pretrained_fingerprint(pretrained: Path) -> str:
    """SHA-256 of the pre-trained weights: a finished run is reused only for the same policy."""
    import hashlib

    return hashlib.sha256((pretrained / "model.safetensors").read_bytes()).hexdigest()


RUN_SELECTION = ("ks", "seeds", "inference_steering")
"""Config fields that choose which runs (and evaluations) to do, not what a run computes:
a run is identified by its directory (K, seed, method) and the rest of the config."""


def _run_identity(cfg_dict: dict) -> dict:
    return {k: v for k, v in cfg_dict.items() if k not in RUN_SELECTION}


def run_one(cfg_dict: dict, pretrained: Path, data: Path, vae: Path, out: Path, method: str,
            seed: int, k: int, threads: int) -> dict:
    """Fine-tune and evaluate one (K, seed, method); reuses ``out/bench_run.json`` of an
    identical earlier run, so an interrupted benchmark resumes where it stopped."""
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("MUJOCO_GL", "egl")
    cfg = replace(BenchConfig(), **{f: tuple(v) if isinstance(v, list) else v
                                    for f, v in cfg_dict.items()})
    done = out / RUN_RESULT
    wanted = json.loads(json.dumps(cfg_dict))
    origin = pretrained_fingerprint(pretrained)
    if done.is_file():
        prev = json.loads(done.read_text())
        same = prev.get("pretrained") == origin and _run_identity(
            prev.get("config", {})) == _run_identity(wanted)
        if same:
            run = prev["run"]
            steered_at = prev["config"].get("inference_steering", 0.0)
            if cfg.inference_steering > 0 and (steered_at != cfg.inference_steering
                                               or "eval_inference_steering" not in run):
                # Same fine-tuned policy: only the inference-time steering evaluation is new.
                _log(f"K={k} seed={seed} {method}: inference-steering evaluation only")
                run["eval_inference_steering"] = evaluate(out, cfg, seed, vae=vae)
                done.write_text(json.dumps({"config": wanted, "pretrained": origin,
                                            "run": run}))
            else:
                _log(f"reusing K={k} seed={seed} {method} ({done})")
            return run
    if out.exists():
        shutil.rmtree(out)
    _log(f"fine-tune K={k} seed={seed} {method}")
    ft = finetune(cfg, pretrained, data, vae, out, method, seed)
    ev = evaluate(out, cfg, seed)
    run = {"k": k, "seed": seed, "method": method, "eval": ev, **ft}
    if cfg.inference_steering > 0:
        run["eval_inference_steering"] = evaluate(out, cfg, seed, vae=vae)
    done.write_text(json.dumps({"config": wanted, "pretrained": origin, "run": run}))
    _log(f"  K={k} seed={seed} {method} -> {ev}")
    return run


def aggregate(runs: list[dict], cfg: BenchConfig) -> dict:
    """Pool successes over seeds and tasks per (K, method); curves averaged over seeds."""
    table = {}
    for k in cfg.ks:
        for method in {r["method"] for r in runs}:
            rs = [r for r in runs if r["k"] == k and r["method"] == method]
            if not rs:
                continue
            succ = sum(t["successes"] for r in rs for t in r["eval"].values())
            n = sum(t["episodes"] for r in rs for t in r["eval"].values())
            lo, hi = wilson(succ, n)
            per_task = {task: sum(r["eval"][task]["successes"] for r in rs) /
                        sum(r["eval"][task]["episodes"] for r in rs) for task in cfg.tasks}
            steps = sorted({p[0] for r in rs for p in r["curve"]})
            curve = [[s, float(np.mean([dict(map(tuple, r["curve"])).get(s, np.nan)
                                        for r in rs]))] for s in steps]
            mse = [r["action_mse"][-1][1] for r in rs if r.get("action_mse")]
            # Tasks naming one object among others: episodes that ended nearer the named one.
            named = [(t["nearer_target"], t["episodes"]) for r in rs for t in r["eval"].values()
                     if t.get("nearer_target") is not None]
            table[f"K={k}/{method}"] = {"k": k, "method": method, "success": succ / n,
                                        "ci95": [lo, hi], "n": n, "per_task": per_task,
                                        "curve": curve, "seeds": len(rs),
                                        "val_action_mse": float(np.mean(mse)) if mse else None,
                                        "nearer_named": (sum(a for a, _ in named) /
                                                         sum(b for _, b in named)
                                                         if named else None)}
    for row in table.values():
        if row["method"] != "direct":
            row["vs_direct"] = paired_difference(runs, row["k"], row["method"], cfg)
    for k in cfg.ks:  # steps for each guided method to reach the direct baseline's final success
        base = table.get(f"K={k}/direct")
        if not base or not base["curve"]:
            continue
        target = base["curve"][-1][1]
        if target <= 0:  # "reaching" a 0% baseline says nothing
            continue
        for row in table.values():
            if row["k"] == k and row["method"] != "direct":
                hit = [s for s, v in row["curve"] if v >= target]
                row["steps_to_direct_final"] = hit[0] if hit else None
                row["direct_final_curve_success"] = target
    return table


def print_table(table: dict, cfg: BenchConfig, zero_shot: dict | None) -> None:
    print("\nCross-embodiment adaptation (sim_arm6 + sim_arm5 -> sim_arm7), "
          f"{cfg.eval_episodes} episodes x {len(cfg.tasks)} tasks x {len(cfg.seeds)} seeds, "
          f"{cfg.steps} fine-tuning steps")
    hdr = f"{'K':>3} {'method':16} {'success':>8} {'95% CI':>14} " + \
        "".join(f"{t:>11}" for t in cfg.tasks) + f" {'- direct [95% CI]':>22}" + \
        f" {'steps to direct':>16} {'val MSE':>8} {'named obj.':>10}"
    print(hdr)
    print("-" * len(hdr))
    if zero_shot:
        n = sum(v["episodes"] for v in zero_shot.values())
        s = sum(v["successes"] for v in zero_shot.values())
        lo, hi = wilson(s, n)
        print(f"{0:>3} {'pretrained':16} {s / n:8.1%} {f'[{lo:.0%}, {hi:.0%}]':>14} " +
              "".join(f"{v['successes'] / v['episodes']:11.0%}" for v in zero_shot.values()))
    for row in sorted(table.values(), key=lambda r: (r["k"], r["method"])):
        lo, hi = row["ci95"]
        stp = row.get("steps_to_direct_final", "")
        named = "" if row.get("nearer_named") is None else f"{row['nearer_named']:.0%}"
        vs = row.get("vs_direct")
        diff = "" if not vs else (f"{vs['diff']:+.1%} [{vs['ci95'][0]:+.0%}, "
                                  f"{vs['ci95'][1]:+.0%}]")
        print(f"{row['k']:>3} {row['method']:16} {row['success']:8.1%} "
              f"{f'[{lo:.0%}, {hi:.0%}]':>14} " +
              "".join(f"{row['per_task'][t]:11.0%}" for t in cfg.tasks) + f" {diff:>22}" +
              f" {'' if stp == '' else ('not reached' if stp is None else stp):>16}"
              f" {_fmt(row.get('val_action_mse')):>8}"
              f" {named:>10}")


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


def plot(table: dict, cfg: BenchConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cfg.ks), figsize=(4.5 * len(cfg.ks), 3.5), squeeze=False)
    for ax, k in zip(axes[0], cfg.ks):
        for row in table.values():
            if row["k"] == k and row["curve"]:
                s, v = zip(*row["curve"])
                ax.plot(s, v, marker="o", label=row["method"])
        ax.set_title(f"K = {k} demos/task")
        ax.set_xlabel("fine-tuning step")
        ax.set_ylabel(f"success ({cfg.curve_episodes} ep/task)")
        ax.set_ylim(-0.02, 1.02)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="< 10 min smoke-size run")
    p.add_argument("--pretrained", default=str(ROOT / "assets" / "pretrained_lowdim"))
    p.add_argument("--work", default=str(ROOT / "runs" / "bench_adaptation"))
    p.add_argument("--ks", default="", help="override K values, e.g. 10,25")
    p.add_argument("--seeds", default="", help="override seeds, e.g. 0,1")
    p.add_argument("--tasks", default="", help="override tasks")
    p.add_argument("--steps", type=int, default=0, help="override fine-tuning steps")
    p.add_argument("--eval-episodes", type=int, default=0)
    p.add_argument("--eval-offset", type=int, default=-1,
                   help="evaluation seed offset (default 20000; use another while tuning)")
    p.add_argument("--align-epochs", default="", help="override stage-1,stage-2 VAE epochs")
    p.add_argument("--clamp", type=float, default=0.0, help="override the guidance clamp")
    p.add_argument("--methods", default="", help="e.g. direct,ate,ate_classifier")
    p.add_argument("--lambda", dest="lam", type=float, default=0.0)
    p.add_argument("--inference-steering", type=float, default=-1.0,
                   help="also evaluate the final policies with inference-time steering")
    p.add_argument("--tag", default="", help="suffix of the result files")
    p.add_argument("--jobs", type=int, default=1,
                   help="fine-tune/evaluate this many runs in parallel processes (1 thread each)")
    args = p.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    torch.set_num_threads(2)
    cfg = QUICK if args.quick else BenchConfig()
    over = {}
    if args.ks:
        over["ks"] = tuple(int(x) for x in args.ks.split(","))
    if args.seeds:
        over["seeds"] = tuple(int(x) for x in args.seeds.split(","))
    if args.tasks:
        over["tasks"] = tuple(args.tasks.split(","))
    if args.methods:
        over["methods"] = tuple(args.methods.split(","))
    for name, val in (("steps", args.steps), ("eval_episodes", args.eval_episodes),
                      ("lam", args.lam)):
        if val:
            over[name] = val
    if args.eval_offset >= 0:
        over["eval_offset"] = args.eval_offset
    if args.align_epochs:
        over["align_epochs"] = tuple(int(x) for x in args.align_epochs.split(","))
    if args.clamp:
        over["clamp"] = args.clamp
    if args.inference_steering >= 0:
        over["inference_steering"] = args.inference_steering
    cfg = replace(cfg, **over)
    pretrained = Path(args.pretrained)
    if not (pretrained / "config.json").is_file():
        print(f"no pre-trained policy at {pretrained}: run assets/make_pretrained_sim.sh",
              file=sys.stderr)
        return 2
    work = Path(args.work) / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    from ate_ros.core.sim import ADAPT_EMBODIMENT

    _log(f"config: {asdict(cfg)}")
    ada = make_adaptation_sets(cfg, work)
    pre = pretraining_sets(cfg, work)
    _log(f"data: {len(pre)} pre-training sets, adaptation K={list(ada)}")
    stage1 = work / "stage1"
    if not (stage1 / "config.json").is_file():
        _cli(["align", "--pretrain", ",".join(map(str, pre)), "--embodiment-pre",
              ",".join(_embodiment_of(d) for d in pre),
              "--out", str(stage1), "--epochs-stage1", str(cfg.align_epochs[0]),
              "--short", "pad", "--no-progress", "--no-control", "--device", "cpu",
              "--resume"])  # an interrupted benchmark carries on where it stopped
    vaes = {}
    for k, data in ada.items():
        vaes[k] = work / f"vae_k{k}"
        _cli(["align", "--stage1", str(stage1), "--adapt", str(data), "--embodiment-ada",
              ADAPT_EMBODIMENT, "--out", str(vaes[k]), "--epochs-stage2", str(cfg.align_epochs[1]),
              "--short", "pad", "--no-progress", "--no-control", "--device", "cpu",
              "--resume"])
    _log(f"alignment done ({time.monotonic() - t0:.0f} s)")
    zero_shot = evaluate(pretrained, cfg, seed=cfg.seeds[0])
    _log(f"zero-shot pretrained: {zero_shot}")
    jobs = [(k, seed, method) for k in cfg.ks for seed in cfg.seeds for method in cfg.methods]
    runs = []
    if args.jobs <= 1:
        for k, seed, method in jobs:
            runs.append(run_one(asdict(cfg), pretrained, ada[k], vaes[k],
                                work / f"k{k}_s{seed}_{method}", method, seed, k, 2))
    else:
        # One process per run (spawned: MuJoCo's GL context and torch do not survive fork), one
        # torch thread each: batch-32 steps of this small model scale poorly across threads,
        # so two single-threaded runs finish ~1.7x sooner than one run after the other.
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(run_one, asdict(cfg), pretrained, ada[k], vaes[k],
                                   work / f"k{k}_s{seed}_{method}", method, seed, k, 1)
                       for k, seed, method in jobs]
            runs = [f.result() for f in futures]
    table = aggregate(runs, cfg)
    # Steered rows, same aggregation: the same training runs, steered only at evaluation (no
    # curves of their own).
    runs_is = [dict(x, eval=x["eval_inference_steering"], method=x["method"] + "+is", curve=[])
               for x in runs if "eval_inference_steering" in x]
    if runs_is and cfg.inference_steering > 0:
        table.update(aggregate(runs_is, cfg))
    print_table(table, cfg, zero_shot)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "bench_adaptation" + ("_quick" if args.quick else "") + (f"_{args.tag}" if args.tag
                                                                    else "")
    plot(table, cfg, RESULTS / f"{name}.png")
    result = {"benchmark": "bench_adaptation", "quick": args.quick, "config": asdict(cfg),
              "pretrained": str(pretrained), "zero_shot": zero_shot, "table": table,
              "runs": runs, "wall_s": time.monotonic() - t0,
              "torch_threads": torch.get_num_threads(), "jobs": args.jobs,
              "command": " ".join(["python benchmarks/bench_adaptation.py",
                                   *(sys.argv[1:] if argv is None else argv)])}
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    _log(f"wrote {RESULTS / name}.json and .png ({(time.monotonic() - t0) / 60:.1f} min)")
    return 0


def _embodiment_of(dataset: Path) -> str:
    import yaml

    return yaml.safe_load((Path(dataset) / "embodiment.yaml").read_text())["name"]


if __name__ == "__main__":
    sys.exit(main())

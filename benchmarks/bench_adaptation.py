"""Cross-embodiment adaptation in simulation, trained to convergence: direct fine-tuning vs ATE.

A policy pre-trained on some arms (a *pair*: pre-training arms -> new arm) is fine-tuned on the
new arm with K scripted demonstrations per task by each method: ``direct`` (no guidance),
``ate`` (guidance through the aligned stage-2 encoder) and ``ate_stage1`` (the same guidance
through the stage-1 encoder: steer without align). One run is one (track, pair, K, method,
training seed); it trains on all tasks at once.

Protocol (the converged protocol of issue #28):

- Checkpoints on a geometric step schedule (``schedule``: 150, 300, 600, ... 9600). At each one
  the EMA policy is rolled out on *validation* episodes (their own seed range) and on the
  *evaluation* episodes. Checkpoints before ``min_steps`` only draw the curve; among those at or
  after it, training stops when the validation success has not risen by more than ``min_gain``
  for ``patience`` checkpoints (a plateau: with patience 1, doubling the steps gained nothing),
  or at the schedule's end. The converged checkpoint is the one at or after ``min_steps`` with
  the best validation success (earliest on ties). The stopping rule and the checkpoint choice
  never read an evaluation episode; the evaluation rollouts at every checkpoint only draw the
  success-vs-step curve. The cosine learning rate spans the whole schedule.
- Why these settings (``benchmarks/replay_stopping_rule.py`` replays a rule on recorded
  validation curves): the first selection runs (patience 2 over every checkpoint, 10 validation
  episodes per task, schedule to 4800; now in ``results/retired/adaptation_runs_select_v1/``)
  stopped 3 of 13 runs on early dips: two K=25 runs at step 600 taking step 150 (val 0.43 ->
  0.10 -> 0.40: the pre-trained policy's score before adaptation), one K=5 run at 2400 taking
  600 (evaluation 0.67 there, 0.86 at 2400). Every one of the 11 runs that reached 2400 had
  gained >= 0.10 validation success from 1200 to 2400, so no checkpoint before 2400 is a
  plateau. With min_steps 2400 and patience 1, 5 of the 10 runs that reached 4800 stop there and
  5 (all three K=25 runs among them) were still rising and go on to 9600; patience 2 would send
  every plateaued run to the end of a doubling schedule. 20 validation episodes per task (60
  pooled) halve the variance behind each decision for ~2 s CPU per checkpoint.
- Per (track, pair, K): converged success of each method (the evaluation success at its
  converged checkpoint), ATE - direct with a paired two-level bootstrap interval (training
  seeds, then evaluation episodes within seed and task), the ratio of areas under the
  success-vs-log2(step) curves, and the speed-up: the steps direct needs to reach 90% of its own
  converged success divided by the steps ATE needs to reach that success.
- ``direct_monotone_in_k``: direct's converged success must not fall as K grows beyond what its
  intervals allow (the sanity check a converged learner passes).

Two splits with disjoint training seeds (data sampling and initialisation), validation and
evaluation episodes (``SPLITS``): ``--split select`` compares guidance settings and writes
``benchmarks/results/bench_adaptation_selection.json``; the code's defaults (``BenchConfig``)
follow its choice. ``--split report`` (default) uses those defaults and never changes one.

Each finished run leaves a small record in ``benchmarks/results/adaptation_runs/`` (commit it):
a run whose record exists with the same settings is not run again, so parts of the standard run
(``--track``/``--pair``/``--seeds``) can run on different days and machines, and
``--merge`` folds every matching record into the result file.

    python benchmarks/bench_adaptation.py --quick --jobs 2      # <= 10 min on 2 cores
    python benchmarks/bench_adaptation.py --jobs 2 --pair arm6+arm5-arm7 --seeds 0   # one part
    python benchmarks/bench_adaptation.py --merge               # bench_adaptation.json
    python benchmarks/bench_adaptation.py --split select --jobs 2   # then --merge --split select
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from result_meta import result_meta  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECORDS = RESULTS / "adaptation_runs"
BOOTSTRAP_REPS = 10_000


# ----- what is compared where ------------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    """Seeds of one split. A run with training seed ``s`` records its demonstrations with
    ``data_seed(s, task)``, trains with seed ``s``, stops on validation episodes
    ``evaluate_policy(seed=val_base + s)`` and is evaluated on ``evaluate_policy(seed=eval_base
    + s)`` (the same episodes for every method of that seed: paired)."""

    train_seeds: tuple[int, ...]
    val_base: int
    eval_base: int


SPLITS = {"select": Split(train_seeds=(100, 101), val_base=50_000, eval_base=40_000),
          "report": Split(train_seeds=(0, 1, 2), val_base=30_000, eval_base=20_000)}


def data_seed(train_seed: int, task_index: int) -> int:
    """Recording seed of the adaptation demonstrations of one training seed and task."""
    return 1_000_000 + 1000 * int(train_seed) + int(task_index)


@dataclass(frozen=True)
class Pair:
    """Pre-training arms -> new arm, and the policy pre-trained on those arms."""

    pretrain: tuple[str, ...]
    new: str
    policy: str  # relative to the repository root


TRACKS = {"lowdim": "assets/pretrained_lowdim", "image": "assets/pretrained_sim"}
"""Track -> the policy of the arm6+arm5 -> arm7 pair (the committed pre-trained policies)."""
PAIRS = {"arm6+arm5-arm7": ("sim_arm6", "sim_arm5"), "arm6+arm7-arm5": ("sim_arm6", "sim_arm7")}
"""Leave-one-arm-out pairs over the sim arms (7-DoF new arm, 5-DoF new arm)."""


def pair_of(track: str, name: str) -> Pair:
    pre = PAIRS[name]
    new = name.rsplit("-", 1)[1].replace("arm", "sim_arm")
    if name == "arm6+arm5-arm7":
        policy = TRACKS[track]
    else:  # pre-trained by assets/make_pretrained_lowdim.sh with ARMS set to the pair's arms
        policy = f"{TRACKS[track]}_{name.replace('+', '_').replace('-', '_to_')}"
    return Pair(pre, new, policy)


@dataclass
class BenchConfig:
    """One benchmark run's settings. ``lam``, ``clamp``, ``direction`` and the schedule are the
    selection split's choice (``bench_adaptation_selection.json``); the report split never
    changes them (``test_bench_adaptation_protocol`` checks they agree)."""

    ks: tuple[int, ...] = (2, 5, 10, 25, 50)
    tasks: tuple[str, ...] = ("reach", "push", "pick_color")
    methods: tuple[str, ...] = ("direct", "ate", "ate_stage1")
    schedule: tuple[int, ...] = (150, 300, 600, 1200, 2400, 4800, 9600)
    min_steps: int = 2400      # earlier checkpoints neither stop a run nor are its converged one
    patience: int = 1          # checkpoints (>= min_steps) without a validation gain: stop
    min_gain: float = 0.02     # a validation gain smaller than this is no gain
    val_episodes: int = 20     # validation episodes per task and checkpoint
    eval_episodes: int = 50    # evaluation episodes per task and checkpoint
    val_demos: int = 3         # held-out adaptation demos per task (action MSE, logged only)
    align_epochs: tuple[int, int] = (12, 80)
    pretrain_per_task: int = 60
    batch_size: int = 32
    lam: float = 8.0          # the selection split chose ate@8/classifier (+1.5 pts mean)
    clamp: float = 0.1
    direction: str = "classifier"
    candidates: tuple[tuple[float, str], ...] = ()  # select split: (lam, direction) per variant
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not any(s >= self.min_steps for s in self.schedule):
            raise ValueError(f"min_steps ({self.min_steps}) is beyond the schedule's last "
                             f"checkpoint ({max(self.schedule)}): no checkpoint could be chosen")


QUICK = BenchConfig(ks=(5,), schedule=(150, 300, 600), min_steps=300, patience=1,
                    val_episodes=5, eval_episodes=20, align_epochs=(6, 30), pretrain_per_task=15)
SELECT_CANDIDATES = ((2.0, "classifier"), (8.0, "classifier"), (2.0, "paper"))
"""What the select split compares (method names ``ate@<lam>/<direction>``), at K in SELECT_KS."""
SELECT_KS = (5, 25)

RUN_FIELDS = ("tasks", "schedule", "min_steps", "patience", "min_gain", "val_episodes",
              "eval_episodes", "val_demos", "align_epochs", "pretrain_per_task", "batch_size",
              "extra")
"""Config fields a run's result depends on (besides its method's guidance settings)."""


def method_guidance(method: str, cfg: BenchConfig) -> dict | None:
    """Guidance settings of a method (``None``: direct fine-tuning)."""
    if method == "direct":
        return None
    if method in ("ate", "ate_stage1"):
        return {"scale": cfg.lam, "clamp": cfg.clamp, "direction": cfg.direction,
                "encoder_stage": 1 if method == "ate_stage1" else 2}
    if method.startswith("ate@"):  # select-split candidate
        lam, direction = method[4:].split("/")
        return {"scale": float(lam), "clamp": cfg.clamp, "direction": direction,
                "encoder_stage": 2}
    raise ValueError(f"unknown method {method!r}")


def candidate_method(lam: float, direction: str) -> str:
    return f"ate@{lam:g}/{direction}"


# ----- the stopping rule -----------------------------------------------------------------------
def plateau_stop(val_curve: list[float], patience: int, min_gain: float) -> bool:
    """True when the last ``patience`` validation successes did not beat the best before them
    by more than ``min_gain``. Reads validation rollouts only."""
    if patience < 1 or len(val_curve) <= patience:
        return False
    best_before = max(val_curve[:-patience])
    return max(val_curve[-patience:]) <= best_before + min_gain


def should_stop(steps: list[int], val_curve: list[float], cfg: BenchConfig) -> bool:
    """The stopping rule after the last of ``steps``: a plateau (:func:`plateau_stop`) among the
    checkpoints at or after ``cfg.min_steps``. Reads the pooled validation success only."""
    eligible = [v for s, v in zip(steps, val_curve) if s >= cfg.min_steps]
    return plateau_stop(eligible, cfg.patience, cfg.min_gain)


def converged_index(val_curve: list[float], steps: list[int] | None = None,
                    min_steps: int = 0) -> int:
    """Checkpoint with the best validation success among those at or after ``min_steps``
    (``steps`` given), the earliest of equals."""
    idx = [i for i in range(len(val_curve)) if steps is None or steps[i] >= min_steps]
    if not idx:
        raise ValueError(f"no checkpoint evaluated at or after step {min_steps}")
    return idx[int(np.argmax(np.asarray([val_curve[i] for i in idx], float)))]


def replay_stopping(record: dict, cfg: BenchConfig) -> dict:
    """Where ``cfg``'s rule would stop a recorded run and which checkpoint it would take, from
    the record's pooled validation curve alone. ``stopped_at`` is None when the record ends
    before the rule stops (that run would have trained on)."""
    steps = [int(s) for s, _ in record["success_curve"]]
    val = list(record["val_pooled"])
    for i, step in enumerate(steps):
        if step not in cfg.schedule:
            break
        if should_stop(steps[:i + 1], val[:i + 1], cfg) or step == max(cfg.schedule):
            best = converged_index(val[:i + 1], steps[:i + 1], cfg.min_steps)
            return {"stopped_at": step, "converged_step": steps[best]}
    return {"stopped_at": None, "converged_step": None, "trains_past": steps[-1]}


# ----- pooled statistics -------------------------------------------------------------------------
def wilson(k: int, n: int) -> tuple[float, float]:
    from ate_ros.core.sim.evaluate import wilson_interval

    return wilson_interval(k, n)


def steps_to_reach(curve: list[list[float]], target: float) -> int | None:
    """First checkpoint step whose success is at least ``target`` (None: never)."""
    for step, value in curve:
        if value >= target - 1e-12:
            return int(step)
    return None


def log_auc(curve: list[list[float]]) -> float:
    """Mean success over the curve on a log2(step) axis (trapezoids; 0..1)."""
    if len(curve) < 2:
        return float(curve[0][1]) if curve else 0.0
    x = np.log2([c[0] for c in curve])
    y = np.asarray([c[1] for c in curve], float)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def extended_curve(run: dict, schedule: tuple[int, ...]) -> list[list[float]]:
    """Pooled-over-tasks evaluation curve of one run on the whole schedule: checkpoints after
    the run stopped carry its converged success (a plateau, by the stopping rule)."""
    have = {int(s): v for s, v in run["success_curve"]}
    return [[s, have.get(s, run["converged_success"])] for s in schedule]


def monotone_in_k(points: list[tuple[int, float, tuple[float, float]]]) -> bool:
    """Non-decreasing in K within the intervals: every larger K's upper bound reaches every
    smaller K's lower bound... i.e. no larger K lies entirely below a smaller one."""
    pts = sorted(points)
    for i, (_, _, (lo_i, _)) in enumerate(pts):
        for _, _, (_, hi_j) in pts[i + 1:]:
            if hi_j < lo_i:
                return False
    return True


def summarize(records: list[dict], cfg: BenchConfig, reps: int = BOOTSTRAP_REPS) -> dict:
    """rows, summary and direct_monotone_in_k from run records (see the module docstring)."""
    from ate_ros.core.sim.evaluate import paired_bootstrap

    rows = []
    for r in records:
        for task in cfg.tasks:
            t = r["tasks"][task]
            rows.append({"track": r["track"], "pair": r["pair"], "task": task, "k": r["k"],
                         "method": r["method"], "seed": r["seed"],
                         "success_curve": t["success_curve"],
                         "val_curve": t["val_curve"],
                         "converged_success": t["converged_success"],
                         "converged_step": r["converged_step"], "stopped_at": r["stopped_at"],
                         "val_action_mse": r.get("val_action_mse")})
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for r in records:
        groups.setdefault((r["track"], r["pair"], r["k"]), {}).setdefault(r["method"],
                                                                          []).append(r)
    summary, monotone = [], {}
    for (track, pair, k), by in sorted(groups.items()):
        entry: dict = {"track": track, "pair": pair, "k": k, "methods": {}}
        for method, rs in sorted(by.items()):
            succ = sum(sum(r["tasks"][t]["outcomes"]) for r in rs for t in cfg.tasks)
            n = sum(len(r["tasks"][t]["outcomes"]) for r in rs for t in cfg.tasks)
            curves = np.asarray([[v for _, v in extended_curve(r, cfg.schedule)] for r in rs])
            curve = [[s, float(v)] for s, v in zip(cfg.schedule, curves.mean(0))]
            entry["methods"][method] = {
                "converged_success": succ / n, "wilson95": list(wilson(succ, n)), "n": n,
                "seeds": sorted(r["seed"] for r in rs), "curve": curve, "auc": log_auc(curve),
                "per_task": {t: float(np.mean([np.mean(r["tasks"][t]["outcomes"]) for r in rs]))
                             for t in cfg.tasks},
                "converged_steps": sorted(r["converged_step"] for r in rs),
                "cpu_s": float(sum(r.get("cpu_s", 0.0) for r in rs))}
        d = entry["methods"].get("direct")
        for method, m in entry["methods"].items():
            if method == "direct" or d is None:
                continue
            seeds = sorted(set(m["seeds"]) & set(d["seeds"]))
            mine = {r["seed"]: r for r in by[method]}
            base = {r["seed"]: r for r in by["direct"]}
            diffs = [[np.asarray(mine[s]["tasks"][t]["outcomes"], float)
                      - np.asarray(base[s]["tasks"][t]["outcomes"], float) for t in cfg.tasks]
                     for s in seeds]
            mean, lo, hi = paired_bootstrap(diffs, reps, 0)
            target = 0.9 * d["converged_success"]
            s_direct = steps_to_reach(d["curve"], target) if target > 0 else None
            s_method = steps_to_reach(m["curve"], target) if target > 0 else None
            m["minus_direct"] = mean
            m["minus_direct_ci95"] = [lo, hi]
            m["auc_ratio"] = m["auc"] / d["auc"] if d["auc"] > 0 else None
            m["steps_to_90pct_direct"] = [s_direct, s_method]
            m["speedup"] = (s_direct / s_method if s_direct and s_method else None)
        a = entry["methods"].get("ate")
        entry.update({"direct": None if d is None else d["converged_success"],
                      "ate": None if a is None else a["converged_success"],
                      "ate_minus_direct": None if a is None or d is None else a["minus_direct"],
                      "ci95": None if a is None or d is None else a["minus_direct_ci95"],
                      "auc_ratio": None if a is None or d is None else a["auc_ratio"],
                      "speedup": None if a is None or d is None else a["speedup"]})
        summary.append(entry)
    for track, pair in sorted({(e["track"], e["pair"]) for e in summary}):
        pts = [(e["k"], e["methods"]["direct"]["converged_success"],
                tuple(e["methods"]["direct"]["wilson95"])) for e in summary
               if e["track"] == track and e["pair"] == pair and "direct" in e["methods"]]
        monotone[f"{track}/{pair}"] = monotone_in_k(pts) if len(pts) > 1 else None
    return {"rows": rows, "summary": summary, "direct_monotone_in_k": monotone}


INTERVALS = {
    "wilson95": "95% Wilson score interval of the converged success, pooled over training "
                "seeds, tasks and evaluation episodes (the evaluation variance only)",
    "ci95": "ATE - direct: 95% two-level paired bootstrap (10,000 draws): training seeds "
            "resampled, then evaluation episodes within each drawn seed and task; both methods "
            "are evaluated on the same episodes",
    "direct_monotone_in_k": "false when some larger K's Wilson interval lies entirely below a "
                            "smaller K's",
    "auc_ratio": "area under the seed-mean success vs log2(step) curve (stopped runs carry "
                 "their converged success forward), ATE over direct",
    "speedup": "steps direct needs to reach 90% of its converged success / steps ATE needs to "
               "reach the same success, on the seed-mean curves (null: one never reaches it)",
}


def choose(summary: list[dict]) -> dict:
    """The select split's choice: the candidate with the highest mean paired difference to
    direct over the selection K values (ties: the first listed)."""
    scores: dict[str, list[float]] = {}
    for e in summary:
        for method, m in e["methods"].items():
            if method.startswith("ate@") and m.get("minus_direct") is not None:
                scores.setdefault(method, []).append(m["minus_direct"])
    if not scores:
        return {}
    best = max(scores, key=lambda m: np.mean(scores[m]))
    lam, direction = best[4:].split("/")
    return {"method": best, "lam": float(lam), "direction": direction,
            "mean_minus_direct": {m: float(np.mean(v)) for m, v in scores.items()}}


def selection(summary: list[dict], finished: int, expected: int) -> dict:
    """The select split's choice once every selection run has finished; before that nothing is
    chosen (the defaults stay) and the leader so far is recorded as ``provisional`` only. A
    candidate whose mean difference to direct is not above zero is not chosen either."""
    best = choose(summary)
    if finished >= expected:
        gain = best["mean_minus_direct"][best["method"]] if best else None
        if gain is not None and gain > 0:
            return best
        return {"method": None, "best_candidate": best,
                "note": "no candidate beats direct fine-tuning on the selection split (best "
                        "mean ATE - direct over the selection K: "
                        + ("none" if gain is None else f"{100 * gain:+.1f} points")
                        + "): nothing chosen, the defaults stay"}
    return {"method": None, "provisional": best,
            "note": f"selection incomplete ({finished} of {expected} runs): nothing chosen, "
                    "the defaults stay"}


# ----- result hygiene ----------------------------------------------------------------------------
def meta(command: str, seeds: list[int]) -> dict:
    """benchmarks/result_meta.py's record (date, machine, commit) with this run's command and
    training seeds."""
    import torch  # noqa: F401  (result_meta names the GPU only when torch is imported)

    return {**result_meta(), "command": command, "seeds": seeds}


# ----- one run -----------------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _cli(argv: list[str]) -> None:
    from ate_ros.cli import main

    rc = main(argv)
    if rc:
        raise SystemExit(f"ate-ros {argv[0]} failed ({rc})")


def fingerprint(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()[:16]


def horizons(tasks: tuple[str, ...]) -> dict[str, float]:
    """Episode horizon (s) of each task: demonstrations and rollouts depend on it."""
    from ate_ros.core.sim.tasks import TASKS

    return {t: float(TASKS[t].time_limit) for t in tasks}


def run_identity(cfg: BenchConfig, split: str, track: str, pair: str, k: int, method: str,
                 seed: int, policy_sha: str) -> dict:
    """Everything a run's result depends on: a record is reused only when this matches."""
    c = asdict(cfg)
    return {"split": split, "track": track, "pair": pair, "k": k, "method": method,
            "seed": seed, "policy": policy_sha, "guidance": method_guidance(method, cfg),
            "horizons_s": horizons(cfg.tasks),
            **{f: json.loads(json.dumps(c[f])) for f in RUN_FIELDS}}


def record_path(split: str, quick: bool, ident: dict) -> Path:
    name = f"k{ident['k']}_s{ident['seed']}_{ident['method'].replace('/', '_')}.json"
    return RECORDS / (split + ("_quick" if quick else "")) / ident["track"] / ident["pair"] / name


def work_dir(work: str | Path, split: str, quick: bool, track: str, pair: str) -> Path:
    """Scratch folder of one (split, track, pair): data, VAEs, run folders (not committed)."""
    return Path(work) / (split + ("_quick" if quick else "")) / track / pair


def adaptation_set(cfg: BenchConfig, work: Path, new_arm: str, seed: int, k: int,
                   render: bool) -> Path:
    """K demos per task (+ held-out) of one training seed on the new arm; the K-subsets of one
    seed are nested (the first K of the same recording)."""
    from ate_ros.core.data.episode_format import EMBODIMENT_FILE
    from ate_ros.core.sim.recording import record_dataset

    n = max(cfg.ks) + cfg.val_demos
    # The recording's size and horizons: quick and full sets, or other horizons, never mix.
    tag = "-".join(f"{h:g}" for h in horizons(cfg.tasks).values())
    full = work / f"ada_s{seed}_n{n}_h{tag}"
    for i, task in enumerate(cfg.tasks):
        if not (full / task / "val").is_dir():
            record_dataset(new_arm, task, n, full / task, seed=data_seed(seed, i),
                           val_fraction=cfg.val_demos / n, render=render)
    dst = work / f"ada_s{seed}_n{n}_h{tag}_k{k}"
    if (dst / ".complete").is_file():  # main() builds the sets before its worker pool
        return dst
    if dst.is_dir():
        shutil.rmtree(dst)
    for task in cfg.tasks:
        train = sorted((full / task / "train").iterdir())[:k]
        for split, files in (("train", train), ("val", sorted((full / task / "val").iterdir()))):
            (dst / split).mkdir(parents=True, exist_ok=True)
            for f in files:
                os.link(f, dst / split / f.name)
    shutil.copy(full / cfg.tasks[0] / EMBODIMENT_FILE, dst / EMBODIMENT_FILE)
    (dst / ".complete").write_text("")
    return dst


def stage1(cfg: BenchConfig, work: Path, pair: Pair) -> Path:
    """Stage-1 VAE on the pair's pre-training arms (recorded here; shared by every run)."""
    from ate_ros.core.sim.recording import record_dataset

    pre = []
    for a, arm in enumerate(pair.pretrain):
        for t, task in enumerate(cfg.tasks):
            dst = work / "pretrain_data" / f"{arm}-{task}"
            if not (dst / "train").is_dir():
                n = cfg.pretrain_per_task
                # Stage 1 reads actions only: no camera frames.
                record_dataset(arm, task, n, dst, seed=5000 + 100 * (3 * a + t),
                               val_fraction=max(0.1, 1.0 / n), render=False)
            pre.append((dst, arm))
    out = work / "stage1"
    if not (out / "config.json").is_file():
        _cli(["align", "--pretrain", ",".join(str(d) for d, _ in pre), "--embodiment-pre",
              ",".join(a for _, a in pre), "--out", str(out), "--epochs-stage1",
              str(cfg.align_epochs[0]), "--short", "pad", "--no-progress", "--no-control",
              "--device", "cpu", "--resume"])
    return out


def stage2(cfg: BenchConfig, stage1_dir: Path, data: Path, new_arm: str, out: Path) -> Path:
    if not (out / "config.json").is_file():
        _cli(["align", "--stage1", str(stage1_dir), "--adapt", str(data), "--embodiment-ada",
              new_arm, "--out", str(out), "--epochs-stage2", str(cfg.align_epochs[1]),
              "--short", "pad", "--no-progress", "--no-control", "--device", "cpu", "--resume"])
    return out


def rollouts(policy, arm: str, task: str, episodes: int, seed: int) -> list[int]:
    from ate_ros.core.sim import evaluate_policy

    r = evaluate_policy(policy, arm, task, episodes=episodes, seed=seed)
    return [int(e.success) for e in r.records]


def run_one(cfg_dict: dict, split: str, quick: bool, track: str, pair_name: str, k: int,
            method: str, seed: int, work: str, command: str, threads: int) -> dict:
    """Fine-tune with checkpoints on the schedule until the validation plateau; write and
    return the run's record (reused when one with the same identity exists)."""
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("MUJOCO_GL", "egl")
    cfg = BenchConfig(**{f: tuple(tuple(x) if isinstance(x, list) else x for x in v)
                         if isinstance(v, list) else v for f, v in cfg_dict.items()})
    pair = pair_of(track, pair_name)
    policy_dir = ROOT / pair.policy
    ident = run_identity(cfg, split, track, pair_name, k, method, seed, fingerprint(policy_dir))
    path = record_path(split, quick, ident)
    if path.is_file():
        prev = json.loads(path.read_text())
        if prev.get("identity") == ident:
            _log(f"reusing {path}")
            return prev
    from ate_ros.core.steer.guidance import GuidanceConfig
    from ate_ros.core.steer.trainer import FinetuneConfig, finetune_policy

    wdir = work_dir(work, split, quick, track, pair_name)
    s1 = stage1(cfg, wdir, pair)
    # Camera frames only for the image track (the low-dim policy reads the environment state).
    data = adaptation_set(cfg, wdir, pair.new, seed, k, render=track == "image")
    g = method_guidance(method, cfg)
    vae = stage2(cfg, s1, data, pair.new, wdir / f"vae_s{seed}_k{k}") if g else None
    sp = SPLITS[split]
    out = wdir / f"k{k}_s{seed}_{method.replace('/', '_')}"
    if out.exists():
        shutil.rmtree(out)
    schedule = set(cfg.schedule)
    curve: dict[str, dict[str, list]] = {t: {"val": [], "eval": []} for t in cfg.tasks}
    val_pooled: list[float] = []
    t_cpu = time.process_time()

    def on_eval(step: int, policy) -> bool:
        if step not in schedule:
            return False
        policy.eval()
        for task in cfg.tasks:
            v = rollouts(policy, pair.new, task, cfg.val_episodes, sp.val_base + seed)
            e = rollouts(policy, pair.new, task, cfg.eval_episodes, sp.eval_base + seed)
            curve[task]["val"].append([step, float(np.mean(v))])
            curve[task]["eval"].append([step, e])
        val_pooled.append(float(np.mean([curve[t]["val"][-1][1] for t in cfg.tasks])))
        _log(f"{track}/{pair_name} K={k} s={seed} {method} step {step}: val "
             f"{val_pooled[-1]:.2f} eval "
             f"{np.mean([np.mean(curve[t]['eval'][-1][1]) for t in cfg.tasks]):.2f}")
        return should_stop([s for s, _ in curve[cfg.tasks[0]]["val"]], val_pooled, cfg)

    guidance = GuidanceConfig(enabled=g is not None, **(g or {}))
    finetune_policy(FinetuneConfig(
        data=[str(data)], out=str(out), policy_path=str(policy_dir),
        vae=None if vae is None else str(vae), guidance=guidance, steps=max(cfg.schedule),
        batch_size=cfg.batch_size, seed=seed, device="cpu", eval_every=math.gcd(*cfg.schedule),
        save_every=max(cfg.schedule), show_progress=False, log_every=50, eval_samples=16),
        on_eval=on_eval)
    steps = [s for s, _ in curve[cfg.tasks[0]]["val"]]
    best = converged_index(val_pooled, steps, cfg.min_steps)
    from ate_ros.core.training.files import read_json

    # Action MSE of the EMA policy on the held-out adaptation demos (all tasks), per checkpoint.
    mse = dict(read_json(out / "metrics.json")["history"].get("eval/action_mse", []))
    tasks = {}
    for task in cfg.tasks:
        ev = curve[task]["eval"]
        tasks[task] = {"success_curve": [[s, float(np.mean(o))] for s, o in ev],
                       "val_curve": curve[task]["val"],
                       "outcomes": ev[best][1], "converged_success": float(np.mean(ev[best][1]))}
    rec = {"identity": ident, "track": track, "pair": pair_name, "k": k, "method": method,
           "seed": seed, "split": split, "tasks": tasks, "val_pooled": val_pooled,
           "converged_step": steps[best], "stopped_at": steps[-1],
           "val_action_mse": [[s, float(mse[s])] for s in steps if s in mse],
           "success_curve": [[s, float(np.mean([np.mean(curve[t]["eval"][i][1])
                                                for t in cfg.tasks]))]
                             for i, s in enumerate(steps)],
           "converged_success": float(np.mean([tasks[t]["converged_success"]
                                               for t in cfg.tasks])),
           "cpu_s": time.process_time() - t_cpu,
           "meta": meta(command, [seed])}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, separators=(",", ":")) + "\n")
    shutil.rmtree(out, ignore_errors=True)  # the record is the result; weights are not kept
    _log(f"wrote {path}: converged {rec['converged_success']:.2f} at step "
         f"{rec['converged_step']} (stopped at {rec['stopped_at']})")
    return rec


# ----- merge and print ---------------------------------------------------------------------------
def matching_records(cfg: BenchConfig, split: str, quick: bool, jobs: list[tuple]) -> list[dict]:
    """The records of ``jobs`` ((track, pair, k, method, seed)) that exist with this config."""
    out = []
    for track, pair_name, k, method, seed in jobs:
        policy_dir = ROOT / pair_of(track, pair_name).policy
        if not (policy_dir / "model.safetensors").is_file():
            continue
        ident = run_identity(cfg, split, track, pair_name, k, method, seed,
                             fingerprint(policy_dir))
        path = record_path(split, quick, ident)
        if path.is_file():
            rec = json.loads(path.read_text())
            if rec.get("identity") == ident:
                out.append(rec)
    return out


def print_summary(result: dict) -> None:
    print(f"\nAdaptation, converged protocol ({result['split']} split); converged success "
          "[Wilson 95%], ATE - direct [paired bootstrap 95%], AUC ratio, speed-up")
    for e in result["summary"]:
        for method, m in e["methods"].items():
            lo, hi = m["wilson95"]
            diff = ("" if "minus_direct" not in m else
                    f"{100 * m['minus_direct']:+6.1f} pts [{100 * m['minus_direct_ci95'][0]:+.1f},"
                    f" {100 * m['minus_direct_ci95'][1]:+.1f}]  auc x{m['auc_ratio'] or 0:.2f}"
                    f"  speed-up {m['speedup'] or float('nan'):.2f}")
            print(f"{e['track']:7} {e['pair']:15} K={e['k']:<3} {method:22} "
                  f"{m['converged_success']:6.1%} [{lo:.0%}, {hi:.0%}] n={m['n']:<5} "
                  f"steps {m['converged_steps']}  {diff}")
    for key, ok in result["direct_monotone_in_k"].items():
        if ok is False:
            print(f"WARNING {key}: direct's converged success falls with K beyond its intervals")


def write_result(cfg: BenchConfig, split: str, quick: bool, jobs: list[tuple], command: str,
                 seeds: list[int]) -> dict:
    records = matching_records(cfg, split, quick, jobs)
    if not records:
        raise SystemExit("no finished runs to merge for this configuration")
    res = {"benchmark": "bench_adaptation", "protocol": "converged", "split": split,
           "quick": quick, "meta": meta(command, seeds), "seeds": seeds,
           "episodes": {"validation": f"evaluate_policy(seed={SPLITS[split].val_base} + seed)",
                        "evaluation": f"evaluate_policy(seed={SPLITS[split].eval_base} + seed)"},
           "config": asdict(cfg), "intervals": INTERVALS, **summarize(records, cfg),
           "runs_expected": len(jobs), "runs_finished": len(records),
           "cpu_s_total": float(sum(r.get("cpu_s", 0.0) for r in records))}
    if split == "select":
        res["chosen"] = selection(res["summary"], len(records), len(jobs))
        res["chosen"].update({"clamp": cfg.clamp, "schedule": list(cfg.schedule),
                              "not_varied": "clamp and schedule were not varied"})
    name = "bench_adaptation" + ("_selection" if split == "select" else "") + \
        ("_quick" if quick else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=1) + "\n")
    print_summary(res)
    _log(f"wrote {(RESULTS / name)}.json ({len(records)}/{len(jobs)} runs)")
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="<= 10 min smoke-size run")
    p.add_argument("--split", choices=sorted(SPLITS), default="report")
    p.add_argument("--track", default="lowdim", help=f"comma-separated, of {sorted(TRACKS)}")
    p.add_argument("--pair", default="", help=f"comma-separated, of {sorted(PAIRS)} (default: "
                   "every pair whose pre-trained policy exists)")
    p.add_argument("--ks", default="", help="only these K (a part of the run)")
    p.add_argument("--seeds", default="", help="only these training seeds of the split")
    p.add_argument("--methods", default="")
    p.add_argument("--merge", action="store_true",
                   help="run nothing: fold the finished records into the result file")
    p.add_argument("--work", default=str(ROOT / "runs" / "bench_adaptation_converged"))
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (1 thread each)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads of a run with --jobs 1 (default 2; 1 on a shared machine)")
    args = p.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    command = " ".join(["python benchmarks/bench_adaptation.py",
                        *(sys.argv[1:] if argv is None else argv)])
    cfg = QUICK if args.quick else BenchConfig()
    if args.split == "select":
        cands = tuple(candidate_method(lam, d) for lam, d in SELECT_CANDIDATES)
        cfg = replace(cfg, methods=("direct", *cands), candidates=SELECT_CANDIDATES,
                      ks=cfg.ks if args.quick else SELECT_KS)
    if args.methods:
        cfg = replace(cfg, methods=tuple(args.methods.split(",")))
    seeds = list(SPLITS[args.split].train_seeds[:1] if args.quick
                 else SPLITS[args.split].train_seeds)
    if args.seeds:
        wanted = [int(s) for s in args.seeds.split(",")]
        bad = [s for s in wanted if s not in SPLITS[args.split].train_seeds]
        if bad:
            p.error(f"seeds {bad} are not {args.split}-split seeds "
                    f"{SPLITS[args.split].train_seeds}")
        seeds = wanted
    ks = [int(x) for x in args.ks.split(",")] if args.ks else list(cfg.ks)
    tracks = args.track.split(",")
    pairs = args.pair.split(",") if args.pair else list(PAIRS)
    for t in tracks:
        if t not in TRACKS:
            p.error(f"unknown track {t!r}")
    runnable = []
    for t in tracks:
        for pr in pairs:
            pol = ROOT / pair_of(t, pr).policy
            if (pol / "model.safetensors").is_file():
                runnable.append((t, pr))
            else:
                _log(f"skipping {t}/{pr}: no pre-trained policy at {pol}")
    split_seeds = list(SPLITS[args.split].train_seeds[:1] if args.quick
                       else SPLITS[args.split].train_seeds)
    all_jobs = [(t, pr, k, m, s) for t, pr in runnable for k in cfg.ks for m in cfg.methods
                for s in split_seeds]
    todo = [j for j in all_jobs if j[2] in ks and j[4] in seeds]
    if not args.merge:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        cfg_dict = json.loads(json.dumps(asdict(cfg)))
        t0 = time.monotonic()
        # Small K first: they stop early and give the first records soonest.
        todo.sort(key=lambda j: (j[2], j[4], j[3]))
        # Stage 1 (and the pre-training data) once per (track, pair), before the pool.
        for t, pr in runnable:
            stage1(cfg, work_dir(args.work, args.split, args.quick, t, pr), pair_of(t, pr))
        # Stage 2 per (seed, K) before the pool too: the guided methods of one seed and K share
        # it, and two workers must not write one folder.
        for t, pr, k, s in sorted({(j[0], j[1], j[2], j[4]) for j in todo}):
            wdir = work_dir(args.work, args.split, args.quick, t, pr)
            data = adaptation_set(cfg, wdir, pair_of(t, pr).new, s, k, render=t == "image")
            if any(method_guidance(j[3], cfg) for j in todo if j[:3] == (t, pr, k)):
                stage2(cfg, wdir / "stage1", data, pair_of(t, pr).new, wdir / f"vae_s{s}_k{k}")
        if args.jobs <= 1:
            for j in todo:
                run_one(cfg_dict, args.split, args.quick, *j, args.work, command,
                        args.threads or 2)
        else:
            # spawn: MuJoCo's GL context and torch do not survive fork.
            with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
                futs = [pool.submit(run_one, cfg_dict, args.split, args.quick, *j, args.work,
                                    command, 1) for j in todo]
                for f in futs:
                    f.result()
        _log(f"{len(todo)} runs done in {(time.monotonic() - t0) / 60:.1f} min")
    write_result(cfg, args.split, args.quick, all_jobs, command, split_seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())

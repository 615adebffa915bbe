"""Scale scan of inference-time steering on the adaptation benchmark's fine-tuned policies.

Loads the policies that ``bench_adaptation.py`` fine-tuned (``runs/bench_adaptation/full/
k{K}_s{seed}_{method}``) and the stage-2 VAE of each K, and evaluates each policy closed loop
with steering at every scale given (same episodes and seeds as the benchmark), so only the
evaluation is repeated, never the fine-tuning.

    .venv/bin/python benchmarks/scan_inference_steering.py --ks 10,50 --seeds 0 \\
        --scales 0.03,0.1,0.3 --jobs 2

Prints success per (K, method, scale), pooled over seeds and tasks with a 95% Wilson interval,
and writes ``benchmarks/results/scan_inference_steering.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))  # its config, evaluation and pooling

import adaptation_fixed_budget as bench  # noqa: E402

from ate_ros.commands.arguments import csv_list  # noqa: E402


def _evaluate(work: str, k: int, seed: int, method: str, scale: float) -> dict:
    import torch

    torch.set_num_threads(1)
    cfg = replace(bench.BenchConfig(), inference_steering=scale)
    run = Path(work) / f"k{k}_s{seed}_{method}"
    return {"k": k, "seed": seed, "method": method, "scale": scale,
            "eval": bench.evaluate(run, cfg, seed, vae=Path(work) / f"vae_k{k}")}


def _ints(text: str) -> list[int]:
    return [int(x) for x in csv_list(text)]


def _floats(text: str) -> list[float]:
    return [float(x) for x in csv_list(text)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench_adaptation" / "full"))
    ap.add_argument("--ks", type=_ints, default="10,25,50")
    ap.add_argument("--seeds", type=_ints, default="0,1,2")
    ap.add_argument("--methods", type=csv_list, default="direct,ate")
    ap.add_argument("--scales", type=_floats, default="0.03,0.1,0.3")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "scan_inference_steering.json"))
    args = ap.parse_args(argv)
    work = Path(args.work)
    jobs = [(k, s, m, sc) for k in args.ks for s in args.seeds for m in args.methods
            for sc in args.scales]
    missing = sorted({f"k{k}_s{s}_{m}" for k, s, m, _ in jobs
                      if not (work / f"k{k}_s{s}_{m}" / "config.json").is_file()}
                     | {f"vae_k{k}" for k, *_ in jobs if not (work / f"vae_k{k}").is_dir()})
    if missing:
        print(f"not in {work}: {', '.join(missing)} (run bench_adaptation.py first)",
              file=sys.stderr)
        return 2
    t0 = time.monotonic()
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        runs = list(pool.map(_evaluate, *zip(*[(str(work), *j) for j in jobs])))
    # Pooled over seeds and tasks as the benchmark pools them, one scale at a time.
    cfg = replace(bench.BenchConfig(), ks=tuple(args.ks))
    rows = []
    for sc in args.scales:
        pooled = bench.aggregate([dict(r, curve=[]) for r in runs if r["scale"] == sc], cfg)
        rows += [{"k": row["k"], "method": row["method"], "scale": sc,
                  **{f: row[f] for f in ("success", "ci95", "n", "per_task")}}
                 for row in pooled.values()]
    table = {f"K={r['k']}/{r['method']}/{r['scale']:g}": r
             for r in sorted(rows, key=lambda r: (r["k"], r["method"], r["scale"]))}
    print(f"{'K':>3} {'method':<7} {'scale':>6} {'success':>8} {'95% CI':>12}  per task")
    for row in table.values():
        lo, hi = row["ci95"]
        tasks = "  ".join(f"{t} {v:.0%}" for t, v in row["per_task"].items())
        print(f"{row['k']:>3} {row['method']:<7} {row['scale']:>6g} {row['success']:>8.1%} "
              f"{f'[{lo:.0%}, {hi:.0%}]':>12}  {tasks}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "scan_inference_steering", "work": str(work),
                               "table": table, "runs": runs,
                               "wall_s": time.monotonic() - t0}, indent=2))
    print(f"wrote {out} ({(time.monotonic() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

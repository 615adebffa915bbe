"""Chunk latency of the compact VLA policy: both heads at 5/10/20 steps, batch 1.

Runs on CPU (1 intra-op thread by default) and additionally on CUDA when available. "traced"
is the default inference path (eval mode, ``fast_inference``: one traced call per denoising
step runs the decoder and the DDIM / flow Euler update; on CUDA the whole loop is replayed as
one CUDA graph); "eager" is ``fast_inference=False``; on CUDA "no graph" is the traced loop
without the graph.
Prints a table; a full run writes ``benchmarks/results/bench_policy.json``, a partial one
(``--quick``, ``--heads``, ``--steps``, ``--iters``) only writes where ``--out`` says.

    .venv/bin/python benchmarks/bench_policy.py [--quick] [--threads 2]
    .venv/bin/python benchmarks/bench_policy.py --heads diffusion --steps 10 --out /tmp/b.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ate_ros.core.policy_contract import PolicyObservation
from ate_ros.core.steer.policies import VLAConfig, VLAPolicy

RESULTS = Path(__file__).resolve().parent / "results"
HEADS = ("diffusion", "flow")
STEPS = (5, 10, 20)


def bench(head: str, steps: int, device: str, iters: int, warmup: int) -> dict:
    """Traced (default) and eager sampling of the same policy, interleaved call by call so
    that machine noise hits both alike."""
    torch.manual_seed(0)
    policy = VLAPolicy(VLAConfig(head=head, text_encoder="hash")).to(device).eval()
    mask = np.zeros(128, bool)
    mask[:7] = True
    rng = np.random.default_rng(0)
    obs = PolicyObservation(images={"front": rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)},
                            qpos=np.zeros(128), mask=mask, instruction="pick up the cube")
    # variant -> (fast_inference, cuda_graphs)
    variants = {"fast": (True, True), "eager": (False, False)}
    if device.startswith("cuda"):
        variants["nograph"] = (True, False)

    def run(name: str, seed: int) -> None:
        policy.fast_inference, policy.cuda_graphs = variants[name]
        policy.predict_chunk(obs, num_steps=steps, seed=seed)

    for i in range(warmup):
        for name in variants:
            run(name, i)
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(iters):
        for name in variants:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t, c = time.perf_counter(), time.thread_time()
            run(name, i)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - t) * 1e3)
            cpu[name].append((time.thread_time() - c) * 1e3)
    row = {"head": head, "steps": steps, "device": device, "iters": iters,
           "p50_ms": float(np.percentile(times["fast"], 50)),
           "p99_ms": float(np.percentile(times["fast"], 99)),
           "mean_ms": float(np.mean(times["fast"])),
           # CPU time of the calling thread: with --threads 1 it leaves out the time the
           # thread waits for a core, though not the slowdown of a core, cache or memory bus
           # shared with other processes (see "loadavg" in the JSON).
           "thread_cpu_p50_ms": float(np.percentile(cpu["fast"], 50)),
           "thread_cpu_p99_ms": float(np.percentile(cpu["fast"], 99)),
           "eager_p50_ms": float(np.percentile(times["eager"], 50)),
           "eager_p99_ms": float(np.percentile(times["eager"], 99)),
           "params": sum(p.numel() for p in policy.parameters()),
           "vision_pool": policy.config.vision_pool}
    if "nograph" in times:
        row["nograph_p50_ms"] = float(np.percentile(times["nograph"], 50))
        row["nograph_p99_ms"] = float(np.percentile(times["nograph"], 99))
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few iterations (smoke test)")
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads (1 is fastest for batch-1 chunks on a shared CPU)")
    ap.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS)
    ap.add_argument("--steps", nargs="+", type=int, default=list(STEPS),
                    help="denoising steps per chunk")
    ap.add_argument("--iters", type=int, default=None,
                    help="timed chunks per row and variant (default 200, 10 with --quick)")
    ap.add_argument("--out", default=None,
                    help="results JSON (default: benchmarks/results/bench_policy.json for a "
                    "full run; a partial run writes nothing unless given)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    iters, warmup = (10, 2) if args.quick else (200, 10)
    iters = args.iters or iters
    full = (not args.quick and iters >= 200 and sorted(args.heads) == sorted(HEADS)
            and sorted(args.steps) == sorted(STEPS))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    load_before = os.getloadavg()[0]
    rows = [bench(h, s, d, iters, warmup) for d in devices for h in args.heads
            for s in args.steps]
    load_after = os.getloadavg()[0]
    print(f"{'device':6} {'head':9} {'steps':>5} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'cpu p50':>8} {'cpu p99':>8} {'eager p50':>10} {'eager p99':>10} "
          f"{'no graph p50':>13}")
    for r in rows:
        nograph = f"{r['nograph_p50_ms']:13.2f}" if "nograph_p50_ms" in r else f"{'-':>13}"
        print(f"{r['device']:6} {r['head']:9} {r['steps']:5d} {r['p50_ms']:8.2f} "
              f"{r['p99_ms']:8.2f} {r['thread_cpu_p50_ms']:8.2f} {r['thread_cpu_p99_ms']:8.2f} "
              f"{r['eager_p50_ms']:10.2f} {r['eager_p99_ms']:10.2f} {nograph}")
    print(f"1-min load average: {load_before:.2f} before, {load_after:.2f} after "
          f"({os.cpu_count()} CPUs)")
    if args.out is None and not full:
        print("partial run: results not written (pass --out PATH to keep them)")
        return 0
    out = Path(args.out) if args.out else RESULTS / "bench_policy.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "bench_policy", "quick": args.quick,
                               "threads": args.threads, "torch": torch.__version__,
                               "machine": platform.processor() or platform.machine(),
                               "cuda": torch.cuda.get_device_name() if torch.cuda.is_available()
                               else None, "loadavg": [load_before, load_after],
                               "cpu_count": os.cpu_count(), "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

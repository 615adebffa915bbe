"""Benchmark of the alignment VAEs: step/epoch times per preset, and the quality report.

    .venv/bin/python benchmarks/bench_align.py [--quick] [--device auto|cpu|cuda]

Times: median seconds per optimisation step (forward + backward + AdamW) on batches of the
fixed synthetic dataset, and seconds per epoch (measured for small/mlp, extrapolated from the
step time for the paper preset, which runs a few steps only). Quality: the full two-stage
pipeline (small preset) with the control VAE on the same synthetic two-embodiment data.
Writes benchmarks/results/bench_align.json and prints tables.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(ROOT))

from ate_ros.core.align import (  # noqa: E402
    ActionVAE,
    AlignConfig,
    StageConfig,
    VAEConfig,
    count_parameters,
    format_report,
    train_alignment,
)
from ate_ros.core.align.synthetic import toy_arm, write_toy_dataset  # noqa: E402
from ate_ros.core.align.trainer import Tensors, vae_loss  # noqa: E402
from ate_ros.core.data.chunks import ChunkSource, fit_chunk_stats, load_chunks  # noqa: E402
from ate_ros.core.training.files import read_json, write_json  # noqa: E402
from ate_ros.core.training.runtime import autocast, select_device  # noqa: E402


def make_data(root: Path, quick: bool) -> dict[str, Path]:
    a3, a4 = toy_arm("arm3", 3), toy_arm("arm4", 4)
    n_pre = 16 if quick else 40
    write_toy_dataset(root / "pre", a3, n_train=n_pre, n_val=max(4, n_pre // 5), length=80,
                      seed=1)
    write_toy_dataset(root / "ada", a4, n_train=12, n_val=4, length=60, seed=2, amplitude=1.2,
                      offset=0.3)
    a3.to_yaml(root / "arm3.yaml")
    a4.to_yaml(root / "arm4.yaml")
    return {"pre": root / "pre", "ada": root / "ada", "arm3": root / "arm3.yaml",
            "arm4": root / "arm4.yaml"}


def time_steps(preset: str, data: Tensors, device: torch.device, batch: int, steps: int,
               warmup: int = 2) -> dict:
    torch.manual_seed(0)
    model = ActionVAE(VAEConfig.preset(preset, chunk_size=data.x.shape[1])).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    cfg = StageConfig(batch_size=batch)
    times = []
    for i in range(warmup + steps):
        idx = torch.randint(0, len(data), (batch,), device=device)
        t = time.perf_counter()
        with autocast(device):
            loss = vae_loss(model, data.x[idx], data.mask[idx], cfg, None, 2.0).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    step = statistics.median(times)
    steps_per_epoch = max(1, len(data) // batch)
    return {"preset": preset, "device": str(device), "params": count_parameters(model),
            "batch": batch, "steps_timed": steps, "step_s": step,
            "steps_per_epoch": steps_per_epoch, "epoch_s": step * steps_per_epoch,
            "epoch_chunks": len(data)}


def time_encode_grad(preset: str, device: torch.device, batch: int = 64, H: int = 16,
                     reps: int = 10) -> dict:
    """What steering pays per step: encode a chunk batch and take d(latent loss)/d(chunk)."""
    torch.manual_seed(0)
    model = ActionVAE(VAEConfig.preset(preset, chunk_size=H)).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    mask = torch.zeros(batch, 128, dtype=torch.bool, device=device)
    mask[:, :4] = True
    times = []
    for i in range(reps + 2):
        x = torch.randn(batch, H, 128, device=device, requires_grad=True)
        t = time.perf_counter()
        mu, _ = model.encode(x, mask)
        (g,) = torch.autograd.grad(mu.pow(2).sum(), x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - t)
    return {"preset": preset, "device": str(device), "batch": batch, "chunk": H,
            "encode_grad_s": statistics.median(times)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer steps/epochs (a smoke run)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_align.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = [select_device(args.device)]
    if devices[0].type == "cuda":
        devices.insert(0, torch.device("cpu"))
    results: dict = {"host": platform.node(), "torch": torch.__version__,
                     "threads": args.threads, "quick": args.quick, "timing": []}
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_data(Path(tmp), args.quick)
        cs = load_chunks([ChunkSource(paths["pre"], toy_arm("arm3", 3))], "train", 16)
        norm = fit_chunk_stats(cs)
        for dev in devices:
            data = Tensors.from_chunks(cs, norm, dev)
            for preset in ("mlp", "small", "paper"):
                big = preset == "paper"
                steps = (2 if args.quick else 5) if big else (5 if args.quick else 20)
                if big and dev.type == "cpu":
                    steps = 2 if args.quick else 3
                r = time_steps(preset, data, dev, 64 if big else 128, steps)
                results["timing"].append(r)
                print(f"{preset:6s} {str(dev):6s} params {r['params']/1e6:7.2f} M  batch "
                      f"{r['batch']:3d}  step {r['step_s']*1e3:8.1f} ms  epoch "
                      f"({r['epoch_chunks']} chunks) {r['epoch_s']:7.2f} s", flush=True)

            results.setdefault("encode_grad", [])
            for preset in ("mlp", "small"):
                r = time_encode_grad(preset, dev)
                results["encode_grad"].append(r)
                print(f"encode+grad {preset:6s} {str(dev):6s} B={r['batch']} H={r['chunk']}: "
                      f"{r['encode_grad_s']*1e3:.1f} ms", flush=True)

        e1, e2 = (4, 8) if args.quick else (30, 60)
        cfg = AlignConfig(out=str(Path(tmp) / "out"), pretrain=[str(paths["pre"])],
                          embodiment_pre=[str(paths["arm3"])], adapt=str(paths["ada"]),
                          embodiment_ada=str(paths["arm4"]), preset="small", chunk_size=16,
                          stage1=StageConfig(epochs=e1), stage2=StageConfig(epochs=e2),
                          device=args.device, progress=False, plots=False, tensorboard=False)
        t = time.perf_counter()
        out = train_alignment(cfg)
        summary = read_json(out / "metrics.json")["summary"]
        results["quality"] = {"epochs": [e1, e2], "seconds": time.perf_counter() - t,
                              "report": summary["quality"],
                              "stage_seconds": {k: summary[k].get("seconds", math.nan)
                                                for k in ("stage1", "stage2", "control")}}
        print(format_report(summary["quality"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

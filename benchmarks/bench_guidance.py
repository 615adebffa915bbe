"""Fine-tuning step time with ATE guidance vs without (same model, batch, data), plus a
reference-style guidance (per-batch MSE, reparameterised latents, element clamp, autograd
anomaly mode on) for comparison. Goal: guided / plain <= 1.10, the median over the run of the
ratio of neighbouring steps (the variants take turns step by step).

    .venv/bin/python benchmarks/bench_guidance.py [--quick] [--device cpu|cuda]

Prints a table and writes ``benchmarks/results/bench_guidance.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ate_ros.core.steer.guidance import GuidanceConfig, LatentGuidance
from ate_ros.core.steer.policies import (
    ACTION,
    OBS_IMAGES,
    OBS_MASK,
    OBS_STATE,
    OBS_TEXT,
    VLAConfig,
    VLAPolicy,
)

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(RESULTS.parent))
from result_meta import result_meta  # noqa: E402


def make_encoder(chunk: int, mask: torch.Tensor, device):
    """The align helper's small transformer VAE (random weights: timing only). Returns the
    full posterior ``(mu, logvar)`` (the reference style reads logvar) and the posterior mean
    alone, ``encode_mean``: what ``encoder_from_bundle`` gives ``LatentGuidance``."""
    from ate_ros.core.align import ActionVAE, VAEConfig

    vae = ActionVAE(VAEConfig.preset("small", chunk_size=chunk)).to(device).eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    mask = mask.to(device)

    def encode(x):
        return vae.encode(x, mask.expand(x.shape[0], -1))

    def encode_mean(x):
        return vae.encode_mean(x, mask.expand(x.shape[0], -1))

    return encode, encode_mean


class ReferenceStyleGuidance:
    """What the reference code does: batch-mean MSE between reparameterised latents with one
    shared epsilon, anomaly detection on, element-wise clamp (for timing comparison only)."""

    def __init__(self, encoder, parameterization, scale=2.0, clamp=0.1, mask=None,
                 to_encoder=None):
        self.encoder, self.param = encoder, parameterization
        self.scale, self.clamp, self.mask, self.to_encoder = scale, clamp, mask, to_encoder
        self.enabled = True

    def guided_target(self, target, noisy, clean, level, offset=None):
        from ate_ros.core.steer.guidance import GuidanceStats, guidance_coefficient

        with torch.enable_grad(), torch.autograd.set_detect_anomaly(True):
            x = noisy.detach().requires_grad_(True)
            off = 0 if offset is None else offset  # as LatentGuidance: added after to_encoder
            mu, logvar = self.encoder(self.to_encoder(x) + off)
            mu0, logvar0 = self.encoder(self.to_encoder(clean) + off)
            eps = torch.randn_like(mu)
            y = -F.mse_loss(mu + (0.5 * logvar).exp() * eps, mu0 + (0.5 * logvar0).exp() * eps)
            (g,) = torch.autograd.grad(y, x)
        g = g * self.mask.view(1, 1, -1)
        c = guidance_coefficient(self.param, level).view(-1, 1, 1)
        term = self.scale * (c * g).clamp(-self.clamp, self.clamp)
        if torch.isnan(term).any():
            print("[Error] grad has NaN or Inf values")
        return target - term, GuidanceStats(applied=x.shape[0])


def step_time(model, batch, guidance, opt, iters, warmup, device) -> list[float]:
    times = []
    for i in range(warmup + iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        loss, _ = model(batch, guidance=guidance)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1e3)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--head", default="diffusion", choices=("diffusion", "flow"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "bench_guidance.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    iters, warmup = (5, 2) if args.quick else (40, 5)
    torch.manual_seed(0)
    cfg = VLAConfig(head=args.head, text_encoder="hash")
    model = VLAPolicy(cfg).to(device).train()
    B, H = args.batch_size, cfg.chunk_size
    mask = torch.zeros(128, dtype=torch.bool)
    mask[:7] = True
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 1, H).view(1, H, 1)
    actions = (torch.sin(t * 3 + torch.rand(B, 1, 128, generator=g) * 6) * mask).float()
    batch = {OBS_IMAGES: torch.randint(0, 255, (B, 1, 96, 96, 3), dtype=torch.uint8),
             OBS_STATE: actions[:, 0].clone(), OBS_MASK: mask.expand(B, -1).clone(),
             OBS_TEXT: torch.randn(B, cfg.text_dim), ACTION: actions}
    batch = {k: v.to(device) for k, v in batch.items()}
    encoder, encoder_mean = make_encoder(H, mask, device)
    variants = {
        "plain": None,
        "ate": LatentGuidance(encoder_mean, model.parameterization, GuidanceConfig(), mask=mask,
                              to_encoder=model.unnormalize_action),
        "reference_style": ReferenceStyleGuidance(encoder, model.parameterization, mask=mask.to(
            device).float(), to_encoder=model.unnormalize_action),
    }
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    res: dict[str, list[float]] = {k: [] for k in variants}
    for guide in variants.values():
        step_time(model, batch, guide, opt, 0, warmup, device)
    # Interleave single steps, so that load changes on a shared machine hit all variants alike;
    # the ratio is the median of the ratios of neighbouring steps (one step of each variant).
    for _ in range(iters):
        for name, guide in variants.items():
            res[name] += step_time(model, batch, guide, opt, 1, 0, device)
    rows = {k: {"median_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90)),
                "n": len(v)} for k, v in res.items()}
    base = rows["plain"]["median_ms"]
    plain = np.asarray(res["plain"])
    for k, r in rows.items():
        r["ratio_vs_plain"] = float(np.median(np.asarray(res[k]) / plain))
        r["ratio_of_medians"] = r["median_ms"] / base
    print(f"device {device}, head {args.head}, batch {B}, chunk {H}")
    print(f"{'variant':16} {'median ms':>10} {'p90 ms':>8} {'ratio':>6}")
    for k, r in rows.items():
        print(f"{k:16} {r['median_ms']:10.2f} {r['p90_ms']:8.2f} {r['ratio_vs_plain']:6.3f}")
    ok = rows["ate"]["ratio_vs_plain"] <= 1.10
    print(f"goal guided/plain <= 1.10: {'met' if ok else 'NOT met'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    gpu_note = ("measured on this GPU" if device.type == "cuda" else
                "CPU run; GPU figures are from an earlier run (bench_guidance_h200_b32.json, "
                "bench_guidance_h200_b256.json)")
    out.write_text(json.dumps({"benchmark": "bench_guidance", "meta": result_meta(),
                               "gpu_figures": gpu_note, "quick": args.quick,
                               "device": str(device), "head": args.head, "batch_size": B,
                               "threads": args.threads, "torch": torch.__version__,
                               "results": rows, "goal_met": ok}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

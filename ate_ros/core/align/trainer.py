"""Training of the alignment VAEs and the whole two-stage pipeline (:func:`train_alignment`).

Stage 1 trains a VAE on the chunks of every pre-training embodiment with KL and MMD toward
N(0, I), then summarises its aggregate posterior as q_pre (:mod:`.prior`). Stage 2 trains a *new*
VAE on the adaptation chunks with the reverse KL(q_psi(z|a) || q_pre) and MMD between q_psi(z)
samples and q_pre samples (the paper; the reference code's stage-2 MMD still targets N(0, I)).
The quality report compares stage 2 with two baselines on the same held-out adaptation chunks:
the stage-1 encoder applied to them (``stage1_on_adapt``, what guidance would use without
align; ratios in ``vs_stage1``) and an optional control VAE (same architecture, adaptation data,
no alignment; ratios and the pass/fail verdict in ``checks``).

Devices: CPU or CUDA, picked automatically (``device="auto"``) or forced; bf16 autocast on CUDA
only. Multi-GPU: run the same command under torchrun, no code change::

    torchrun --nproc_per_node 4 $(which ate-ros) align --pretrain ... --out ...

Each process takes a disjoint 1/N shard of every epoch's permutation (what DistributedSampler
does) and DDP averages gradients; only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ate_ros.core.align.artifacts import StageModel, load_stage1, write_alignment
from ate_ros.core.align.configuration_vae import AlignConfig, StageConfig, VAEConfig
from ate_ros.core.align.losses import kl_standard, kl_to_gaussian, mmd_imq, recon_loss
from ate_ros.core.align.modeling_vae import ActionVAE, count_parameters
from ate_ros.core.align.prior import AggregatePosterior, GaussianLatent
from ate_ros.core.align.resume import AlignCheckpoints, StageProgress
from ate_ros.core.data.chunks import ChunkSet, ChunkSource, fit_chunk_stats, load_chunks
from ate_ros.core.embodiment import Embodiment, load_embodiment
from ate_ros.core.normalization import NormStats
from ate_ros.core.training.files import atomic_output_dir
from ate_ros.core.training.loop import EarlyStopping, Optimization
from ate_ros.core.training.runtime import (
    DistributedContext,
    RunLogger,
    progress,
    seed_everything,
    select_device,
)

logger = logging.getLogger(__name__)

REPORT_SAMPLES = 1024  # chunks / prior samples used for the MMD of the quality report


@dataclass
class Tensors:
    """Normalised chunks and their masks on the training device."""

    x: torch.Tensor      # (N, H, 128) float32, normalised
    mask: torch.Tensor   # (N, 128) bool

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @classmethod
    def from_chunks(cls, cs: ChunkSet, norm: NormStats, device: torch.device) -> Tensors:
        x = norm.normalize(torch.from_numpy(cs.chunks)).to(device)
        return cls(x, torch.from_numpy(cs.chunk_masks).to(device))


@dataclass
class LossTerms:
    total: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    mmd: torch.Tensor

    def floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "recon", "kl", "mmd")}


def vae_loss(model: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor, cfg: StageConfig,
             target: GaussianLatent | None, mmd_c: float, mmd_unbiased: bool = False,
             regularize: bool = True) -> LossTerms:
    """One batch of the InfoVAE objective.

    ``target`` None: KL and MMD toward N(0, I) (stage 1). Otherwise the reverse
    KL(q(z|a) || target) and MMD(q(z), target) (stage 2). ``regularize=False``: reconstruction
    only (KL/MMD are still computed for logging).
    """
    rec, z, mu, logvar = model(x, mask)
    rec, z, mu, logvar = rec.float(), z.float(), mu.float(), logvar.float()
    r = recon_loss(rec, x.float(), mask, cfg.recon_loss)
    if target is None:
        kl = kl_standard(mu, logvar).mean()
        ref = torch.randn_like(z)
    else:
        kl = kl_to_gaussian(mu, logvar, target.mean, target.cov_arg()).mean()
        ref = target.sample(z.shape[0]).to(z.device)
    mmd = mmd_imq(z, ref, mmd_c, mmd_unbiased)
    total = r + cfg.kl_weight * kl + cfg.mmd_weight * mmd if regularize else r
    return LossTerms(total, r, kl, mmd)


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, data: Tensors, cfg: StageConfig,
                  target: GaussianLatent | None, mmd_c: float, mmd_unbiased: bool,
                  regularize: bool, seed: int = 1234) -> dict[str, float]:
    """Mean loss terms over ``data`` with a fixed noise seed (comparable across epochs)."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    devices = [data.x.device] if data.x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for i in range(0, len(data), cfg.batch_size):
            xb, mb = data.x[i:i + cfg.batch_size], data.mask[i:i + cfg.batch_size]
            if xb.shape[0] < 2:
                continue
            t = vae_loss(model, xb, mb, cfg, target, mmd_c, mmd_unbiased, regularize).floats()
            for k, v in t.items():
                sums[k] = sums.get(k, 0.0) + v * xb.shape[0]
            n += xb.shape[0]
    model.train(was_training)
    return {k: v / max(n, 1) for k, v in sums.items()}


def train_vae(model: ActionVAE, train: Tensors, val: Tensors, cfg: StageConfig, *, name: str,
              target: GaussianLatent | None = None, regularize: bool = True,
              mmd_c: float = 2.0, mmd_unbiased: bool = False, device: torch.device,
              ctx: DistributedContext | None = None, run_logger: RunLogger | None = None,
              ckpt_dir: Path | None = None, norm: NormStats | None = None, amp: bool = True,
              show_progress: bool = True, seed: int = 0,
              checkpoints: AlignCheckpoints | None = None) -> dict[str, Any]:
    """Train ``model`` in place (best val-loss weights restored at the end); returns a summary.

    The shared optimisation loop (:class:`~ate_ros.core.training.loop.Optimization`: AdamW +
    linear warm-up/cosine LR, gradient clipping, non-finite guard) and early stopping on the
    validation loss (:class:`~ate_ros.core.training.loop.EarlyStopping`). With ``checkpoints``
    the run is checkpointed by epoch and carries on from the last checkpoint when resuming (a
    VAE already trained is loaded, not trained again).
    """
    ctx = ctx or DistributedContext(device)
    model.to(device).train()
    net = ctx.wrap(model)
    n_local = math.ceil(len(train) / ctx.world_size)
    steps_per_epoch = max(1, n_local // cfg.batch_size if n_local >= cfg.batch_size else 1)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    optim = Optimization(model, lr=cfg.lr, weight_decay=cfg.weight_decay,
                         total_steps=cfg.epochs * steps_per_epoch,
                         warmup_steps=cfg.warmup_steps, min_lr_ratio=cfg.min_lr_ratio,
                         grad_clip=cfg.grad_clip, device=device, amp=amp, dist=ctx)
    stopper = EarlyStopping(cfg.patience)
    gen = torch.Generator().manual_seed(seed)
    history = run_logger.history if run_logger is not None else {}
    resumed = (checkpoints.load(name, optim, stopper, gen, history)
               if checkpoints is not None else None)
    first = resumed.epochs_done if resumed else 0
    step, step_time = (resumed.steps, resumed.step_seconds) if resumed else (0, [])
    t0 = time.perf_counter() - (resumed.seconds if resumed else 0.0)
    if target is not None:
        target = target.to(device)
    epochs = range(first, first if resumed and resumed.done else cfg.epochs)
    bar = progress(epochs, total=len(epochs), desc=name, enabled=show_progress and ctx.is_main)
    epoch = first - 1
    for epoch in bar:
        perm = torch.randperm(len(train), generator=gen)[ctx.rank::ctx.world_size]
        sums = {"total": 0.0, "recon": 0.0, "kl": 0.0, "mmd": 0.0}
        for s in range(steps_per_epoch):
            idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size].to(device)
            if idx.numel() < 2:  # MMD needs two samples
                continue
            ts = time.perf_counter()
            with optim.autocast():
                terms = vae_loss(net, train.x[idx], train.mask[idx], cfg, target, mmd_c,
                                 mmd_unbiased, regularize)
            if optim.step(terms.total, where=f"{name} epoch {epoch} step {s}") is None:
                continue  # non-finite loss: skipped
            step += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            step_time.append(time.perf_counter() - ts)
            for k, v in terms.floats().items():
                sums[k] += v / steps_per_epoch
        train_terms = {k: ctx.all_reduce_mean(v) for k, v in sums.items()}
        val_terms = evaluate_loss(model, val, cfg, target, mmd_c, mmd_unbiased, regularize)
        if run_logger is not None:
            run_logger.log(epoch, {**train_terms, "lr": optim.lr}, prefix=f"{name}/train")
            run_logger.log(epoch, val_terms, prefix=f"{name}/val")
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(rec=f"{train_terms['recon']:.4f}", kl=f"{train_terms['kl']:.3g}",
                            mmd=f"{train_terms['mmd']:.3g}", val=f"{val_terms['total']:.4f}")
        stop = stopper.update(val_terms["total"], epoch, net)
        if checkpoints is not None and not stop and epoch + 1 < cfg.epochs and \
                checkpoints.due(epoch + 1):
            checkpoints.save(name, optim, stopper, gen, history, StageProgress(
                epoch + 1, step, time.perf_counter() - t0, step_time, False, {}))
        if stop:
            logger.info("%s: early stop at epoch %d (best %d)", name, epoch, stopper.best_at)
            break
    summary = resumed.summary if resumed and resumed.done else {
        "epochs_run": epoch + 1, "best_epoch": stopper.best_at,
        "best_val_loss": stopper.best, "steps": step,
        "seconds": time.perf_counter() - t0,
        "step_seconds_median": float(np.median(step_time)) if step_time else float("nan"),
        "nonfinite_loss_steps": optim.bad_steps, "params": count_parameters(model)}
    if checkpoints is not None and not (resumed and resumed.done):
        # Before the best weights are restored: a resumed run writes the same last weights.
        checkpoints.save(name, optim, stopper, gen, history, StageProgress(
            epoch + 1, step, summary["seconds"], step_time, True, summary))
    if ckpt_dir is not None and norm is not None and ctx.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        StageModel(model, norm).save(ckpt_dir / f"{name}_last.safetensors")
    stopper.restore(model)
    if ckpt_dir is not None and norm is not None and ctx.is_main:
        StageModel(model, norm).save(ckpt_dir / f"{name}_best.safetensors")
    model.eval()
    return summary


# ----- encoding / metrics ---------------------------------------------------------------------
@torch.no_grad()
def encode_all(model: ActionVAE, data: Tensors, batch: int = 512
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar) of every chunk, on CPU."""
    model.eval()
    mus, lvs = [], []
    for i in range(0, len(data), batch):
        mu, lv = model.encode(data.x[i:i + batch], data.mask[i:i + batch])
        mus.append(mu.float().cpu())
        lvs.append(lv.float().cpu())
    return torch.cat(mus), torch.cat(lvs)


def latent_summary(mu: torch.Tensor, logvar: torch.Tensor, full: bool) -> GaussianLatent:
    acc = AggregatePosterior(mu.shape[1], full)
    acc.update(mu, logvar)
    return acc.result()


@torch.no_grad()
def recon_error(model: ActionVAE, data: Tensors, norm: NormStats, batch: int = 512) -> float:
    """Mean |reconstruction - chunk| over masked elements, in joint units (decoding mu)."""
    model.eval()
    total, count = 0.0, 0.0
    for i in range(0, len(data), batch):
        x, m = data.x[i:i + batch], data.mask[i:i + batch]
        mu, _ = model.encode(x, m)
        err = (norm.unnormalize(model.decode(mu, m).float()) - norm.unnormalize(x)).abs()
        w = m[:, None, :].expand_as(err).float()
        total += float((err * w).sum())
        count += float(w.sum())
    return total / max(count, 1.0)


@torch.no_grad()
def alignment_metrics(mu: torch.Tensor, logvar: torch.Tensor, prior: GaussianLatent,
                      mmd_c: float, seed: int = 0) -> dict[str, float]:
    """MMD (unbiased) between posterior samples and q_pre samples, and mean KL(q(z|a)||q_pre)."""
    g = torch.Generator().manual_seed(seed)
    prior = prior.to("cpu")
    n = min(len(mu), REPORT_SAMPLES)
    idx = torch.randperm(len(mu), generator=g)[:n]
    z = mu[idx] + torch.randn(mu[idx].shape, generator=g) * (0.5 * logvar[idx]).exp()
    ref = prior.sample(REPORT_SAMPLES, generator=g)
    kl = kl_to_gaussian(mu, logvar, prior.mean, prior.cov_arg())
    return {"mmd_to_prior": float(mmd_imq(z, ref, mmd_c, unbiased=True)),
            "kl_to_prior": float(kl.mean()),
            "mean_dist_to_prior": float((mu.mean(0) - prior.mean).norm())}


def format_report(report: dict[str, Any]) -> str:
    """The quality report as a printable table."""
    rows = [("model", "recon MAE (joint units)", "MMD to q_pre", "mean KL to q_pre / dim")]
    for name in ("stage1", "stage1_on_adapt", "stage2", "control"):
        r = report.get(name)
        if not r:
            continue
        rows.append((name, f"{r.get('recon_mae', float('nan')):.4g}",
                     f"{r['mmd_to_prior']:.4g}" if "mmd_to_prior" in r else "-",
                     f"{r['kl_to_prior']:.4g}" if "kl_to_prior" in r else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    base = report.get("vs_stage1")
    if base:
        lines.append(f"aligned/stage-1 encoder (no stage 2) MMD ratio {base['mmd_ratio']:.3g}, "
                     f"KL ratio {base['kl_ratio']:.3g}, recon ratio {base['recon_ratio']:.3g}"
                     f" -> stage 2 lowers MMD: {'yes' if base['mmd_lowered'] else 'no'}, "
                     f"KL: {'yes' if base['kl_lowered'] else 'no'}")
    chk = report.get("checks")
    if chk:
        lines.append(f"aligned/control MMD ratio {chk['mmd_ratio']:.3g}, KL ratio "
                     f"{chk['kl_ratio']:.3g}, recon ratio {chk['recon_ratio']:.3g} -> "
                     f"{'PASS' if chk['passed'] else 'FAIL'}")
    return "\n".join(lines)


def metric_ratios(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """``a`` over ``b`` for MMD and KL to q_pre and the reconstruction error."""
    return {f"{k}_ratio": a[m] / max(b[m], 1e-12)
            for k, m in (("mmd", "mmd_to_prior"), ("kl", "kl_to_prior"), ("recon", "recon_mae"))}


# ----- pipeline -------------------------------------------------------------------------------
def _sources(datasets: list[str], embodiments: list[Embodiment]) -> list[ChunkSource]:
    return [ChunkSource(Path(d), e) for d, e in zip(datasets, embodiments)]


def _pick(cs: ChunkSet, n: int, seed: int) -> ChunkSet:
    if len(cs) <= n:
        return cs
    idx = np.sort(np.random.default_rng(seed).choice(len(cs), n, replace=False))
    return ChunkSet(cs.chunks[idx], cs.source[idx], cs.masks, cs.names, cs.keys)


def train_alignment(config: AlignConfig) -> Path:
    """Run the whole alignment pipeline; returns the output folder (see :mod:`.artifacts`).

    All datasets are read and checked before anything is written; the output folder appears
    only when every step succeeded (nothing half-written on errors).
    """
    cfg = config
    device = select_device(cfg.device)
    ctx = DistributedContext(device)
    seed_everything(cfg.seed)
    t_start = time.perf_counter()
    H = cfg.chunk_size
    full = cfg.covariance == "full"

    # --- data (errors before any output) ------------------------------------------------------
    stage1_prev: tuple[StageModel, GaussianLatent, dict[str, Any]] | None = None
    if cfg.stage1_dir:
        stage1_prev = load_stage1(cfg.stage1_dir, device)
        pre_embs = ([load_embodiment(e) for e in cfg.embodiment_pre] if cfg.embodiment_pre else
                    [Embodiment.from_dict(e) for e in stage1_prev[2].get("embodiment_pre", [])])
        H1 = stage1_prev[0].config.chunk_size
    else:
        pre_embs = [load_embodiment(e) for e in cfg.embodiment_pre]
        H1 = H
    pre_src = _sources(cfg.pretrain, pre_embs)
    pre_train = load_chunks(pre_src, "train", H1, cfg.key, cfg.short) if pre_src else None
    pre_val = load_chunks(pre_src, "val", H1, cfg.key, cfg.short) if pre_src else None
    ada_emb = load_embodiment(cfg.embodiment_ada) if cfg.adapt else None
    ada_train = ada_val = ada_val_h1 = None
    if cfg.adapt:
        ada_src = [ChunkSource(Path(cfg.adapt), ada_emb)]
        ada_train = load_chunks(ada_src, "train", H, cfg.key, cfg.short)
        ada_val = load_chunks(ada_src, "val", H, cfg.key, cfg.short)
        ada_val_h1 = ada_val if H1 == H else load_chunks(ada_src, "val", H1, cfg.key, cfg.short)

    checkpoints = AlignCheckpoints(cfg.out, cfg.to_dict(), resume=cfg.resume,
                                   writer=ctx.is_main, every=cfg.checkpoint_every)
    if ctx.is_main:
        out_ctx = atomic_output_dir(cfg.out)
    else:  # other ranks write nothing; they get a throw-away folder
        out_ctx = tempfile.TemporaryDirectory(prefix="ate_align_rank")
    with out_ctx as tmp_name:
        tmp = Path(tmp_name)
        run_logger = RunLogger(tmp, enabled=ctx.is_main, tensorboard=cfg.tensorboard)
        ckpt = tmp / "checkpoints"
        common = dict(mmd_c=cfg.mmd_c, mmd_unbiased=cfg.mmd_unbiased, device=device, ctx=ctx,
                      run_logger=run_logger, ckpt_dir=ckpt, amp=cfg.amp,
                      show_progress=cfg.progress, checkpoints=checkpoints)
        summary: dict[str, Any] = {"device": str(device), "world_size": ctx.world_size}
        report: dict[str, Any] = {}

        # --- stage 1 -------------------------------------------------------------------------
        if stage1_prev is not None:
            stage1, prior = stage1_prev[0], stage1_prev[1]
            summary["stage1"] = {"reused_from": str(cfg.stage1_dir)}
        else:
            assert pre_train is not None and pre_val is not None
            norm1 = fit_chunk_stats(pre_train, cfg.norm_mode)
            torch.manual_seed(cfg.seed + 1)
            model1 = ActionVAE(cfg.vae_config())
            tr1 = Tensors.from_chunks(pre_train, norm1, device)
            summary["stage1"] = train_vae(
                model1, tr1, Tensors.from_chunks(pre_val, norm1, device), cfg.stage1,
                name="stage1", norm=norm1, seed=cfg.seed + 1, **common)
            stage1 = StageModel(model1, norm1)
            # q_pre: aggregate posterior over all pre-training (train) chunks.
            prior = latent_summary(*encode_all(model1, tr1), full)
            del tr1
        vae1_cfg = stage1.config
        Z = vae1_cfg.latent_dim
        if pre_val is not None:
            pv = Tensors.from_chunks(pre_val, stage1.norm, device)
            report["stage1"] = {"recon_mae": recon_error(stage1.model, pv, stage1.norm)}
            pre_mu = encode_all(stage1.model, Tensors.from_chunks(
                _pick(pre_train, 2000, cfg.seed), stage1.norm, device))[0]
        else:
            pre_mu = prior.sample(2000, torch.Generator().manual_seed(cfg.seed))

        # --- stage 2 -------------------------------------------------------------------------
        stage2 = adapt = None
        plot_latents: dict[str, torch.Tensor] = {"pre-training": pre_mu}
        if ada_train is not None:
            assert ada_val is not None and ada_val_h1 is not None and ada_emb is not None
            # stage 1 on the adaptation chunks ("before alignment")
            av1 = Tensors.from_chunks(ada_val_h1, stage1.norm, device)
            mu_b, lv_b = encode_all(stage1.model, av1)
            report["stage1_on_adapt"] = {"recon_mae": recon_error(stage1.model, av1,
                                                                   stage1.norm),
                                         **alignment_metrics(mu_b, lv_b, prior, cfg.mmd_c)}
            plot_latents["adaptation, stage-1 encoder"] = mu_b
            norm2 = fit_chunk_stats(ada_train, cfg.norm_mode)
            tr2 = Tensors.from_chunks(ada_train, norm2, device)
            va2 = Tensors.from_chunks(ada_val, norm2, device)
            vae2_cfg = VAEConfig.from_dict({**vae1_cfg.to_dict(), **cfg.vae_config().to_dict(),
                                            "latent_dim": Z, "chunk_size": H})
            torch.manual_seed(cfg.seed + 2)
            model2 = ActionVAE(vae2_cfg)
            summary["stage2"] = train_vae(model2, tr2, va2, cfg.stage2, name="stage2",
                                          target=prior, norm=norm2, seed=cfg.seed + 2,
                                          **common)
            stage2 = StageModel(model2, norm2)
            adapt = latent_summary(*encode_all(model2, tr2), full)
            mu_a, lv_a = encode_all(model2, va2)
            report["stage2"] = {"recon_mae": recon_error(model2, va2, norm2),
                                **alignment_metrics(mu_a, lv_a, prior, cfg.mmd_c)}
            # Does Align matter? Stage 2 against the stage-1 encoder on the same held-out
            # adaptation windows (steer without align would guide through that encoder).
            base = metric_ratios(report["stage2"], report["stage1_on_adapt"])
            report["vs_stage1"] = {**base, "mmd_lowered": bool(base["mmd_ratio"] < 1.0),
                                   "kl_lowered": bool(base["kl_ratio"] < 1.0)}
            plot_latents["adaptation, stage-2 encoder (aligned)"] = mu_a

            if cfg.control:
                torch.manual_seed(cfg.seed + 3)
                model3 = ActionVAE(vae2_cfg)
                summary["control"] = train_vae(
                    model3, tr2, va2, cfg.stage2, name="control", target=None,
                    regularize=cfg.control_prior == "standard", norm=norm2,
                    seed=cfg.seed + 3, **common)
                mu_c, lv_c = encode_all(model3, va2)
                report["control"] = {"recon_mae": recon_error(model3, va2, norm2),
                                     **alignment_metrics(mu_c, lv_c, prior, cfg.mmd_c)}
                chk: dict[str, Any] = metric_ratios(report["stage2"], report["control"])
                chk["passed"] = bool(chk["mmd_ratio"] < 0.5 and chk["kl_ratio"] < 1.0
                                     and chk["recon_ratio"] <= 1.2)
                report["checks"] = chk
        summary["quality"] = report
        summary["seconds"] = time.perf_counter() - t_start

        # --- artefacts -----------------------------------------------------------------------
        if ctx.is_main:
            write_alignment(tmp, stage1, stage2, prior, adapt, ada_emb, pre_embs,
                            cfg.covariance, extra={
                "data": {"pretrain_chunks": len(pre_train) if pre_train else 0,
                         "adapt_chunks": len(ada_train) if ada_train else 0,
                         "keys": {"pretrain": pre_train.keys if pre_train else [],
                                  "adapt": ada_train.keys if ada_train else []}},
                "align_config": cfg.to_dict()})
            run_logger.write_metrics(summary)
            run_logger.close()
            if cfg.plots:
                from ate_ros.core.align.plots import plot_latent_pca, plot_losses

                plot_losses(run_logger.history, tmp / "plots" / "losses.png")
                plot_latent_pca(plot_latents, tmp / "plots" / "latent_pca.png")
        else:
            run_logger.close()
        ctx.barrier()
    checkpoints.finish()
    if report and ctx.is_main:
        logger.info("alignment quality:\n%s", format_report(report))
    with contextlib.suppress(Exception):
        ctx.close()
    return Path(cfg.out)

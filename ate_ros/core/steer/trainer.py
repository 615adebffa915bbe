"""Training loops: pre-training the VLA policy and fine-tuning it with (or without) ATE guidance.

Both loops share :func:`_train`: preloaded in-memory data and the optimisation loop of
:mod:`ate_ros.core.training.loop` (AdamW + cosine LR, non-finite guard, EMA weights: the saved
policy is the EMA copy; checkpoints in ``<out>/checkpoint/`` and resume; early stopping on the
validation action MSE), TensorBoard + ``metrics.json``, periodic evaluation, CPU/CUDA, and DDP
under torchrun/Accelerate.
The output folder is always a loadable policy (``model.safetensors`` + ``config.json``).
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ate_ros.core.data.policy_dataset import PolicyDataset, PolicyDatasetError, batch_iterator
from ate_ros.core.embodiment import Embodiment
from ate_ros.core.normalization import NormStats
from ate_ros.core.steer.guidance import GuidanceConfig, LatentGuidance, encoder_from_bundle
from ate_ros.core.steer.policies.configuration_vla import VLAConfig
from ate_ros.core.steer.policies.modeling_vla import ACTION, OBS_MASK, VLAPolicy
from ate_ros.core.steer.policies.saved_policy import read_training_record
from ate_ros.core.training.config import TrainConfig
from ate_ros.core.training.files import (
    CheckpointError,
    follow_umask,
    publish,
    read_json,
    write_json,
)
from ate_ros.core.training.loop import EarlyStopping, Optimization
from ate_ros.core.training.output_guard import (
    check_output,
    data_fingerprint,
    differing_settings,
    field_defaults,
    resume_dir,
)
from ate_ros.core.training.runtime import (
    DistributedContext,
    RunLogger,
    progress,
    seed_everything,
    select_device,
)

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
RUN_FILE = "run.json"
"""The settings and data fingerprint a run was started with (in its output and checkpoints)."""
NOT_COMPARED = ("resume", "overwrite", "show_progress", "device", "steps", "log_every",
                "eval_every", "save_every", "eval_samples", "eval_episodes", "eval_task")
"""Settings a resumed run may change: where it runs, what it reports and for how long it goes on
(a larger ``steps`` continues a finished run; only the same ``steps`` and ``patience`` 0 give the
weights of an uninterrupted run, since the cosine schedule spans ``steps``)."""


REFIT_STATS = ("missing", "all", "none")
"""``FinetuneConfig.refit_stats``: refit normalisation on the slots pre-training never saw,
on all, or on none."""


@dataclass
class PretrainConfig(TrainConfig):
    policy: VLAConfig = field(default_factory=VLAConfig)
    vision_init: str | None = field(default=None, metadata={
        "metavar": "DIR",
        "help": "start the image encoder from an `ate-ros pretrain-vision` output (same "
                "--image-size, --d-model, --vision-pool and --vision-grid)"})
    """Folder of a pre-trained image encoder (``ate-ros pretrain-vision``) to start from."""


@dataclass
class FinetuneConfig(TrainConfig):
    policy_path: str = field(default="", metadata={
        "flag": "--policy",
        "help": "pre-trained policy folder, or lerobot:<dir> for a LeRobot checkpoint "
                "(docs/lerobot.md)"})
    vae: str | None = field(default=None, metadata={"help": "`ate-ros align` output folder"})
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    refit_stats: str = field(default="missing", metadata={
        "help": "refit normalisation on slots pre-training never saw / all / none",
        "choices": REFIT_STATS})
    eval_task: str | None = field(default=None, metadata={
        "metavar": "TASK[,TASK...]",
        "help": "simulation task for closed-loop success during fine-tuning"})
    eval_episodes: int = field(default=10, metadata={
        "help": "closed-loop episodes per evaluation (with --eval-task)", "min": 1})
    # Redefined fields lose the base class's metadata: the bounds are restated with the default.
    lr: float = field(default=1e-4, metadata={
        "help": "AdamW peak learning rate", "min": 0.0, "min_exclusive": True})
    warmup_steps: int = field(default=50, metadata={"cli": False, "min": 0})

    def validate(self) -> None:
        super().validate()
        if not self.policy_path:
            raise ValueError("fine-tuning needs --policy (a pre-trained policy folder)")
        if self.guidance.enabled and not self.vae:
            raise ValueError("ATE guidance needs --vae (an `ate-ros align` output); pass "
                             "--guidance off for the direct fine-tuning baseline")


# ----- evaluation ----------------------------------------------------------------------------
def _to_device(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def action_mse(policy: VLAPolicy, dataset: PolicyDataset, samples: int = 64,
               num_steps: int | None = None, seed: int = 0, batch_size: int = 32) -> float:
    """Mean squared error (joint units, used slots) of sampled chunks vs recorded chunks on a
    fixed, evenly spaced subset of ``dataset``."""
    dev = policy.action_shift.device
    idx = np.linspace(0, len(dataset) - 1, min(samples, len(dataset))).round().astype(np.int64)
    gen = torch.Generator().manual_seed(seed)
    err, count = 0.0, 0.0
    for i in range(0, len(idx), batch_size):
        batch = _to_device(dataset.get_batch(idx[i:i + batch_size]), dev)
        pred = policy.sample(batch, num_steps, gen)
        m = batch[OBS_MASK].float().unsqueeze(1).expand_as(pred)
        err += float(((pred - batch[ACTION]) ** 2 * m).sum())
        count += float(m.sum())
    return err / max(count, 1.0)


def _closed_loop(policy: VLAPolicy, embodiment: Embodiment, tasks: str, episodes: int,
                 seed: int) -> dict[str, float] | None:
    """Success rate per task (``tasks`` comma-separated) and their mean, in simulation."""
    try:
        from ate_ros.core.sim import evaluate_policy
    except ImportError as exc:
        logger.warning("closed-loop evaluation unavailable (%s); recording action MSE only", exc)
        return None
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    rates = {f"success_rate/{t}": float(evaluate_policy(policy, embodiment, t, episodes=episodes,
                                                        seed=seed).success_rate) for t in names}
    return {"success_rate": float(np.mean(list(rates.values()))),
            **(rates if len(names) > 1 else {})}


# ----- the loop ------------------------------------------------------------------------------
def _param_groups(model: VLAPolicy, cfg: TrainConfig) -> list[dict]:
    """One group, or two when the image encoder learns at its own rate (``vision_lr_scale``).
    One group keeps the optimiser state of checkpoints written before the option existed."""
    if cfg.vision_lr_scale == 1.0:
        return [{"params": list(model.parameters())}]
    if not hasattr(model, "image_encoder"):  # low-dim policy: no image encoder
        return [{"params": list(model.parameters())}]
    vision = list(model.image_encoder.parameters())
    ids = {id(p) for p in vision}
    return [{"params": [p for p in model.parameters() if id(p) not in ids]},
            {"params": vision, "lr": cfg.lr * cfg.vision_lr_scale}]


def _train(model: VLAPolicy, train_ds: PolicyDataset, val_ds: PolicyDataset | None,
           cfg: TrainConfig, device: torch.device, dist: DistributedContext, out: Path,
           guidance: LatentGuidance | None = None, meta: dict | None = None,
           closed_loop: Callable[[VLAPolicy], dict[str, float] | None] | None = None,
           on_eval: Callable[[int, VLAPolicy], bool] | None = None,
           final: Path | None = None) -> Path:
    """Train in ``out``; when ``final`` is given, ``out`` is renamed to it at the end."""
    meta = dict(meta or {})
    model.to(device)
    ddp = dist.wrap(model)
    optim = Optimization(model, _param_groups(model, cfg), lr=cfg.lr,
                         weight_decay=cfg.weight_decay, total_steps=cfg.steps,
                         warmup_steps=cfg.warmup_steps, grad_clip=cfg.grad_clip, device=device,
                         amp=cfg.amp, ema_decay=model.config.ema_decay,
                         ema_warmup=min(100, cfg.steps // 10 + 1), dist=dist)
    ema = optim.ema
    ckpt = out / CHECKPOINT_DIR
    log = RunLogger(out, enabled=dist.is_main)
    start = 0
    if cfg.resume and optim.has_checkpoint(ckpt):
        start = optim.load(ckpt)
        logger.info("resumed from %s at step %d", ckpt, start)
    elif cfg.resume:
        logger.info("no checkpoint in %s; starting from step 0", out)
    if dist.is_main and cfg.resume:  # keep the history of the earlier run
        old = out / "metrics.json"
        if start and old.is_file():
            for k, v in read_json(old).get("history", {}).items():
                log.history[k] = [tuple(p) for p in v if p[0] <= start]
    # The same batch order as a run never interrupted: skip what the first ``start`` steps took
    # (indices only, nothing is loaded).
    batches = batch_iterator(train_ds, cfg.batch_size, cfg.seed, dist.rank, dist.world_size)
    for _ in range(start):
        next(batches)
    summary: dict = {"train_frames": len(train_ds), "val_frames": len(val_ds) if val_ds else 0,
                     "world_size": dist.world_size, **meta}
    skipped_guidance, t0 = 0, time.perf_counter()
    running: dict[str, float] = {}
    stopper = EarlyStopping(cfg.patience)
    stopped_at: int | None = None
    stopped_by_caller = False

    def evaluate(step: int) -> float | None:
        values = {}
        if val_ds is not None:
            values["action_mse"] = action_mse(ema.model, val_ds, cfg.eval_samples,
                                              cfg.eval_num_steps, cfg.seed)
        if closed_loop is not None:
            values.update(closed_loop(ema.model) or {})
        if values:
            log.log(step, values, prefix="eval")
            logger.info("step %d: %s", step,
                        ", ".join(f"{k}={v:.4g}" for k, v in values.items()))
        return values.get("action_mse")

    bar = progress(range(start, cfg.steps), total=cfg.steps - start, desc=out.name,
                   enabled=dist.is_main and cfg.show_progress)
    for step in bar:
        model.train()
        batch = _to_device(train_ds.get_batch(next(batches)), device)
        with optim.autocast():
            loss, logs = ddp(batch, guidance=guidance)
        gnorm = optim.step(loss, where=f"step {step}")
        if gnorm is None:  # non-finite loss: skipped
            continue
        skipped_guidance += int(logs.get("guidance/skipped_nonfinite", 0))
        for k, v in logs.items():
            running[k] = running.get(k, 0.0) + v
        running["grad_norm"] = running.get("grad_norm", 0.0) + gnorm
        running["_n"] = running.get("_n", 0.0) + 1
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            n = running.pop("_n")
            vals = {k: v / n for k, v in running.items()}
            vals["lr"] = optim.lr
            vals["steps_per_s"] = n / max(time.perf_counter() - t0, 1e-9)
            log.log(done, vals, prefix="train")
            if dist.is_main and cfg.show_progress:
                bar.set_postfix(loss=f"{vals['loss']:.4f}")
            running, t0 = {}, time.perf_counter()
        if done % cfg.eval_every == 0 or done == cfg.steps:
            if dist.is_main:
                value = evaluate(done)
                # Without --patience nothing is stopped or restored: no best copy to keep.
                stop = (cfg.patience > 0 and value is not None
                        and stopper.update(value, done, ema.model))
                if on_eval is not None and on_eval(done, ema.model):
                    stop, stopped_by_caller = True, True
            else:
                stop = False
            if dist.enabled:  # every rank stops together
                stop = dist.all_reduce_mean(float(stop)) > 0.0
            if stop and stopped_by_caller:
                stopped_at = done
                logger.info("stopped at step %d by the caller's rule", done)
                break
            if stop:
                stopped_at = done
                logger.info("early stop at step %d: eval/action_mse did not improve for %d "
                            "evaluations (best %.4g at step %d)", done, cfg.patience,
                            stopper.best, stopper.best_at)
                break
        if dist.is_main and done % cfg.save_every == 0 and done < cfg.steps:
            optim.save(ckpt, done, {"meta": meta})
            ema.model.save_pretrained(out, extra={"training": {**meta, "step": done}})
    if dist.is_main:
        final_step = stopped_at or cfg.steps
        if stopped_at is not None and not stopped_by_caller:
            stopper.restore(ema.model)  # the saved policy is the best evaluated EMA weights
            summary.update({"early_stop_step": stopped_at, "best_step": stopper.best_at})
        summary.update({"steps": final_step, "guidance_skipped_nonfinite": skipped_guidance,
                        "nonfinite_loss_steps": optim.bad_steps})
        for k, v in log.history.items():
            if v:
                summary[f"final/{k}"] = v[-1][1]
        optim.save(ckpt, final_step, {"meta": meta})
        ema.model.save_pretrained(out, extra={"training": {**meta, "step": final_step}})
        log.write_metrics(summary)
    log.close()
    if dist.is_main and final is not None:
        publish(out, final)
    dist.barrier()
    return final or out


def _claim_output(cfg: TrainConfig, inputs: list, dist: DistributedContext) -> Path:
    """Check ``cfg.out`` and the checkpoints to resume from; returns the folder to work in.

    The run works in ``<out>.resume/`` (checkpoints, metrics, the policy saved so far) and
    :func:`_train` renames it to ``out`` when it ends, so ``out`` only ever holds a finished
    policy. ``--resume`` carries on from that folder, or from the checkpoint a finished ``out``
    keeps (to train it for more ``--steps``), after checking that the settings and the data are
    those it was written with. Nothing is created before every check passed.

    Raises:
        OutputError: ``out`` must not be written (:func:`check_output`).
        CheckpointError: What ``--resume`` would carry on from does not match this run, or is
            already at ``cfg.steps``.
    """
    out, work = Path(cfg.out), resume_dir(cfg.out)
    source = next((f for f in (work, out) if Optimization.has_checkpoint(f / CHECKPOINT_DIR)),
                  None)
    check_output(out, inputs=inputs, overwrite=cfg.overwrite, resume=cfg.resume,
                 resumable=source is out, checkpoints=source is work)
    settings = {k: v for k, v in _config_dict(cfg).items() if k not in NOT_COMPARED}
    record = {"settings": settings, "data": data_fingerprint(cfg.data)}
    if cfg.resume and source is not None:
        saved_file = source / RUN_FILE
        if not saved_file.is_file():
            raise CheckpointError(f"cannot resume from {source}: it does not record the "
                                  "settings it was trained with; pass --overwrite to start over")
        saved = read_json(saved_file)
        differ = differing_settings(saved.get("settings", {}), settings, NOT_COMPARED,
                                    field_defaults(type(cfg)))  # older runs lack new fields
        if differ:
            raise CheckpointError(
                f"cannot resume from {source}: it was written with other settings ("
                + "; ".join(differ[:6]) + "). Run with the same settings, or pass --overwrite "
                "to start over")
        if saved.get("data") != record["data"]:
            raise CheckpointError(f"cannot resume from {source}: the data in "
                                  f"{', '.join(map(str, cfg.data))} changed since it was "
                                  "written; pass --overwrite to start over")
        step = int(Optimization.read_state(source / CHECKPOINT_DIR)["step"])
        if cfg.steps <= step:
            raise CheckpointError(f"{source} is already at step {step}; --steps {cfg.steps} "
                                  "would train nothing (nothing was written). Pass a larger "
                                  "--steps to train it further")
    elif cfg.resume:
        logger.info("--resume: no checkpoint for %s; starting from step 0", out)
    if dist.is_main:
        if work.exists() and (source is not work or not cfg.resume):
            shutil.rmtree(work)  # stale: no checkpoint, or --overwrite
        if cfg.resume and source is out:
            shutil.copytree(out, work)  # ``out`` stays whole until the rename
        work.mkdir(parents=True, exist_ok=True)
        follow_umask(work, folder=True)
        write_json(work / RUN_FILE, record)
    dist.barrier()  # every rank has checked before rank 0 created anything
    return work


def _config_dict(cfg) -> dict:
    return {k: v for k, v in asdict(cfg).items() if k not in ("show_progress",)}


def _check_batch_finite(ds: PolicyDataset, where: str) -> None:
    for name, arr in (("qpos", ds.qpos), ("action", ds.actions), ("text", ds.text)):
        if not np.all(np.isfinite(arr)):
            raise PolicyDatasetError(f"{where}: {name} contains NaN/inf")


def pretrain_policy(config: PretrainConfig) -> Path:
    """Train a VLA policy from scratch on one or more embodiments; returns the output folder."""
    config.validate()
    device = select_device(config.device)
    dist = DistributedContext(device)
    work = _claim_output(config, [*config.data, *(config.embodiments or []),
                                  config.vision_init], dist)
    seed_everything(config.seed + dist.rank)
    pcfg = config.policy
    from ate_ros.core.steer.policies.text_encoder import embed_instructions

    def embed(texts):
        return embed_instructions(texts, pcfg.text_encoder, pcfg.text_dim)

    train_ds = _dataset(config.data, "train", pcfg, config.embodiments, embed,
                        config.max_episodes, key=config.key)
    val_ds = _optional_val(config.data, pcfg, config.embodiments, embed, key=config.key)
    _check_batch_finite(train_ds, "pre-training data")
    pcfg.embodiment_names = sorted({e.name for e in train_ds.embodiments})
    model = VLAPolicy(pcfg)
    model.set_norm_stats(*train_ds.fit_stats(pcfg.norm_mode, model.relative_actions,
                                             seed=config.seed))
    if pcfg.env_state_dim:
        model.set_env_stats(train_ds.fit_env_stats(pcfg.norm_mode))
    if config.vision_init:
        from ate_ros.core.steer.policies.vision_pretrain import load_vision_encoder

        vmeta = load_vision_encoder(config.vision_init, model)
        logger.info("image encoder initialised from %s (held-out object RMSE %.3f m)",
                    config.vision_init, vmeta.get("metrics", {}).get("val_pos_rmse", float("nan")))
    meta = {"stage": "pretrain", "stats_slots": np.flatnonzero(train_ds.mask_union).tolist(),
            "config": _config_dict(config)}
    logger.info("pre-training %s policy (%d parameters) on %s", pcfg.head,
                sum(p.numel() for p in model.parameters()), pcfg.embodiment_names)
    return _train(model, train_ds, val_ds, config, device, dist, work, None, meta,
                  final=Path(config.out))


def _dataset(data, split: str, pcfg: VLAConfig, embodiments, embed,
             max_episodes: int | None = None, key: str = "auto") -> PolicyDataset:
    """The split of ``data`` with what ``pcfg``'s policy reads (cameras, environment state)."""
    return PolicyDataset(data, split, pcfg.chunk_size, pcfg.camera_names, pcfg.image_size,
                         embodiments, embed, max_episodes, env_state_dim=pcfg.env_state_dim,
                         key=key)


def _optional_val(data, pcfg: VLAConfig, embodiments, embed, key: str = "auto"
                  ) -> PolicyDataset | None:
    try:
        return _dataset(data, "val", pcfg, embodiments, embed, key=key)
    except PolicyDatasetError as exc:
        logger.warning("no validation split (%s); evaluating on nothing held out", exc)
        return None


def check_alignment(bundle, policy: VLAPolicy, embodiment: Embodiment) -> None:
    """Refuse an alignment that does not fit the policy or the adaptation embodiment."""
    H = int(bundle.chunk_size)
    if H > policy.chunk_size:
        raise ValueError(f"alignment VAE chunk length {H} exceeds the policy chunk "
                         f"{policy.chunk_size}; retrain the VAE with --chunk {policy.chunk_size}")
    if H != policy.chunk_size:
        logger.warning("VAE chunk length %d < policy chunk %d: guiding the first %d points",
                       H, policy.chunk_size, H)
    mask = np.asarray(bundle.mask, dtype=bool)
    if mask.shape != embodiment.mask.shape or not np.array_equal(mask, embodiment.mask):
        raise ValueError(
            f"alignment mask (slots {np.flatnonzero(mask).tolist()}) does not match embodiment "
            f"{embodiment.name!r} (slots {embodiment.slots.tolist()}); align on this robot's data")
    if int(bundle.latent_dim) < 1:
        raise ValueError("alignment bundle reports latent_dim < 1")


def finetune_policy(config: FinetuneConfig,
                    on_eval: Callable[[int, VLAPolicy], bool] | None = None) -> Path:
    """Fine-tune a pre-trained policy on adaptation data, with ATE guidance unless it is off.

    ``on_eval(step, ema_policy)`` runs after each evaluation (every ``eval_every`` steps); it
    returning True ends training there and saves the weights of that step (a caller's own
    stopping rule, e.g. ``benchmarks/bench_adaptation.py``'s validation-rollout plateau).
    """
    config.validate()
    device = select_device(config.device)
    dist = DistributedContext(device)
    work = _claim_output(config, [*config.data, *(config.embodiments or []), config.policy_path,
                                  config.vae if config.guidance.enabled else None], dist)
    seed_everything(config.seed + dist.rank)
    model = VLAPolicy.from_pretrained(config.policy_path, device="cpu")
    model.train()
    pcfg = model.config
    from ate_ros.core.steer.policies.text_encoder import embed_instructions

    def embed(texts):
        return embed_instructions(texts, pcfg.text_encoder, pcfg.text_dim)

    train_ds = _dataset(config.data, "train", pcfg, config.embodiments, embed,
                        config.max_episodes, key=config.key)
    _check_batch_finite(train_ds, "adaptation data")
    val_ds = _optional_val(config.data, pcfg, config.embodiments, embed, key=config.key)
    embs = {e.name: e for e in train_ds.embodiments}
    if len(embs) != 1:
        raise ValueError(f"adaptation data must come from one embodiment, got {sorted(embs)}")
    emb = next(iter(embs.values()))
    # Normalisation for the new robot.
    seen = np.zeros(len(emb.mask), bool)
    prev = read_training_record(config.policy_path, len(seen))
    seen[prev.get("stats_slots", [])] = True
    if config.refit_stats != "none":
        new_state, new_action = train_ds.fit_stats(pcfg.norm_mode, model.relative_actions,
                                                   seed=config.seed)
        refit = emb.mask if config.refit_stats == "all" else emb.mask & ~seen
        _merge_stats(model, new_state, new_action, refit)
        if refit.any():
            logger.info("normalisation refit on slots %s", np.flatnonzero(refit).tolist())
    guidance = None
    meta = {"stage": "finetune", "base_policy": str(config.policy_path),
            "embodiment": emb.name, "guidance": config.guidance.to_dict(),
            "stats_slots": np.flatnonzero(seen | emb.mask).tolist(),
            "config": _config_dict(config)}
    if config.guidance.enabled:
        from ate_ros.core.align import load_alignment

        bundle = load_alignment(config.vae, device=device)
        check_alignment(bundle, model, emb)
        model.to(device)
        stage = config.guidance.encoder_stage
        guidance = LatentGuidance(encoder_from_bundle(bundle, stage), pcfg.parameterization,
                                  config.guidance, mask=emb.mask,
                                  to_encoder=model.unnormalize_action,
                                  horizon=int(bundle.chunk_size))
        probe = train_ds.get_batch(np.arange(min(4, len(train_ds))))[ACTION]
        mu = bundle.encode(probe[:, :int(bundle.chunk_size)].to(device), stage=stage)[0]
        if not torch.isfinite(mu).all():
            raise ValueError(f"{config.vae}: the stage-{stage} encoder gives NaN/inf on this "
                             "data")
        meta["vae"] = str(config.vae)
    if config.guidance.enabled:
        logger.info("fine-tuning with ATE guidance (%s, lambda=%g, clamp=%g)",
                    pcfg.parameterization, config.guidance.scale, config.guidance.clamp)
    else:
        logger.info("direct fine-tuning (guidance off)")
    pcfg.embodiment_names = sorted(set(pcfg.embodiment_names) | {emb.name})
    closed = None
    if config.eval_task:
        def closed(policy):
            return _closed_loop(policy, emb, config.eval_task, config.eval_episodes,
                                config.seed)
    return _train(model, train_ds, val_ds, config, device, dist, work, guidance, meta, closed,
                  on_eval, final=Path(config.out))


def _merge_stats(model: VLAPolicy, state: NormStats, action: NormStats, slots: np.ndarray
                 ) -> None:
    sl = torch.as_tensor(slots, dtype=torch.bool)
    for name, st in (("state", state), ("action", action)):
        scale, shift = st._scale_shift(np.zeros(1))
        buf_s, buf_b = getattr(model, f"{name}_scale"), getattr(model, f"{name}_shift")
        buf_s[sl] = torch.as_tensor(scale, dtype=torch.float32)[sl]
        buf_b[sl] = torch.as_tensor(shift, dtype=torch.float32)[sl]


def format_summary(path: Path) -> str:
    """One line per final metric of a finished run."""
    data = read_json(Path(path) / "metrics.json")
    s = data.get("summary", {})
    keys = [k for k in s if k.startswith("final/")]
    return "\n".join(f"{k[6:]}: {s[k]:.5g}" for k in keys if isinstance(s[k], (int, float))
                     and math.isfinite(s[k]))


__all__ = ["CheckpointError", "FinetuneConfig", "PretrainConfig", "TrainConfig", "action_mse",
           "check_alignment", "finetune_policy", "format_summary", "pretrain_policy"]

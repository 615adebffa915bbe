"""``ate-ros steer --policy lerobot:<dir>``: fine-tune a LeRobot checkpoint with ATE guidance.

The checkpoint folder is LeRobot's own (``config.json``, ``model.safetensors``,
``policy_preprocessor.json`` / ``policy_postprocessor.json`` with their normalisation stats);
the policy, its processors, its data windows (``resolve_delta_timestamps``) and its optimiser
preset all come from LeRobot, and the result is saved back the same way, so
``PreTrainedPolicy.from_pretrained`` / ``make_pre_post_processors(pretrained_path=...)`` load it.
The data is a LeRobotDataset folder, or one of our episode datasets, which is first exported
with :func:`ate_ros.core.data.lerobot_export.export_lerobot`. Only the loss differs from
LeRobot's: :mod:`ate_ros.core.steer.lerobot.adapters` adds the ATE term (with guidance off it
is LeRobot's loss exactly). ``metrics.json`` records the loss and guidance statistics.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ate_ros.core.config_fields import validate_fields
from ate_ros.core.data.episode_format import ChunkDataError
from ate_ros.core.lerobot_compat import lerobot_errors, require_lerobot
from ate_ros.core.steer.guidance import GuidanceConfig, encoder_from_bundle
from ate_ros.core.steer.lerobot.adapters import (
    ACTION,
    FLOW_POLICIES,
    DiffusionGuidedLoss,
    FlowGuidedLoss,
    LeRobotActionSpace,
    flow_policy_loss,
    make_guidance,
)
from ate_ros.core.steer.lerobot.checkpoint import load_lerobot_checkpoint

logger = logging.getLogger(__name__)

INFO_FILE = "meta/info.json"
METRICS_FILE = "metrics.json"


@dataclass
class LeRobotFinetuneConfig:
    """Settings of a LeRobot fine-tuning run."""

    policy_path: str = field(metadata={"help": "LeRobot checkpoint folder (save_pretrained)"})
    data: str = field(metadata={"help": "LeRobotDataset folder, or our episode dataset"})
    out: str = field(metadata={"help": "output checkpoint folder (LeRobot's format)"})
    vae: str | None = field(default=None, metadata={"help": "`ate-ros align` output folder"})
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    steps: int = field(default=1000, metadata={"help": "optimisation steps", "min": 1})
    batch_size: int = field(default=8, metadata={"help": "samples per step", "min": 1})
    lr: float | None = field(default=None, metadata={
        "help": "learning rate (None: the policy's optimiser preset)",
        "min": 0.0, "min_exclusive": True})
    seed: int = 0
    device: str = field(default="cpu", metadata={"help": "torch device"})
    log_every: int = field(default=10, metadata={"min": 1})

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.guidance.enabled and not self.vae:
            raise ValueError("ATE guidance needs --vae (an `ate-ros align` output); pass "
                             "--guidance off for direct fine-tuning")


def _dataset_root(data: Path, scratch: Path) -> Path:
    if (data / INFO_FILE).is_file():
        return data
    from ate_ros.core.data.lerobot_export import export_lerobot

    logger.info("%s is in our episode format: exporting it to a LeRobotDataset first", data)
    return export_lerobot(data, scratch / "dataset")


def _loss_fn(policy, post, cfg: LeRobotFinetuneConfig, action_names: list[str],
             device: torch.device) -> Callable:
    """policy.forward, or the guided adapter of the policy type."""
    pcfg = policy.config
    if not cfg.guidance.enabled:
        return lambda batch: _plain_loss(policy, batch)
    from ate_ros.core.align import load_alignment

    bundle = load_alignment(cfg.vae, device=device)
    emb = bundle.embodiment_ada
    if action_names and list(action_names) != emb.joint_names:
        raise ValueError(f"dataset action names {action_names} are not the alignment "
                         f"embodiment's joints {emb.joint_names} (in that order)")
    D = pcfg.output_features[ACTION].shape[0]
    space = LeRobotActionSpace.from_postprocessor(post, emb, D)
    encoder, H = encoder_from_bundle(bundle), int(bundle.chunk_size)
    if pcfg.type == "diffusion":
        guide = make_guidance(encoder, pcfg.prediction_type, cfg.guidance, space, H)
        return DiffusionGuidedLoss(policy, guide)
    if pcfg.type in FLOW_POLICIES:
        guide = make_guidance(encoder, "flow_openpi", cfg.guidance, space, H,
                              padded_dim=getattr(pcfg, "max_action_dim", D))
        guided = FlowGuidedLoss(guide)
        return lambda batch: flow_policy_loss(policy, batch, guided)
    raise ValueError(f"ATE guidance supports LeRobot policies diffusion and {FLOW_POLICIES}, "
                     f"got {pcfg.type!r}; use --guidance off to fine-tune it directly")


def _plain_loss(policy, batch) -> tuple[torch.Tensor, dict[str, float]]:
    loss, _ = policy.forward(batch)
    return loss, {"loss": float(loss.detach())}


def finetune_lerobot_policy(cfg: LeRobotFinetuneConfig) -> Path:
    """Run the fine-tuning; returns the output folder (a LeRobot checkpoint)."""
    require_lerobot()
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata

    from ate_ros.core.training.files import atomic_output_dir
    from ate_ros.core.training.runtime import seed_everything

    seed_everything(cfg.seed)
    device = torch.device(cfg.device)
    loaded = load_lerobot_checkpoint(cfg.policy_path, device.type)
    pcfg, policy, pre, post = (loaded.config, loaded.policy, loaded.preprocessor,
                               loaded.postprocessor)
    with tempfile.TemporaryDirectory(prefix="ate_lerobot_") as scratch:
        root = _dataset_root(Path(cfg.data), Path(scratch))
        repo_id = f"ate_ros/{root.name}"
        with lerobot_errors(root, "LeRobot cannot read this dataset", ChunkDataError):
            meta = LeRobotDatasetMetadata(repo_id, root=root)
            ds = LeRobotDataset(repo_id, root=root,
                                delta_timestamps=resolve_delta_timestamps(pcfg, meta))
            action_names = list(meta.features[ACTION].get("names") or [])
        loss_fn = _loss_fn(policy, post, cfg, action_names, device)
        opt_cfg = pcfg.get_optimizer_preset()
        if cfg.lr is not None:
            opt_cfg.lr = cfg.lr
        opt = opt_cfg.build(policy.get_optim_params())
        gen = torch.Generator().manual_seed(cfg.seed)
        loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=True,
                                             generator=gen, drop_last=len(ds) > cfg.batch_size)
        history: dict[str, list[tuple[int, float]]] = {}
        running: dict[str, float] = {}
        batches = iter(loader)
        policy.train()
        for step in range(1, cfg.steps + 1):
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(loader)
                batch = next(batches)
            loss, logs = loss_fn(pre(batch))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {float(loss)} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if opt_cfg.grad_clip_norm:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), opt_cfg.grad_clip_norm)
            opt.step()
            for k, v in logs.items():
                running[k] = running.get(k, 0.0) + v
            if step % cfg.log_every == 0 or step == cfg.steps:
                n = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
                for k, v in running.items():
                    history.setdefault(f"train/{k}", []).append((step, v / n))
                logger.info("step %d: loss %.4g", step, running.get("loss", math.nan) / n)
                running = {}
        policy.eval()
        with atomic_output_dir(cfg.out) as tmp:
            policy.save_pretrained(tmp)
            pre.save_pretrained(tmp)
            post.save_pretrained(tmp)
            summary = {"steps": cfg.steps, "frames": len(ds), "policy_type": pcfg.type,
                       "base_policy": str(cfg.policy_path), "data": str(cfg.data),
                       "vae": cfg.vae, "guidance": asdict(cfg.guidance)}
            (tmp / METRICS_FILE).write_text(json.dumps(
                {"summary": summary, "history": history}, indent=2, default=_json_default))
    return Path(cfg.out)


def _json_default(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v)}")


__all__ = ["LeRobotFinetuneConfig", "finetune_lerobot_policy"]

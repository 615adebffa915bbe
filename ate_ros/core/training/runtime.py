"""Run plumbing shared by the alignment VAEs and the policies.

Devices, seeds, torchrun/DDP, TensorBoard + ``metrics.json`` logging, progress bars, AMP (GPU
only), EMA weights and LR schedules. Model code stays in ``align/`` and ``steer/``; file I/O is in
:mod:`ate_ros.core.training.files`, the shared optimisation loop in
:mod:`ate_ros.core.training.loop`.

Multi-GPU: every trainer built on :class:`DistributedContext` runs unchanged under
``torchrun --nproc_per_node N $(which ate-ros) <command> ...`` or ``accelerate launch
--multi_gpu --num_processes N -m ate_ros.cli <command> ...`` (both set RANK, WORLD_SIZE and
LOCAL_RANK; the steer tests run each with two CPU processes over gloo).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ate_ros.core.training.files import METRICS_FILE, write_json

logger = logging.getLogger(__name__)



def select_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available (then MPS), else CPU; other names go to torch."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return dev


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; returns a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


class DistributedContext:
    """torchrun-aware process group handling; a no-op in single-process runs."""

    def __init__(self, device: torch.device) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.rank = int(os.environ.get("RANK", 0))
        self.device = device
        if self.world_size > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend)
            logger.info("DDP: rank %d/%d on %s", self.rank, self.world_size, device)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def sampler(self, dataset, shuffle: bool = True, seed: int = 0):
        if not self.enabled:
            return None
        return torch.utils.data.DistributedSampler(dataset, shuffle=shuffle, seed=seed)

    def all_reduce_mean(self, value: float) -> float:
        if not self.enabled:
            return value
        t = torch.tensor([value], device=self.device)
        torch.distributed.all_reduce(t)
        return float(t.item()) / self.world_size

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return model.module if hasattr(model, "module") else model


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA; a no-op elsewhere (CPU AMP is slower for these small models)."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class RunLogger:
    """Scalars to TensorBoard (when installed) and ``metrics.json``; only the main rank writes."""

    def __init__(self, out_dir: str | Path, enabled: bool = True,
                 tensorboard: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.history: dict[str, list[tuple[int, float]]] = {}
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))
            except Exception as exc:  # tensorboard is an optional extra
                logger.info("TensorBoard disabled (%s)", exc)

    def log(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        if not self.enabled:
            return
        for k, v in values.items():
            key = f"{prefix}/{k}" if prefix else k
            v = float(v)
            self.history.setdefault(key, []).append((int(step), v))
            if self._tb is not None:
                self._tb.add_scalar(key, v, step)

    def write_metrics(self, summary: dict[str, Any], filename: str = METRICS_FILE) -> Path:
        """Write ``{"summary": ..., "history": {key: [[step, value], ...]}}``."""
        path = self.out_dir / filename
        if self.enabled:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_json(path, {"summary": summary,
                              "history": {k: [list(p) for p in v]
                                          for k, v in self.history.items()}})
        return path

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def progress(iterable: Iterable, total: int | None = None, desc: str = "", enabled: bool = True):
    """A tqdm bar (disabled off the main rank or when not wanted)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled, dynamic_ncols=True,
                leave=False)


class EMA:
    """Exponential moving average of a model's parameters (buffers copied as is)."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, warmup: int = 100) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.warmup, self.steps = decay, warmup, 0
        self.model = copy.deepcopy(unwrap(model)).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.steps += 1
        # Short warm-up so early checkpoints are not dominated by the random init.
        d = min(self.decay, (1 + self.steps) / (self.warmup + self.steps))
        src = unwrap(model)
        for pe, p in zip(self.model.parameters(), src.parameters()):
            pe.mul_(d).add_(p.detach(), alpha=1 - d)
        for be, b in zip(self.model.buffers(), src.buffers()):
            be.copy_(b)


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                    min_ratio: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to ``min_ratio`` of the base LR."""
    total_steps = max(1, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

"""Shared check that a policy can overfit one batch (CPU, and CUDA with the trainer's AMP)."""

from __future__ import annotations

import numpy as np
import torch

from ate_ros.core.training.runtime import autocast


def losses_before_after(model, batch: dict, steps: int, device: str = "cpu",
                        lr: float = 3e-3) -> tuple[float, float]:
    """Mean loss over 6 fixed-noise draws before and after ``steps`` AdamW steps on ``batch``.

    Runs under :func:`ate_ros.core.training.autocast` as the trainer does (bf16 on CUDA, a no-op
    on CPU); every training loss must come out in float32.
    """
    dev = torch.device(device)

    def fixed_loss() -> float:
        g = torch.Generator(device=dev).manual_seed(1)
        with torch.no_grad(), autocast(dev):
            return float(np.mean([float(model(batch, generator=g)[0]) for _ in range(6)]))

    before = fixed_loss()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    for _ in range(steps):
        with autocast(dev):
            loss, _ = model(batch)
        assert loss.dtype == torch.float32  # masked_mse reduces in fp32
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, fixed_loss()

"""The optimisation loop every trainer shares: the alignment VAEs and the policies.

:class:`Optimization` owns what one training step needs, whatever the model: AdamW, linear
warm-up then cosine LR, autocast (GPU only), the non-finite loss guard (a NaN/inf loss skips the
step on every DDP rank together, and too many of them stop the run), gradient clipping, EMA
weights, and safetensors checkpoints of all of it for resuming. :class:`EarlyStopping` keeps the
best weights by a validation metric and says when to stop. The trainers keep only what is their
own: what a batch is, which loss, what to evaluate and what to save
(``align/trainer.py``: epochs over chunks; ``steer/trainer.py``: steps over frames).
"""

from __future__ import annotations

import copy
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ate_ros.core.training.files import (
    atomic_output_dir,
    load_state_dict_checked,
    load_tensors,
    read_json,
    save_tensors,
    write_json,
)
from ate_ros.core.training.runtime import (
    EMA,
    DistributedContext,
    autocast,
    cosine_schedule,
    unwrap,
)

__all__ = ["MAX_BAD_STEPS", "EarlyStopping", "Optimization"]

MAX_BAD_STEPS = 20
"""Non-finite losses after which a run stops (a run that keeps producing them is diverging or
reads bad data; a few are skipped)."""

STATE_FILE = "trainer_state.json"
EXTRA_TENSORS_FILE = "extra.safetensors"


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, v in list(tensors.items()) + list(meta["scalars"].items()):
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class Optimization:
    """Optimiser, schedule, autocast, non-finite guard, clipping and EMA of one training run.

    Args:
        model: The module trained (unwrapped; DDP wrapping is the caller's).
        param_groups: AdamW parameter groups (default: all of ``model``'s parameters).
        lr: Peak learning rate.
        weight_decay: AdamW weight decay.
        total_steps: Steps of the cosine schedule.
        warmup_steps: Linear warm-up steps.
        min_lr_ratio: Floor of the cosine schedule relative to ``lr``.
        grad_clip: Gradient norm clip (0: off, the norm is still reported).
        device: Where the model runs (autocast only on CUDA).
        amp: bf16 autocast on CUDA.
        ema_decay: Keep an EMA copy of the weights with this decay (None: no EMA).
        ema_warmup: EMA warm-up steps (its decay ramps up over them).
        dist: DDP context: every rank skips a non-finite step together.
        max_bad_steps: Non-finite losses before :meth:`step` raises.
    """

    def __init__(self, model: torch.nn.Module, param_groups: list[dict] | None = None, *,
                 lr: float, weight_decay: float, total_steps: int, warmup_steps: int = 0,
                 min_lr_ratio: float = 0.1, grad_clip: float = 1.0,
                 device: torch.device | None = None, amp: bool = True,
                 ema_decay: float | None = None, ema_warmup: int = 100,
                 dist: DistributedContext | None = None,
                 max_bad_steps: int = MAX_BAD_STEPS) -> None:
        self.model = model
        self.device = device or torch.device("cpu")
        self.amp = amp
        self.grad_clip = float(grad_clip)
        self.dist = dist
        self.max_bad_steps = int(max_bad_steps)
        groups = param_groups if param_groups is not None else [
            {"params": list(model.parameters())}]
        self.optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
        self.scheduler = cosine_schedule(self.optimizer, total_steps, warmup_steps,
                                         min_lr_ratio)
        self.ema = (EMA(model, decay=ema_decay, warmup=ema_warmup) if ema_decay is not None
                    else None)
        self.bad_steps = 0
        """Steps skipped because the loss was NaN/inf."""

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def autocast(self):
        """Context for the forward pass (bf16 on CUDA when ``amp``; nothing on CPU)."""
        return autocast(self.device, self.amp)

    def step(self, loss: torch.Tensor, where: str = "") -> float | None:
        """Backward, clip, optimiser and schedule step, EMA update.

        Returns the gradient norm before clipping, or None when the loss was not finite (on
        any rank): the step is skipped.

        Raises:
            FloatingPointError: The ``max_bad_steps``-th non-finite loss (``where`` says which
                step it was, for the message).
        """
        finite = bool(torch.isfinite(loss))
        if self.dist is not None and self.dist.enabled:
            # Every rank must skip together, or the others hang in the gradient all-reduce.
            finite = self.dist.all_reduce_mean(float(finite)) == 1.0
        self.optimizer.zero_grad(set_to_none=True)
        if not finite:
            self.bad_steps += 1
            if self.bad_steps >= self.max_bad_steps:
                raise FloatingPointError(
                    f"loss was NaN/inf on {self.bad_steps} steps (last: {where or 'this step'})"
                    "; lower --lr or check the data")
            return None
        loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        gnorm = torch.nn.utils.clip_grad_norm_(
            params, self.grad_clip if self.grad_clip > 0 else math.inf)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return float(gnorm)

    # ----- checkpoints (safetensors + JSON, no pickle) ------------------------------------------
    def save(self, folder: str | Path, step: int, extra: dict[str, Any] | None = None,
             tensors: dict[str, torch.Tensor] | None = None) -> None:
        """Model, EMA, optimiser, schedule and torch RNG into ``folder`` (atomically).

        ``extra`` (JSON) and ``tensors`` hold the caller's own loop state; read them back with
        :meth:`read_state` and :meth:`read_tensors`.
        """
        with atomic_output_dir(folder) as tmp:
            if tensors:
                save_tensors(tmp / EXTRA_TENSORS_FILE, tensors)
            save_tensors(tmp / "model.safetensors", unwrap(self.model).state_dict())
            if self.ema is not None:
                save_tensors(tmp / "ema.safetensors", self.ema.model.state_dict())
            opt_t, opt_meta = _optimizer_tensors(self.optimizer)
            save_tensors(tmp / "optimizer.safetensors", opt_t)
            np_state = np.random.get_state()
            save_tensors(tmp / "rng.safetensors", {
                "torch": torch.get_rng_state(),
                "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
                **({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
                   if torch.cuda.is_initialized() else {})})
            py_version, py_state, py_gauss = random.getstate()
            write_json(tmp / STATE_FILE, {
                "rng": {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]),
                                  float(np_state[4])],
                        "python": [py_version, list(py_state), py_gauss]},
                "step": int(step), "ema_steps": self.ema.steps if self.ema else 0,
                "bad_steps": self.bad_steps, "scheduler": self.scheduler.state_dict(),
                "optimizer": opt_meta, **(extra or {})})

    @staticmethod
    def has_checkpoint(folder: str | Path) -> bool:
        return (Path(folder) / STATE_FILE).is_file()

    @staticmethod
    def read_state(folder: str | Path) -> dict[str, Any]:
        """The JSON state of a checkpoint, the caller's ``extra`` included."""
        return read_json(Path(folder) / STATE_FILE)

    @staticmethod
    def read_tensors(folder: str | Path) -> dict[str, torch.Tensor]:
        """The caller's ``tensors`` of a checkpoint (empty when none were saved)."""
        path = Path(folder) / EXTRA_TENSORS_FILE
        return load_tensors(path) if path.is_file() else {}

    def load(self, folder: str | Path) -> int:
        """Restore what :meth:`save` wrote; returns the step it was saved at."""
        ck = Path(folder)
        state = self.read_state(ck)
        load_state_dict_checked(unwrap(self.model),
                                load_tensors(ck / "model.safetensors", self.device),
                                str(ck / "model.safetensors"))
        if self.ema is not None:
            load_state_dict_checked(self.ema.model,
                                    load_tensors(ck / "ema.safetensors", self.device),
                                    str(ck / "ema.safetensors"))
            self.ema.steps = int(state["ema_steps"])
        _load_optimizer(self.optimizer, load_tensors(ck / "optimizer.safetensors", self.device),
                        state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.bad_steps = int(state.get("bad_steps", 0))
        rng = load_tensors(ck / "rng.safetensors")
        torch.set_rng_state(rng["torch"])
        cuda = [rng[k] for k in sorted(rng) if k.startswith("cuda.")]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        saved = state.get("rng")  # checkpoints written before numpy/python states were kept
        if saved and "numpy" in rng:
            name, pos, has_gauss, gauss = saved["numpy"]
            np.random.set_state((name, rng["numpy"].numpy().astype(np.uint32), pos, has_gauss,
                                 gauss))
            version, py_state, py_gauss = saved["python"]
            random.setstate((version, tuple(py_state), py_gauss))
        return int(state["step"])


class EarlyStopping:
    """Best weights by a validation metric (lower is better) and when to give up.

    Args:
        patience: Evaluations without improvement before :meth:`update` says stop (0: never).
        min_delta: Improvement smaller than this does not count.
    """

    def __init__(self, patience: int, min_delta: float = 1e-6) -> None:
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.best = math.inf
        self.best_at = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad = 0

    def update(self, value: float, at: int, model: torch.nn.Module) -> bool:
        """Record ``value`` measured at ``at`` (epoch or step); True when it is time to stop."""
        if value < self.best - self.min_delta:
            self.best, self.best_at, self.bad = float(value), int(at), 0
            self.best_state = copy.deepcopy(unwrap(model).state_dict())
            return False
        self.bad += 1
        return bool(self.patience and self.bad >= self.patience)

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """What a checkpoint needs to carry on: the record (JSON) and the best weights."""
        record = {"best": None if math.isinf(self.best) else self.best,
                  "best_at": self.best_at, "bad": self.bad}
        return record, dict(self.best_state or {})

    def load_state(self, record: dict[str, Any], best_state: dict[str, torch.Tensor]) -> None:
        """Undo :meth:`state`."""
        self.best = math.inf if record["best"] is None else float(record["best"])
        self.best_at, self.bad = int(record["best_at"]), int(record["bad"])
        self.best_state = dict(best_state) if best_state else None

    def restore(self, model: torch.nn.Module) -> bool:
        """Load the best weights into ``model``; False when nothing was recorded."""
        if self.best_state is None:
            return False
        unwrap(model).load_state_dict(self.best_state)
        return True

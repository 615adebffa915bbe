"""ATE latent guidance inside LeRobot policies' training losses.

The adapters rebuild each policy's own loss from the policy's own modules, drawing the same
random numbers in the same order, and replace only the regression target by
:meth:`LatentGuidance.guided_target` (``ate_ros.core.steer.guidance``). With guidance off they
return LeRobot's loss bit for bit (``test/core/steer/lerobot/test_adapters.py`` checks it), so a
guided and an unguided run differ by the ATE term alone.

- :class:`DiffusionGuidedLoss`: ``DiffusionPolicy`` (``prediction_type`` ``"epsilon"`` or
  ``"sample"``), the level is ``alphas_cumprod[timestep]`` of the policy's noise scheduler.
- :class:`FlowGuidedLoss`: the openpi flow convention of pi0, pi0.5 and SmolVLA
  (``x_t = t * noise + (1 - t) * a``, ``u = noise - a``, parameterisation ``"flow_openpi"``).
  Their inner models take ``(..., actions, noise, time)`` and compute ``mse(u_t, v_t)``
  themselves, so the guided target ``u - term`` is passed in through those arguments:
  ``noise' = noise - (1 - t) * term`` and ``actions' = actions + t * term`` leave ``x_t``
  unchanged and make the model's own ``u_t`` equal ``u - term``.
  :func:`flow_policy_loss` prepares the inputs of ``PI0Policy``, ``PI05Policy`` and
  ``SmolVLAPolicy`` the way their ``forward`` does.

LeRobot policies train on normalised actions of the dataset's dimension D, while the stage-2
VAE takes (B, H', 128) chunks in joint units: :class:`LeRobotActionSpace` un-normalises with the
policy's own post-processor step and scatters the D columns into the embodiment's slots.
A policy horizon longer than the VAE's chunk is guided on the window ``[start, start + H')``;
for ``DiffusionPolicy`` ``start`` defaults to ``n_obs_steps - 1``, the current step, because its
action window begins ``n_obs_steps - 1`` steps in the past.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from ate_ros.core.embodiment import UNIFIED_DIM, Embodiment
from ate_ros.core.steer.guidance import GuidanceStats, LatentGuidance

logger = logging.getLogger(__name__)

ACTION = "action"
ACTION_IS_PAD = "action_is_pad"
OBS_STATE = "observation.state"
OBS_IMAGES = "observation.images"
OBS_LANGUAGE_TOKENS = "observation.language.tokens"
OBS_LANGUAGE_ATTENTION_MASK = "observation.language.attention_mask"
FLOW_POLICIES = ("pi0", "pi05", "smolvla")


@dataclass
class LeRobotActionSpace:
    """A LeRobot action vector (D columns) <-> the 128-slot unified space of the VAE.

    Attributes:
        slots: (D,) unified slot of each action column, in column order.
        unnormalize: differentiable (..., D) normalised action -> joint units.
    """

    slots: np.ndarray
    unnormalize: Callable[[torch.Tensor], torch.Tensor]

    @property
    def dim(self) -> int:
        return int(len(self.slots))

    def to_unified(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, >=D) normalised policy chunk -> (B, H, 128) joint units (zeros off-mask).

        Columns past D (pi0's zero padding to ``max_action_dim``) are dropped, so their
        gradient is zero.
        """
        a = self.unnormalize(x[..., :self.dim])
        out = a.new_zeros(a.shape[:-1] + (UNIFIED_DIM,))
        idx = torch.as_tensor(self.slots, device=a.device, dtype=torch.long)
        return out.index_copy(-1, idx, a)

    @classmethod
    def from_postprocessor(cls, postprocessor: Any, embodiment: Embodiment,
                           action_dim: int) -> LeRobotActionSpace:
        """Use the ``UnnormalizerProcessorStep`` of a LeRobot policy post-processor.

        Raises:
            ValueError: when the action dimension is not the embodiment's DOF, or the pipeline
                has no un-normaliser.
        """
        from ate_ros.core.lerobot_compat import require_lerobot

        require_lerobot()
        from lerobot.processor import UnnormalizerProcessorStep

        if action_dim != embodiment.dof:
            raise ValueError(f"the LeRobot policy's action has {action_dim} dims but embodiment "
                             f"{embodiment.name!r} has {embodiment.dof} joints")
        steps = [s for s in postprocessor.steps if isinstance(s, UnnormalizerProcessorStep)]
        if len(steps) != 1:
            raise ValueError(f"expected one UnnormalizerProcessorStep in the policy "
                             f"post-processor, found {len(steps)}")
        step = steps[0]

        def unnormalize(x: torch.Tensor) -> torch.Tensor:
            return step._normalize_action(x, inverse=True)

        return cls(np.asarray(embodiment.slots, dtype=np.int64), unnormalize)


def windowed_target(guide: LatentGuidance | None, target: torch.Tensor, noisy: torch.Tensor,
                    clean: torch.Tensor, level: torch.Tensor, start: int = 0
                    ) -> tuple[torch.Tensor, GuidanceStats]:
    """:meth:`LatentGuidance.guided_target` on the window ``[start, start + horizon)``.

    Points outside the window keep the plain target. With guidance absent or off, returns
    ``target`` itself.
    """
    if guide is None or not guide.enabled:
        return target, GuidanceStats()
    H = target.shape[1]
    h = H - start if guide.horizon is None else guide.horizon
    if start < 0 or start + h > H:
        raise ValueError(f"guidance window [{start}, {start + h}) does not fit the policy "
                         f"horizon {H}")
    sl = slice(start, start + h)
    term, stats = guide.guidance_term(noisy[:, sl], clean[:, sl], level)
    full = torch.zeros_like(target)
    full[:, sl] = term.to(target.dtype)
    return target - full, stats


def make_guidance(encoder: Callable, parameterization: str, config, space: LeRobotActionSpace,
                  horizon: int | None, padded_dim: int | None = None) -> LatentGuidance:
    """A :class:`LatentGuidance` on the policy's normalised actions.

    Args:
        padded_dim: width of the policy's action tensor when it pads the D real dims with
            zeros (pi0 / pi0.5 / SmolVLA ``max_action_dim``); the padding is masked out so it
            neither receives guidance nor dilutes the per-sample RMS the clamp caps.
    """
    mask = None
    if padded_dim is not None and padded_dim != space.dim:
        if padded_dim < space.dim:
            raise ValueError(f"padded_dim {padded_dim} < action dim {space.dim}")
        mask = np.arange(padded_dim) < space.dim
    return LatentGuidance(encoder, parameterization, config, mask=mask,
                          to_encoder=space.to_unified, horizon=horizon)


def _stats_logs(stats: GuidanceStats, enabled: bool) -> dict[str, float]:
    return {f"guidance/{k}": v for k, v in stats.as_dict().items()} if enabled else {}


class DiffusionGuidedLoss:
    """LeRobot ``DiffusionPolicy.forward`` with the ATE-guided target.

    Args:
        policy: a ``lerobot`` ``DiffusionPolicy`` (training mode as the caller sets it).
        guidance: parameterisation must equal the policy's ``prediction_type``; ``None`` (or
            disabled) gives LeRobot's loss exactly.
        window_start: first guided point of the horizon (default ``n_obs_steps - 1``).
    """

    def __init__(self, policy: Any, guidance: LatentGuidance | None = None,
                 window_start: int | None = None) -> None:
        cfg = policy.config
        if guidance is not None and guidance.parameterization != cfg.prediction_type:
            raise ValueError(f"guidance parameterisation {guidance.parameterization!r} does not "
                             f"match the policy's prediction_type {cfg.prediction_type!r}")
        self.policy = policy
        self.guidance = guidance
        self.window_start = cfg.n_obs_steps - 1 if window_start is None else int(window_start)

    def __call__(self, batch: dict[str, torch.Tensor]
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss and logs for one batch (LeRobot's layout, already pre-processed)."""
        policy, cfg = self.policy, self.policy.config
        model = policy.diffusion
        # DiffusionPolicy.forward: stack the cameras into one key.
        if cfg.image_features:
            batch = dict(batch)
            for key in cfg.image_features:
                if cfg.n_obs_steps == 1 and batch[key].ndim == 4:
                    batch[key] = batch[key].unsqueeze(1)
            batch[OBS_IMAGES] = torch.stack([batch[k] for k in cfg.image_features], dim=-4)
        # DiffusionModel.compute_loss, same draws in the same order.
        if batch[ACTION].shape[1] != cfg.horizon:
            raise ValueError(f"batch action horizon {batch[ACTION].shape[1]} != policy horizon "
                             f"{cfg.horizon}")
        global_cond = model._prepare_global_conditioning(batch)
        trajectory = batch[ACTION]
        eps = torch.randn(trajectory.shape, device=trajectory.device)
        sched = model.noise_scheduler
        timesteps = torch.randint(low=0, high=sched.config.num_train_timesteps,
                                  size=(trajectory.shape[0],), device=trajectory.device).long()
        noisy = sched.add_noise(trajectory, eps, timesteps)
        pred = model.unet(noisy, timesteps, global_cond=global_cond)
        if cfg.prediction_type == "epsilon":
            target = eps
        elif cfg.prediction_type == "sample":
            target = trajectory
        else:
            raise ValueError(f"unsupported prediction type {cfg.prediction_type!r}")
        abar = sched.alphas_cumprod.to(trajectory.device)[timesteps]
        target, stats = windowed_target(self.guidance, target, noisy, trajectory, abar,
                                        self.window_start)
        loss = F.mse_loss(pred, target, reduction="none")
        if cfg.do_mask_loss_for_padding:
            if ACTION_IS_PAD not in batch:
                raise ValueError(f"the batch needs {ACTION_IS_PAD!r} when "
                                 "do_mask_loss_for_padding is set")
            loss = loss * (~batch[ACTION_IS_PAD]).unsqueeze(-1)
        loss = loss.mean()
        enabled = self.guidance is not None and self.guidance.enabled
        return loss, {"loss": float(loss.detach()), **_stats_logs(stats, enabled)}


def shift_flow_inputs(noise: torch.Tensor, actions: torch.Tensor, time: torch.Tensor,
                      term: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(noise', actions')`` with ``t*noise' + (1-t)*actions' = x_t`` and
    ``noise' - actions' = (noise - actions) - term`` (openpi convention, ``time`` (B,))."""
    t = time.reshape(-1, *([1] * (actions.ndim - 1))).to(actions.dtype)
    term = term.to(actions.dtype)
    return noise - (1 - t) * term, actions + t * term


class FlowGuidedLoss:
    """ATE guidance for a flow-matching model with pi0's loss signature.

    The model is LeRobot's inner module (``PI0Pytorch``, ``PI05Pytorch``, ``VLAFlowMatching``):
    ``model.forward(*inputs, actions, noise, time)`` returns the per-element
    ``mse(noise - actions, v_t)`` (B, H, D_pad), and ``model.sample_noise(shape, device)`` /
    ``model.sample_time(B, device)`` draw the training noise and time.

    Args:
        guidance: parameterisation ``"flow_openpi"``; ``None`` (or disabled) leaves the
            model's loss untouched.
        window_start: first guided point of the chunk.
    """

    def __init__(self, guidance: LatentGuidance | None = None, window_start: int = 0) -> None:
        if guidance is not None and guidance.parameterization != "flow_openpi":
            raise ValueError("pi0 / pi0.5 / SmolVLA use x_t = t*noise + (1-t)*a: the guidance "
                             f"parameterisation must be 'flow_openpi', got "
                             f"{guidance.parameterization!r}")
        self.guidance = guidance
        self.window_start = int(window_start)
        self.last_stats = GuidanceStats()

    def __call__(self, model: Any, *inputs: Any, actions: torch.Tensor,
                 noise: torch.Tensor | None = None, time: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """Per-element guided losses (B, H, D_pad); stats of the batch in ``last_stats``."""
        if noise is None:
            noise = model.sample_noise(actions.shape, actions.device)
        if time is None:
            time = model.sample_time(actions.shape[0], actions.device)
        self.last_stats = GuidanceStats()
        if self.guidance is not None and self.guidance.enabled:
            t = time.reshape(-1, 1, 1).to(actions.dtype)
            x_t = t * noise + (1 - t) * actions
            u_t = noise - actions
            guided, self.last_stats = windowed_target(self.guidance, u_t, x_t, actions, time,
                                                      self.window_start)
            noise, actions = shift_flow_inputs(noise, actions, time, u_t - guided)
        return model.forward(*inputs, actions, noise, time)


def _flow_inputs(policy: Any, batch: dict[str, torch.Tensor]) -> tuple[Sequence[Any], Any]:
    """(inputs before ``actions``, actions) as the policy's own ``forward`` prepares them."""
    name = policy.name
    if name == "pi0":
        images, img_masks = policy._preprocess_images(batch)
        return (images, img_masks, batch[OBS_LANGUAGE_TOKENS],
                batch[OBS_LANGUAGE_ATTENTION_MASK], policy.prepare_state(batch)
                ), policy.prepare_action(batch)
    if name == "pi05":
        images, img_masks = policy._preprocess_images(batch)
        return (images, img_masks, batch[OBS_LANGUAGE_TOKENS],
                batch[OBS_LANGUAGE_ATTENTION_MASK]), policy.prepare_action(batch)
    if name == "smolvla":
        if policy.config.adapt_to_pi_aloha:
            batch = dict(batch)
            batch[OBS_STATE] = policy._pi_aloha_decode_state(batch[OBS_STATE])
            batch[ACTION] = policy._pi_aloha_encode_actions_inv(batch[ACTION])
        images, img_masks = policy.prepare_images(batch)
        return (images, img_masks, batch[OBS_LANGUAGE_TOKENS],
                batch[OBS_LANGUAGE_ATTENTION_MASK], policy.prepare_state(batch)
                ), policy.prepare_action(batch)
    raise ValueError(f"flow guidance supports LeRobot policies {FLOW_POLICIES}, got {name!r}")


def flow_policy_loss(policy: Any, batch: dict[str, torch.Tensor], guided: FlowGuidedLoss
                     ) -> tuple[torch.Tensor, dict[str, float]]:
    """``PI0Policy`` / ``PI05Policy`` / ``SmolVLAPolicy`` ``forward`` with the guided target.

    Like the policies' own ``forward``: losses over the real action dims only (pi0 / pi0.5),
    and SmolVLA's ``max_action_dim`` truncation. Returns the mean loss and logs.
    """
    inputs, actions = _flow_inputs(policy, batch)
    losses = guided(policy.model, *inputs, actions=actions)
    if policy.name == "smolvla":
        losses = losses[:, :, :policy.config.max_action_dim]
    else:
        losses = losses[:, :, :policy.config.output_features[ACTION].shape[0]]
    loss = losses.mean()
    enabled = guided.guidance is not None and guided.guidance.enabled
    return loss, {"loss": float(loss.detach()), **_stats_logs(guided.last_stats, enabled)}


__all__ = ["FLOW_POLICIES", "DiffusionGuidedLoss", "FlowGuidedLoss", "LeRobotActionSpace",
           "flow_policy_loss", "make_guidance", "shift_flow_inputs", "windowed_target"]

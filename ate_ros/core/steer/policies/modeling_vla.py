"""The compact VLA policy: a small CNN per camera, a MiniLM instruction embedding and the
proprioceptive state condition a transformer action head (diffusion or flow matching).

Shapes: B batch, H chunk length, D = UNIFIED_DIM (128) slots, C cameras, M memory tokens.
The observation is encoded once per chunk into memory tokens (B, M, d); each denoising step only
runs the action decoder (H query tokens cross-attending to the memory), which keeps a 10-step
chunk cheap on a CPU.

Normalisation statistics of state and actions are buffers of the module, so they are saved with
the weights (``model.safetensors``) and never refit at load time.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ate_ros.core.embodiment import UNIFIED_DIM
from ate_ros.core.normalization import NormStats
from ate_ros.core.policy_contract import PolicyObservation
from ate_ros.core.steer.guidance import GuidanceStats, LatentGuidance, masked_mse
from ate_ros.core.steer.policies.action_decoder import DecoderBlock, sinusoidal_embedding
from ate_ros.core.steer.policies.configuration_vla import VLAConfig
from ate_ros.core.steer.policies.fast_inference import InferenceSwitch, TracedInference
from ate_ros.core.steer.policies.image_encoder import ImageEncoder, frames_to_input
from ate_ros.core.steer.policies.inference_guidance import InferenceGuidance
from ate_ros.core.steer.policies.object_slots import ObjectSlotEncoder
from ate_ros.core.steer.policies.saved_policy import (
    build_from_config,
    load_policy_weights,
    read_instruction_embeddings,
    read_policy_config,
    save_policy_folder,
)
from ate_ros.core.steer.rtc import RTCConfig, RTCProcessor, flow_equivalent
from ate_ros.core.steer.schedules import DiffusionSchedule, FlowSchedule, seeded_noise

logger = logging.getLogger(__name__)

# Batch keys (module constants, never bare strings).
OBS_IMAGES = "observation.images"  # (B, C, h, w, 3) uint8
OBS_STATE = "observation.state"  # (B, D) float32 joint units, zeros off-mask
OBS_MASK = "observation.mask"  # (B, D) bool
OBS_TEXT = "observation.text_embedding"  # (B, text_dim) float32
OBS_ENV_STATE = "observation.environment_state"  # (B, E) float32 low-dim scene state
ACTION = "action"  # (B, H, D) float32 joint units, zeros off-mask
EPISODE_GOAL = "episode.final_state"  # (B, D) training only: joint state at the episode's end



class VLAPolicy(nn.Module):
    """Compact VLA policy; satisfies ``ate_ros.core.policy_contract.ChunkPolicy``."""

    def __init__(self, config: VLAConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        C = len(config.camera_names)
        n_img = C * config.vision_grid ** 2
        E = config.env_state_dim
        slots = config.env_object_slots
        n_env = (ObjectSlotEncoder.tokens_for(E, slots, config.env_slot_size) if slots
                 else (1 if E else 0))
        n_mem = n_img + 2 + n_env
        if C:
            self.image_encoder = ImageEncoder(config.vision_channels, d, config.vision_grid,
                                              config.vision_pool)
            self.camera_embed = nn.Parameter(torch.zeros(C, 1, d))
        self.text_proj = nn.Sequential(nn.Linear(config.text_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.state_proj = nn.Sequential(nn.Linear(2 * UNIFIED_DIM, d), nn.SiLU(), nn.Linear(d, d))
        if slots:
            self.env_slots = ObjectSlotEncoder(E, slots, config.env_slot_size, d)
        if E and not slots:
            # The instruction enters the environment-state token too, so which object matters
            # ("the red block") is resolved where the object positions are.
            self.env_proj = nn.Sequential(nn.Linear(E + d, 2 * d), nn.SiLU(),
                                          nn.Linear(2 * d, d))
        if E:
            self.register_buffer("env_shift", torch.zeros(E))
            self.register_buffer("env_scale", torch.ones(E))
        self.memory_pos = nn.Parameter(torch.zeros(1, n_mem, d))
        self.memory_norm = nn.LayerNorm(d)
        self.action_in = nn.Linear(UNIFIED_DIM, d)
        self.action_pos = nn.Parameter(torch.zeros(1, config.chunk_size, d))
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.decoder = nn.ModuleList(DecoderBlock(d, config.n_heads, config.ffn_dim,
                                                  config.dropout)
                                     for _ in range(config.n_layers))
        self.out_norm = nn.LayerNorm(d)
        self.action_out = nn.Linear(d, UNIFIED_DIM)
        if config.instruction_keypoints:
            # Zero-initialised: the policy starts with the plain (possibly pre-trained) maps.
            n_maps = config.vision_grid ** 2
            self.keypoint_query = nn.Linear(d, n_maps * self.image_encoder.channels)
            nn.init.zeros_(self.keypoint_query.weight)
            nn.init.zeros_(self.keypoint_query.bias)
        if config.goal_loss_weight > 0:
            # Reads all memory tokens (flattened, so each image token's identity survives).
            self.goal_head = nn.Sequential(nn.Flatten(1), nn.Linear(n_mem * d, d),
                                           nn.SiLU(), nn.Linear(d, UNIFIED_DIM))
        # Initialised last, in this order: a seed gives the same weights as before the
        # low-dim track existed (image policies create the same modules in the same order).
        nn.init.normal_(self.memory_pos, std=0.02)
        nn.init.normal_(self.action_pos, std=0.02)
        if C:
            nn.init.normal_(self.camera_embed, std=0.02)
        # Normalisation statistics (saved with the weights): x_norm = (x - shift) / scale.
        for name in ("state", "action"):
            self.register_buffer(f"{name}_shift", torch.zeros(UNIFIED_DIM))
            self.register_buffer(f"{name}_scale", torch.ones(UNIFIED_DIM))
        self.diffusion = DiffusionSchedule(config.num_train_timesteps, config.beta_schedule)
        self.flow = FlowSchedule(config.flow_convention)
        self.inference_guidance: InferenceGuidance | None = None
        self.rtc: RTCProcessor | None = None
        """Real-time chunking (used when a committed prefix is passed; default settings when
        unset)."""
        self._text_cache: dict[str, torch.Tensor] = {}
        self.inference = TracedInference(self)
        """Traced and CUDA-graphed inference (:mod:`.fast_inference`)."""

    def _apply(self, fn, *args, **kwargs):
        self.inference.clear()  # .to()/.half() may swap parameter storage under a trace
        return super()._apply(fn, *args, **kwargs)

    fast_inference = InferenceSwitch("enabled")
    """Run inference through traced calls in eval mode (see :class:`TracedInference`)."""
    cuda_graphs = InferenceSwitch("cuda_graphs")
    """On CUDA, replay the fused denoising loop as one graph."""

    # ----- ChunkPolicy attributes ------------------------------------------------------------
    @property
    def chunk_size(self) -> int:
        return self.config.chunk_size

    @property
    def camera_names(self) -> list[str]:
        return list(self.config.camera_names)

    @property
    def embodiment_names(self) -> list[str]:
        return list(self.config.embodiment_names)

    @property
    def parameterization(self) -> str:
        return self.config.parameterization

    @property
    def env_state_dim(self) -> int:
        """Width of the environment state the policy reads (0: none)."""
        return self.config.env_state_dim

    @property
    def n_action_steps(self) -> int:
        """Chunk points to execute before replanning (0: the executor decides)."""
        return self.config.n_action_steps

    @property
    def relative_actions(self) -> bool:
        return self.config.action_mode == "relative"

    @property
    def observation_keys(self) -> tuple[str, ...]:
        """Batch keys :meth:`encode_observation` reads, in a fixed order."""
        keys = ((OBS_IMAGES,) if self.config.camera_names else ()) + (OBS_STATE, OBS_MASK,
                                                                      OBS_TEXT)
        return keys + ((OBS_ENV_STATE,) if self.config.env_state_dim else ())

    @property
    def model_id(self) -> str:
        """Short hash of config + weights (identifies the policy in logs and results)."""
        h = hashlib.sha256(str(sorted(self.config.to_dict().items())).encode())
        for k, v in sorted(self.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return f"vla-{self.config.head}-{h.hexdigest()[:12]}"

    # ----- normalisation -------------------------------------------------------------------------
    def set_norm_stats(self, state: NormStats, action: NormStats) -> None:
        for name, st in (("state", state), ("action", action)):
            if st.dim != UNIFIED_DIM:
                raise ValueError(f"{name} stats must have {UNIFIED_DIM} dims, got {st.dim}")
            self._copy_stats(name, st)

    def set_env_stats(self, stats: NormStats) -> None:
        """Normalisation of the environment state (policies with ``env_state_dim > 0``)."""
        if stats.dim != self.config.env_state_dim:
            raise ValueError(f"environment-state stats have {stats.dim} dims, the policy "
                             f"reads {self.config.env_state_dim}")
        self._copy_stats("env", stats)

    def _copy_stats(self, name: str, stats: NormStats) -> None:
        """``stats`` into the ``<name>_scale`` / ``<name>_shift`` buffers."""
        scale, shift = stats._scale_shift(np.zeros(1))
        getattr(self, f"{name}_scale").copy_(torch.as_tensor(scale, dtype=torch.float32))
        getattr(self, f"{name}_shift").copy_(torch.as_tensor(shift, dtype=torch.float32))

    def action_reference(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """(B, 1, D) what relative actions are relative to (the masked joint state at the
        observation); ``None`` for absolute actions."""
        if not self.relative_actions:
            return None
        mask = batch[OBS_MASK].to(torch.float32)
        return (batch[OBS_STATE].float() * mask).unsqueeze(1)

    def normalize_action(self, a: torch.Tensor) -> torch.Tensor:
        return (a - self.action_shift) / self.action_scale

    def unnormalize_action(self, a: torch.Tensor) -> torch.Tensor:
        """Differentiable normalised -> joint units (the guidance's ``to_encoder``)."""
        return a * self.action_scale + self.action_shift

    # ----- network -------------------------------------------------------------------------------
    def encode_observation(self, batch: dict[str, torch.Tensor],
                           state_keep: torch.Tensor | None = None) -> torch.Tensor:
        """-> memory tokens (B, M, d); run once per chunk. ``state_keep`` (B, 1) in {0, 1}
        hides the state of some samples (training-time state dropout)."""
        dtype = self.state_shift.dtype
        t_tok = self.text_proj(batch[OBS_TEXT].to(dtype)).unsqueeze(1)  # (B, 1, d)
        B = t_tok.shape[0]
        mask = batch[OBS_MASK].to(dtype)
        state = (batch[OBS_STATE] - self.state_shift) / self.state_scale * mask
        if state_keep is not None:
            state = state * state_keep
        s_tok = self.state_proj(torch.cat([state, mask], -1)).unsqueeze(1)
        tokens = [t_tok, s_tok]
        if self.config.env_state_dim:
            env = batch[OBS_ENV_STATE].to(dtype)
            if env.shape[-1] != self.config.env_state_dim:
                raise ValueError(f"environment state has {env.shape[-1]} values, the policy "
                                 f"reads {self.config.env_state_dim}")
            env = (env - self.env_shift) / self.env_scale
            if self.config.env_object_slots:
                tokens.append(self.env_slots(env, t_tok[:, 0]))
            else:
                tokens.append(self.env_proj(torch.cat([env, t_tok[:, 0]], -1)).unsqueeze(1))
        if self.config.camera_names:
            imgs = batch[OBS_IMAGES]  # (B, C, h, w, 3) uint8
            C = imgs.shape[1]
            if C != len(self.config.camera_names):
                raise ValueError(f"batch has {C} cameras, policy expects {self.camera_names}")
            x = frames_to_input(imgs.reshape((B * C,) + tuple(imgs.shape[2:])),
                                self.config.image_size)
            delta = None
            if self.config.instruction_keypoints:
                delta = self.keypoint_query(t_tok).view(B, -1, self.image_encoder.channels)
                delta = delta.repeat_interleave(C, 0)  # (B * C, K, c)
            tok = self.image_encoder(x, delta).reshape(B, C, -1, self.config.d_model)
            tokens.append((tok + self.camera_embed).flatten(1, 2))
        mem = torch.cat(tokens, 1) + self.memory_pos
        return self.memory_norm(mem)

    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer cross-attention keys/values of the memory (computed once per chunk)."""
        return [blk.memory_kv(memory) for blk in self.decoder]

    def time_embedding(self, noise_level: torch.Tensor) -> torch.Tensor:
        """(N,) noise fraction in [0, 1] -> (N, 1, d)."""
        return self.time_mlp(sinusoidal_embedding(noise_level, self.config.d_model)).unsqueeze(1)

    def denoise(self, x: torch.Tensor, noise_level: torch.Tensor | None,
                kv: list[tuple[torch.Tensor, torch.Tensor]],
                time_emb: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H, D) noisy normalised chunk, (B,) noise fraction in [0, 1] (or its precomputed
        ``time_emb`` (B or 1, 1, d)), memory K/V -> (B, H, D) model output (eps, x0 or v)."""
        t = self.time_embedding(noise_level) if time_emb is None else time_emb
        h = self.action_in(x) + self.action_pos + t
        for blk, layer_kv in zip(self.decoder, kv):
            h = blk(h, layer_kv)
        return self.action_out(self.out_norm(h))

    # ----- training ------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor], guidance: LatentGuidance | None = None,
                generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on a batch (joint units in, normalised inside). Returns (loss, logs)."""
        mask = batch[OBS_MASK]  # (B, D)
        mf = mask.to(torch.float32).unsqueeze(1)  # (B, 1, D)
        ref = self.action_reference(batch)
        a_joint = batch[ACTION].float() if ref is None else batch[ACTION].float() - ref
        a0 = self.normalize_action(a_joint) * mf
        B, dev = a0.shape[0], a0.device
        keep = None
        if self.training and self.config.state_dropout > 0:
            keep = (torch.rand((B, 1), generator=generator, device=dev)
                    >= self.config.state_dropout).to(a0.dtype)
        memory = self.encode_observation(batch, keep)
        kv = self.memory_kv(memory)
        noise = torch.randn(a0.shape, generator=generator, device=dev) * mf
        if self.config.head == "diffusion":
            k = torch.randint(0, self.diffusion.num_train_timesteps, (B,), device=dev,
                              generator=generator)
            level = self.diffusion.abar(k)
            x = self.diffusion.add_noise(a0, noise, k)
            frac = k.float() / (self.diffusion.num_train_timesteps - 1)
            target = noise if self.config.prediction_type == "epsilon" else a0
        else:
            level = self.flow.sample_level(B, dev, generator)
            x = self.flow.interpolate(a0, noise, level)
            frac = self.flow.noise_fraction(level)
            target = self.flow.target(a0, noise)
        loss_mask = mask
        if self.config.rtc_train_max_delay > 0:
            x, temb, loss_mask = self._clean_prefix(x, a0, frac, mask, generator)
            pred = self.denoise(x, None, kv, temb)
        else:
            pred = self.denoise(x, frac, kv)
        stats = GuidanceStats()
        if guidance is not None:
            target, stats = guidance.guided_target(target, x, a0, level, offset=ref)
        loss = masked_mse(pred, target, loss_mask)
        logs = {"loss": float(loss.detach())}
        if self.config.goal_loss_weight > 0 and EPISODE_GOAL in batch:
            goal = (batch[EPISODE_GOAL].float() - self.state_shift) / self.state_scale
            goal_loss = masked_mse(self.goal_head(memory).unsqueeze(1), goal.unsqueeze(1), mask)
            logs["denoise_loss"] = logs["loss"]
            logs["goal_loss"] = float(goal_loss.detach())
            loss = loss + self.config.goal_loss_weight * goal_loss
            logs["loss"] = float(loss.detach())
        if guidance is not None and guidance.enabled:
            logs.update({f"guidance/{k}": v for k, v in stats.as_dict().items()})
        return loss, logs

    def _clean_prefix(self, x: torch.Tensor, a0: torch.Tensor, frac: torch.Tensor,
                      mask: torch.Tensor, generator: torch.Generator | None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training-time RTC: each sample's first d ~ U(0, d_max) points are the clean actions,
        at noise fraction 0. -> (x, per-point time embedding (B, H, d), loss mask (B, H, D)
        without those points: they are given, not predicted)."""
        B, H, _ = x.shape
        d = torch.randint(0, self.config.rtc_train_max_delay + 1, (B, 1), device=x.device,
                          generator=generator)
        clean = torch.arange(H, device=x.device).unsqueeze(0) < d  # (B, H)
        x = torch.where(clean.unsqueeze(-1), a0, x)
        level = torch.where(clean, torch.zeros((), device=x.device), frac.view(B, 1))
        temb = self.time_embedding(level.reshape(-1).float()).view(B, H, -1)
        keep = (~clean).unsqueeze(-1).to(x.dtype) * mask.to(x.dtype).unsqueeze(1)
        return x, temb, keep

    def _sample_conditioned(self, x: torch.Tensor, kv: list, mf: torch.Tensor,
                            prefix: torch.Tensor, delay: int, steps: int,
                            generator: torch.Generator | None) -> torch.Tensor:
        """Training-time RTC sampling (``rtc_train_max_delay > 0``): the committed prefix's
        first ``delay`` points (normalised, (B or 1, P, D)) stay clean in the sample at every
        step, with the clean time embedding, as in training; the rest is denoised. Returns the
        normalised chunk (B, H, D), its first ``delay`` points the prefix's."""
        cfg = self.config
        B, H, _ = x.shape
        d = max(0, min(int(delay), prefix.shape[1], H))
        given = torch.zeros_like(x)
        given[:, :d] = prefix[:, :d].to(x.dtype)
        clean = (torch.arange(H, device=x.device) < d).view(1, H, 1)

        def temb(noise_fraction: float) -> torch.Tensor:  # (1, H, d): clean points at 0
            level = torch.full((H,), float(noise_fraction), device=x.device)
            level[:d] = 0.0
            return self.time_embedding(level).view(1, H, -1)

        if cfg.head == "diffusion":
            ts = self.diffusion.timesteps(steps)
            T1 = self.diffusion.num_train_timesteps - 1
            for i, t in enumerate(ts):
                t_prev = ts[i + 1] if i + 1 < len(ts) else -1
                abar = self.diffusion.alphas_cumprod[t].item()
                x = torch.where(clean, given, x)
                out = self.denoise(x, None, kv, temb(t / T1))
                x0 = self.diffusion.split(out, x, abar, cfg.prediction_type)[0]
                if cfg.clip_sample > 0:
                    x0 = x0.clamp(-cfg.clip_sample, cfg.clip_sample)
                x0 = torch.where(clean, given, x0) * mf
                eps = (x - math.sqrt(abar) * x0) / math.sqrt(max(1 - abar, 1e-8))
                x = self.diffusion.step(x0, eps, x, t, t_prev, cfg.sampler, generator) * mf
        else:
            grid = self.flow.grid(steps)
            for lv, lv_next in zip(grid[:-1], grid[1:]):
                x = torch.where(clean, given, x)
                frac = float(self.flow.noise_fraction(torch.tensor(lv)))
                x = self.flow.euler(x, self.denoise(x, None, kv, temb(frac)), lv, lv_next) * mf
        return torch.where(clean, given, x) * mf

    # ----- inference -----------------------------------------------------------------------------
    def set_inference_guidance(self, guidance, scale: float = 1.0, clamp: float = 0.1) -> None:
        """Enable experimental inference-time steering toward the adaptation latent distribution.

        ``guidance``: an alignment bundle (``ate_ros.core.align.load_alignment``), an
        :class:`InferenceGuidance`, or ``None`` to switch it off.
        """
        if guidance is None or isinstance(guidance, InferenceGuidance):
            self.inference_guidance = guidance
        else:
            self.inference_guidance = InferenceGuidance.from_bundle(guidance, scale, clamp)

    def set_rtc(self, config: RTCConfig | None) -> None:
        """Real-time chunking settings (``None``: the defaults)."""
        self.rtc = RTCProcessor(config)

    @torch.no_grad()  # not inference_mode: inference-time guidance needs autograd
    def sample(self, batch: dict[str, torch.Tensor], num_steps: int | None = None,
               generator: torch.Generator | None = None,
               guidance: InferenceGuidance | None = None,
               prefix: torch.Tensor | None = None, inference_delay: int = 0) -> torch.Tensor:
        """(B, H, D) chunks in joint units, zeros off-mask.

        ``prefix`` (B or 1, P, D) joint units: the committed actions for the same times as the
        chunk's first P points (real-time chunking, :mod:`ate_ros.core.steer.rtc`): the first
        ``inference_delay`` are frozen, later ones weigh less up to the execution horizon.
        """
        cfg = self.config
        steps = int(num_steps or cfg.num_inference_steps)
        memory, kv = self.inference.encode(batch)
        mf = batch[OBS_MASK].to(memory.dtype).unsqueeze(1)
        B, dev = memory.shape[0], memory.device
        ref = self.action_reference(batch)
        ref = torch.zeros_like(mf) if ref is None else ref.to(memory.dtype)
        x = seeded_noise((B, cfg.chunk_size, UNIFIED_DIM), generator, dev, memory.dtype) * mf

        def steer(x0: torch.Tensor) -> torch.Tensor:
            if guidance is None:
                return x0
            shift = guidance.shift((self.unnormalize_action(x0) + ref) * mf)
            return x0 + shift / self.action_scale * mf

        # Without guidance, deterministic samplers (DDIM, flow Euler) run one traced call per
        # step (decoder + update, all steps' coefficients in one table); guidance (autograd)
        # and DDPM (fresh noise per step) run the update step by step in Python.
        rtc = None
        if prefix is not None:
            rtc = self.rtc or RTCProcessor()
            # Joint units -> the sampler's normalised space (relative to the same reference).
            prefix = self.normalize_action(prefix.to(memory.dtype).to(dev) - ref) * mf
            if cfg.rtc_train_max_delay > 0:  # trained to condition on it: no guidance
                x = self._sample_conditioned(x, kv, mf, prefix, inference_delay, steps,
                                             generator)
                return (self.unnormalize_action(x) + ref) * mf
        fuse = guidance is None and rtc is None and self.inference.active() and (
            cfg.head == "flow" or cfg.sampler == "ddim")
        if cfg.head == "diffusion":
            ts = self.diffusion.timesteps(steps)
            T1 = self.diffusion.num_train_timesteps - 1
            # All steps' time embeddings in one call: (steps, 1, d).
            temb = self.time_embedding(torch.tensor(ts, device=dev, dtype=torch.float32) / T1)
            coef = self.diffusion.ddim_table(ts, x.dtype, dev) if fuse else None
        else:
            grid = self.flow.grid(steps)
            temb = self.time_embedding(self.flow.noise_fraction(
                torch.tensor(grid[:-1], device=dev, dtype=torch.float32)))
            coef = self.flow.euler_table(grid, x.dtype, dev) if fuse else None
        step = None if coef is None else self.inference.sampler_step(x, kv, temb[:1], coef[0], mf)
        graphed = None if step is None else self.inference.graphed_loop(x, kv, temb, coef, mf)
        if graphed is not None:
            x = graphed
        elif step is not None:
            for t_i, c_i in zip(temb.split(1), coef.unbind(0)):
                x = step(x, t_i, c_i)
        elif cfg.head == "diffusion":
            den = self.denoise if rtc is not None else self.inference.denoiser(x, kv, temb[:1])

            def x0_hat(x_: torch.Tensor, abar: float, t_i: torch.Tensor) -> torch.Tensor:
                out = den(x_, None, kv, t_i) if rtc is not None else den(x_, t_i)
                x0 = self.diffusion.split(out, x_, abar, cfg.prediction_type)[0]
                return x0.clamp(-cfg.clip_sample, cfg.clip_sample) if cfg.clip_sample > 0 else x0

            for i, t in enumerate(ts):
                t_prev = ts[i + 1] if i + 1 < len(ts) else -1
                abar = self.diffusion.alphas_cumprod[t].item()
                t_i = temb[i:i + 1]
                if rtc is None:
                    x0 = x0_hat(x, abar, t_i)
                else:  # x0-based RTC: guidance on the flow path x / s at tau (flow_equivalent)
                    s, tau = flow_equivalent(abar)
                    x0 = rtc.guided_x0(x / s, lambda xf, a=abar, e=t_i, k=s: x0_hat(xf * k, a, e),
                                       prefix, inference_delay, tau, head="diffusion")
                x0 = steer(x0) * mf
                eps = (x - math.sqrt(abar) * x0) / math.sqrt(max(1 - abar, 1e-8))
                x = self.diffusion.step(x0, eps, x, t, t_prev, cfg.sampler, generator) * mf
        else:
            den = self.inference.denoiser(x, kv, temb[:1])
            for i, (lv, lv_next) in enumerate(zip(grid[:-1], grid[1:])):
                t_i = temb[i:i + 1]
                if rtc is not None:
                    tau = 1.0 - float(self.flow.noise_fraction(torch.tensor(lv)))
                    x0 = rtc.guided_x0(
                        x, lambda x_, lv_=lv, e=t_i: self.flow.x0_from_velocity(
                            self.denoise(x_, None, kv, e), x_, lv_), prefix, inference_delay, tau)
                    v = self.flow.velocity_from_x0(x0, x, lv)
                else:
                    v = den(x, t_i)
                if guidance is not None:
                    x0 = steer(self.flow.x0_from_velocity(v, x, lv))
                    v = self.flow.velocity_from_x0(x0, x, lv)
                x = self.flow.euler(x, v, lv, lv_next) * mf
        return (self.unnormalize_action(x) + ref) * mf

    def observation_to_batch(self, obs: PolicyObservation) -> dict[str, torch.Tensor]:
        dev = self.action_shift.device
        missing = [c for c in self.config.camera_names if c not in obs.images]
        if missing:
            raise ValueError(f"observation lacks cameras {missing} (has {sorted(obs.images)})")
        batch: dict[str, torch.Tensor] = {}
        if self.config.camera_names:
            imgs = np.stack([obs.images[c] for c in self.config.camera_names])  # (C, h, w, 3)
            batch[OBS_IMAGES] = torch.from_numpy(imgs).unsqueeze(0).to(dev)
        E = self.config.env_state_dim
        if E:
            if obs.env_state is None:
                raise ValueError(f"the policy reads a {E}-value environment state (object "
                                 "positions) and the observation has none")
            if obs.env_state.shape != (E,):
                raise ValueError(f"environment state has shape {obs.env_state.shape}, the "
                                 f"policy reads ({E},)")
            batch[OBS_ENV_STATE] = torch.from_numpy(obs.env_state).unsqueeze(0).to(dev)
        if obs.instruction not in self._text_cache:
            from ate_ros.core.steer.policies.text_encoder import embed_instructions

            emb = embed_instructions([obs.instruction], self.config.text_encoder,
                                     self.config.text_dim)[0]
            self._text_cache[obs.instruction] = torch.from_numpy(emb).to(dev)
        batch.update({OBS_STATE: torch.from_numpy(obs.qpos * obs.mask).unsqueeze(0).to(dev),
                      OBS_MASK: torch.from_numpy(obs.mask).unsqueeze(0).to(dev),
                      OBS_TEXT: self._text_cache[obs.instruction].unsqueeze(0)})
        return batch

    def predict_chunk(self, obs: PolicyObservation, num_steps: int | None = None,
                      seed: int | None = None, guidance_scale: float | None = None,
                      prefix: np.ndarray | None = None, inference_delay: int = 0
                      ) -> np.ndarray:
        """(H, 128) float32 joint-position targets, zeros off ``obs.mask``.

        ``seed`` fixes the sampling noise: bit-reproducible on one device, and the same noise
        on CPU and GPU (drawn from a CPU generator), so chunks agree across devices up to
        floating-point differences. ``guidance_scale``
        overrides the scale of inference-time steering set with :meth:`set_inference_guidance`
        (0 disables it for this call); without it set, sampling is unguided. ``prefix`` (P, 128)
        joint units, the committed targets for the chunk's first P times, and
        ``inference_delay`` select real-time chunking (see :meth:`sample`).
        """
        if not obs.mask.any():
            raise ValueError("observation mask selects no joints")
        batch = self.observation_to_batch(obs)
        gen = None
        if seed is not None:
            gen = torch.Generator().manual_seed(int(seed))
        guide = self.inference_guidance
        if guide is not None and guidance_scale is not None:
            guide = None if guidance_scale <= 0 else InferenceGuidance(
                **{**guide.__dict__, "scale": float(guidance_scale)})
        # Only switch modes when needed: ``train()`` walks every submodule, and a deployed
        # policy is already in eval mode.
        was_training = self.training
        if was_training:
            self.eval()
        try:
            pre = None if prefix is None else torch.as_tensor(
                np.asarray(prefix, dtype=np.float32)).unsqueeze(0)
            chunk = self.sample(batch, num_steps, gen, guide, pre, int(inference_delay))[0]
        finally:
            if was_training:
                self.train()
        out = chunk.float().cpu().numpy()
        out[:, ~obs.mask] = 0.0
        return out.astype(np.float32)

    # ----- save / load ---------------------------------------------------------------------------
    def save_pretrained(self, out_dir: str | Path, extra: dict | None = None) -> Path:
        """Write ``model.safetensors`` + ``config.json`` into ``out_dir`` (see
        :mod:`.saved_policy`)."""
        return save_policy_folder(self, self.config, out_dir, extra)

    @property
    def known_instructions(self) -> list[str]:
        """Instructions whose embeddings are loaded (no language-model call needed)."""
        return list(self._text_cache)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> VLAPolicy:
        model = build_from_config(cls, read_policy_config(path), path)
        load_policy_weights(model, path)
        model = model.to(device).eval()
        dev = model.action_shift.device
        for text, vec in read_instruction_embeddings(path, model.config).items():
            model._text_cache[text] = vec.to(dev)
        return model

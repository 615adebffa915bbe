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
import json
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ate_ros.core.embodiment import UNIFIED_DIM
from ate_ros.core.normalization import NormStats
from ate_ros.core.policy_io import PolicyObservation
from ate_ros.core.steer.guidance import GuidanceStats, LatentGuidance, masked_mse
from ate_ros.core.steer.policies.configuration_vla import VLAConfig
from ate_ros.core.steer.policies.object_slots import ObjectSlotEncoder
from ate_ros.core.steer.schedules import DiffusionSchedule, FlowSchedule, seeded_noise
from ate_ros.core.training import (
    CONFIG_FILE,
    CheckpointError,
    load_state_dict_checked,
    load_tensors,
    read_json,
    save_tensors,
    write_json,
)

logger = logging.getLogger(__name__)

# Batch keys (module constants, never bare strings).
OBS_IMAGES = "observation.images"  # (B, C, h, w, 3) uint8
OBS_STATE = "observation.state"  # (B, D) float32 joint units, zeros off-mask
OBS_MASK = "observation.mask"  # (B, D) bool
OBS_TEXT = "observation.text_embedding"  # (B, text_dim) float32
OBS_ENV_STATE = "observation.environment_state"  # (B, E) float32 low-dim scene state
ACTION = "action"  # (B, H, D) float32 joint units, zeros off-mask
EPISODE_GOAL = "episode.final_state"  # (B, D) training only: joint state at the episode's end

WEIGHTS_FILE = "model.safetensors"
INSTRUCTIONS_FILE = "instruction_embeddings.safetensors"
POLICY_TYPE = "ate_ros.vla"


def _sinusoidal(x: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) in [0, 1] -> (B, dim) sinusoidal features (x scaled to [0, 1000])."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=x.device) / half)
    arg = x.float().unsqueeze(1) * 1000.0 * freqs.unsqueeze(0)
    return torch.cat([arg.sin(), arg.cos()], 1)


def frames_to_input(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 camera frames -> (N, 3, size, size) float in [0, 1], the image
    encoder's input (bilinear resize when the frames have another size)."""
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


class ImageEncoder(nn.Module):
    """(N, 3, S, S) float in [0, 1] -> (N, grid^2, d) tokens. Stride-2 conv stages + GroupNorm.

    ``pool="avg"`` averages the feature map over grid x grid cells. ``pool="keypoints"`` learns
    grid^2 spatial attention maps (a spatial softmax, as in robot-learning encoders) and gives
    each token the attended feature *and* the expected image coordinates of its map, so the
    position of a small target survives pooling (an average over a coarse cell loses it).
    ``query_delta`` (N, grid^2, c) adds a per-sample term to each map's query (the
    instruction's, see ``VLAConfig.instruction_keypoints``).
    """

    def __init__(self, channels: list[int], d_model: int, grid: int, pool: str = "avg") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(8, c), nn.SiLU()]
            c_in = c
        self.net = nn.Sequential(*layers)
        self.pool_mode = pool
        if pool == "keypoints":
            self.attn = nn.Conv2d(c_in, grid * grid, 1)
            self.proj = nn.Linear(c_in + 2, d_model)
        else:
            self.pool = nn.AdaptiveMaxPool2d(grid) if pool == "max" else nn.AdaptiveAvgPool2d(grid)
            self.proj = nn.Linear(c_in, d_model)
        self.register_buffer("pix_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("pix_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
                             persistent=False)

    @property
    def channels(self) -> int:
        """Channels of the last feature map."""
        return self.proj.in_features - (2 if self.pool_mode == "keypoints" else 0)

    def forward(self, x: torch.Tensor, query_delta: torch.Tensor | None = None) -> torch.Tensor:
        f = self.net((x - self.pix_mean) / self.pix_std)  # (N, c, h, w)
        if self.pool_mode in ("avg", "max"):
            f = self.pool(f)  # (N, c, g, g)
            return self.proj(f.flatten(2).transpose(1, 2))  # (N, g*g, d)
        N, c, h, w = f.shape
        pixels = f.flatten(2)  # (N, c, h*w)
        logits = self.attn(f).flatten(2)  # (N, K, h*w)
        if query_delta is not None:
            logits = logits + query_delta @ pixels
        attn = logits.softmax(-1)
        feat = attn @ pixels.transpose(1, 2)  # (N, K, c)
        ys = torch.linspace(-1.0, 1.0, h, device=f.device, dtype=f.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=f.device, dtype=f.dtype)
        grid_xy = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(h * w, 2)
        return self.proj(torch.cat([feat, attn @ grid_xy], -1))  # (N, K, d)


class DecoderBlock(nn.Module):
    """Pre-norm decoder block (self-attention, cross-attention to the memory, MLP).

    Hand-written on ``scaled_dot_product_attention`` so that the memory's keys/values can be
    computed once per chunk (:meth:`memory_kv`) and reused by every denoising step.
    """

    def __init__(self, d: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.self_out = nn.Linear(d, d)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.cross_out = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, ffn), nn.GELU(), nn.Linear(ffn, d))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape  # (B, N, d) -> (B, heads, N, d / heads)
        return x.view(B, N, self.heads, -1).transpose(1, 2)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(memory).chunk(2, -1)
        return self._heads(k), self._heads(v)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        B, N, d = x.shape
        p = self.dropout if self.training else 0.0
        q, k, v = (self._heads(t) for t in self.qkv(self.norm1(x)).chunk(3, -1))
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        x = x + self.self_out(a.transpose(1, 2).reshape(B, N, d))
        a = F.scaled_dot_product_attention(self._heads(self.q(self.norm2(x))), kv[0], kv[1],
                                           dropout_p=p)
        x = x + self.cross_out(a.transpose(1, 2).reshape(B, N, d))
        return x + self.mlp(self.norm3(x))


class _TraceCache(dict):
    """Traced decoders and captured CUDA graphs of one policy. Never copied: a trace (or graph)
    calls the weights of the module it was made from, so a deep copy (an EMA model) must trace
    its own."""

    def __deepcopy__(self, memo: dict) -> _TraceCache:
        return _TraceCache()

    def __reduce__(self):
        return (_TraceCache, ())


def _flat_kv(kv) -> tuple[torch.Tensor, ...]:
    """Per-layer (K, V) pairs -> (k_0, v_0, k_1, v_1, ...) (traced and graphed signatures)."""
    return tuple(t for pair in kv for t in pair)


def _pair_kv(flat) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Inverse of :func:`_flat_kv`."""
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


class _ObservationEncoder(nn.Module):
    """Traceable view of :meth:`VLAPolicy.encode_observation` + :meth:`VLAPolicy.memory_kv`:
    the policy's observation tensors (in :meth:`VLAPolicy.observation_keys` order) ->
    (memory, k_0, v_0, k_1, v_1, ...)."""

    def __init__(self, policy: VLAPolicy) -> None:
        super().__init__()
        self.policy = policy
        self.keys = policy.observation_keys

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        memory = self.policy.encode_observation(dict(zip(self.keys, inputs)))
        return (memory, *_flat_kv(self.policy.memory_kv(memory)))


class _DecoderStep(nn.Module):
    """Traceable view of :meth:`VLAPolicy.denoise` (tensor-only signature)."""

    def __init__(self, policy: VLAPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor,
                kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]) -> torch.Tensor:
        return self.policy.denoise(x, None, list(kv), time_emb)


class _SamplerStep(nn.Module):
    """Traceable denoising step: the decoder *and* the sampler update (DDIM or flow Euler).

    ``(x, time_emb, coef, mask, kv) -> next x``. The step's time embedding and its row of the
    coefficient table (:meth:`DiffusionSchedule.ddim_table`, :meth:`FlowSchedule.euler_table`)
    are inputs, so one trace serves every step of every chunk; the head, prediction type and
    clip are constants of the trace (part of its cache key).
    """

    def __init__(self, policy: VLAPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor, coef: torch.Tensor,
                mask: torch.Tensor, kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]
                ) -> torch.Tensor:
        cfg = self.policy.config
        out = self.policy.denoise(x, None, list(kv), time_emb)
        if cfg.head == "diffusion":
            return DiffusionSchedule.ddim_update(out, x, coef, mask, cfg.prediction_type,
                                                 cfg.clip_sample)
        return FlowSchedule.euler_update(out, x, coef, mask)


@dataclass
class InferenceGuidance:
    """Experimental inference-time latent steering (off unless set on the policy).

    At every denoising step the predicted clean chunk x0_hat is moved along the gradient of the
    log-density of its latent under the adaptation latent Gaussian N(mean, cov) (the stage-2
    aggregate posterior): ``x0 <- x0 + clamp(scale * grad)``; the gradient is taken w.r.t. x0_hat
    only (no backprop through the policy), so the cost is one encoder forward/backward per step.
    """

    encoder: object  # (B, H', D) joint units -> latent mean (B, Z) (or (mu, logvar))
    mean: torch.Tensor  # (Z,)
    precision: torch.Tensor  # (Z, Z)
    scale: float = 1.0
    clamp: float = 0.1
    horizon: int | None = None
    mask: torch.Tensor | None = None  # (D,) bool

    @classmethod
    def from_bundle(cls, bundle, scale: float = 1.0, clamp: float = 0.1) -> InferenceGuidance:
        from ate_ros.core.steer.guidance import encoder_from_bundle

        cov = torch.as_tensor(np.asarray(bundle.adapt_cov), dtype=torch.float32)
        return cls(encoder=encoder_from_bundle(bundle),
                   mean=torch.as_tensor(np.asarray(bundle.adapt_mean), dtype=torch.float32),
                   precision=torch.linalg.inv(cov + 1e-6 * torch.eye(cov.shape[0])),
                   scale=scale, clamp=clamp, horizon=int(bundle.chunk_size),
                   mask=torch.as_tensor(np.asarray(bundle.mask), dtype=torch.bool))

    def shift(self, x0_joint: torch.Tensor) -> torch.Tensor:
        """(B, H, D) joint-unit chunk -> (B, H, D) shift of it, in joint units."""
        h = x0_joint.shape[1] if self.horizon is None else min(self.horizon, x0_joint.shape[1])
        with torch.enable_grad():
            x = x0_joint[:, :h].detach().float().requires_grad_(True)
            out = self.encoder(x)
            mu = (out[0] if isinstance(out, (tuple, list)) else out).reshape(x.shape[0], -1)
            d = mu - self.mean.to(mu.device)
            logp = -0.5 * (d @ self.precision.to(mu.device) * d).sum(-1)  # (B,)
            (g,) = torch.autograd.grad(logp.sum(), x)
        g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
        if self.mask is not None:
            g = g * self.mask.to(g.device, g.dtype)
        s = (self.scale * g).clamp(-self.clamp, self.clamp)
        out = torch.zeros_like(x0_joint)
        out[:, :h] = s
        return out


class VLAPolicy(nn.Module):
    """Compact VLA policy; satisfies ``ate_ros.core.policy_io.ChunkPolicy``."""

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
        self._text_cache: dict[str, torch.Tensor] = {}
        self.fast_inference = True
        """Run the denoising loop through a traced decoder (see :meth:`_denoiser`)."""
        self.cuda_graphs = True
        """On CUDA, replay the fused denoising loop as one graph (see :meth:`_graphed_loop`)."""
        self._traced = _TraceCache()

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
        return self.time_mlp(_sinusoidal(noise_level, self.config.d_model)).unsqueeze(1)

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

    def _apply(self, fn, *args, **kwargs):
        self._traced.clear()  # .to()/.half() may swap parameter storage under a trace
        return super()._apply(fn, *args, **kwargs)

    def _trace(self, key: tuple, module: nn.Module, inputs: tuple):
        """The cached trace of ``module`` for ``key``, tracing it on ``inputs`` the first time;
        ``None`` (and ``fast_inference`` off from then on) if tracing fails."""
        traced = self._traced.get(key)
        if traced is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    traced = torch.jit.trace(module, inputs, check_trace=False)
            except Exception as exc:  # noqa: BLE001 - any tracing failure -> eager
                logger.warning("tracing the %s step failed (%s); using eager inference",
                               key[0], exc)
                self.fast_inference = False
                return None
            self._traced[key] = traced
        return traced

    def _use_traces(self) -> bool:
        return self.fast_inference and not self.training and not torch.is_grad_enabled()

    def _encode(self, batch: dict[str, torch.Tensor]
                ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Memory tokens and per-layer K/V of a batch; with ``fast_inference`` one traced call
        (the eager encoder is ~30 module calls, ~1 ms of Python per chunk on one core)."""
        if self._use_traces():
            inputs = tuple(batch[k] for k in self.observation_keys)
            key = ("encoder", *((tuple(t.shape), t.dtype, t.device.type) for t in inputs))
            traced = self._trace(key, _ObservationEncoder(self), inputs)
            if traced is not None:
                memory, *flat = traced(*inputs)
                return memory, _pair_kv(flat)
        memory = self.encode_observation(batch)
        return memory, self.memory_kv(memory)

    def _denoiser(self, x: torch.Tensor, kv: list[tuple[torch.Tensor, torch.Tensor]],
                  time_emb: torch.Tensor):
        """``f(x, time_emb) -> model output`` for one chunk's denoising loop (the step-by-step
        sampler: DDPM, inference-time guidance; see :meth:`_sampler_step` for the fused one).

        With ``fast_inference`` (eval mode, no autograd) the decoder is traced once per input
        signature with ``torch.jit.trace``: at batch 1 the decoder is a few dozen small matmuls
        and Python dispatch is ~40% of a step, which the trace removes (0.95 -> 0.58 ms per
        step on one CPU core). The trace is not frozen: it shares this module's parameters, so
        in-place updates (optimiser steps, EMA copies, ``load_state_dict``) stay visible.
        ``torch.compile`` would need a C++ toolchain and tens of seconds per shape on the
        robot's CPU; tracing is deprecated in torch 2.13 but works, and any failure falls back
        to eager execution.
        """
        kv_t = tuple(kv)

        def eager(x_: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
            return self.denoise(x_, None, kv, t_)

        if not self._use_traces():
            return eager
        key = ("decoder", tuple(x.shape), x.dtype, x.device.type, tuple(time_emb.shape),
               tuple(tuple(k.shape) for k, _ in kv_t))
        traced = self._trace(key, _DecoderStep(self), (x, time_emb, kv_t))
        if traced is None:
            return eager
        return lambda x_, t_: traced(x_, t_, kv_t)

    def _sampler_step(self, x: torch.Tensor, kv: list[tuple[torch.Tensor, torch.Tensor]],
                      time_emb: torch.Tensor, coef: torch.Tensor, mask: torch.Tensor):
        """``f(x, time_emb, coef) -> next x``: one traced call runs the decoder and the DDIM or
        flow Euler update (the update alone is ~10 small ops per step, ~0.3 ms at batch 1 when
        run eagerly). ``None`` where traces are not used (training, autograd,
        ``fast_inference`` off) or tracing failed: then :meth:`sample` runs step by step."""
        if not self._use_traces():
            return None
        kv_t = tuple(kv)
        cfg = self.config
        key = ("sampler", cfg.head, cfg.prediction_type, float(cfg.clip_sample),
               tuple(x.shape), x.dtype, x.device.type, tuple(time_emb.shape),
               tuple(coef.shape), coef.dtype, tuple(mask.shape), mask.dtype,
               tuple(tuple(k.shape) for k, _ in kv_t))
        traced = self._trace(key, _SamplerStep(self), (x, time_emb, coef, mask, kv_t))
        if traced is None:
            return None
        return lambda x_, t_, c_: traced(x_, t_, c_, mask, kv_t)

    def _graphed_loop(self, x: torch.Tensor, kv: list[tuple[torch.Tensor, torch.Tensor]],
                      temb: torch.Tensor, coef: torch.Tensor, mask: torch.Tensor
                      ) -> torch.Tensor | None:
        """The fused denoising loop (all steps) replayed as one CUDA graph; ``None`` off CUDA,
        with ``cuda_graphs`` off, or when capture failed (then the loop runs step by step).

        At batch 1 a GPU step is a few dozen tiny kernels, so the loop is bound by kernel
        launches on the host (about as slow as a CPU core). One graph per input signature
        (batch, steps, memory length) is captured after the traced step has been optimised;
        each call copies its inputs into the graph's static buffers and replays it. The graph
        reads the parameters' storage, so in-place weight updates stay visible; ``.to()``
        drops it with the traces.
        """
        if not (self.cuda_graphs and x.is_cuda):
            return None
        cfg = self.config
        key = ("graph", cfg.head, cfg.prediction_type, float(cfg.clip_sample), tuple(x.shape),
               x.dtype, x.device.index, tuple(temb.shape), tuple(coef.shape), coef.dtype,
               tuple(mask.shape), tuple(tuple(k.shape) for k, _ in kv))
        entry = self._traced.get(key)
        inputs = (x, temb, coef, mask, *_flat_kv(kv))
        if entry is None:
            entry = self._capture_loop(key, inputs)
            if entry is None:
                return None
        graph, static, out = entry
        for dst, src in zip(static, inputs):
            dst.copy_(src)
        graph.replay()
        return out.clone()  # the next replay overwrites ``out``

    def _capture_loop(self, key: tuple, inputs: tuple[torch.Tensor, ...]):
        static = tuple(t.clone() for t in inputs)
        sx, st, sc, sm, *flat = static
        step = self._sampler_step(sx, _pair_kv(flat), st[:1], sc[0], sm)
        if step is None:
            return None

        def loop() -> torch.Tensor:
            y = sx
            for t_i, c_i in zip(st.split(1), sc.unbind(0)):
                y = step(y, t_i, c_i)
            return y

        dev = sx.device
        try:
            # Warm-up on a side stream, as capture requires; three passes let the TorchScript
            # profiling executor settle on its optimised plan, which is what gets captured.
            side = torch.cuda.Stream(device=dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):
                for _ in range(3):
                    loop()
            torch.cuda.current_stream(dev).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = loop()
        except Exception as exc:  # noqa: BLE001 - any capture failure -> uncaptured loop
            logger.warning("capturing the denoising loop as a CUDA graph failed (%s); "
                           "running it step by step", exc)
            self.cuda_graphs = False
            return None
        entry = (graph, static, out)
        self._traced[key] = entry
        return entry

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
        pred = self.denoise(x, frac, kv)
        stats = GuidanceStats()
        if guidance is not None:
            target, stats = guidance.guided_target(target, x, a0, level, offset=ref)
        loss = masked_mse(pred, target, mask)
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

    @torch.no_grad()  # not inference_mode: inference-time guidance needs autograd
    def sample(self, batch: dict[str, torch.Tensor], num_steps: int | None = None,
               generator: torch.Generator | None = None,
               guidance: InferenceGuidance | None = None) -> torch.Tensor:
        """(B, H, D) chunks in joint units, zeros off-mask."""
        cfg = self.config
        steps = int(num_steps or cfg.num_inference_steps)
        memory, kv = self._encode(batch)
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
        fuse = guidance is None and self._use_traces() and (
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
        step = None if coef is None else self._sampler_step(x, kv, temb[:1], coef[0], mf)
        graphed = None if step is None else self._graphed_loop(x, kv, temb, coef, mf)
        if graphed is not None:
            x = graphed
        elif step is not None:
            for t_i, c_i in zip(temb.split(1), coef.unbind(0)):
                x = step(x, t_i, c_i)
        elif cfg.head == "diffusion":
            den = self._denoiser(x, kv, temb[:1])
            for i, t in enumerate(ts):
                t_prev = ts[i + 1] if i + 1 < len(ts) else -1
                out = den(x, temb[i:i + 1])
                abar = self.diffusion.alphas_cumprod[t].item()
                x0, eps = self.diffusion.split(out, x, abar, cfg.prediction_type)
                if cfg.clip_sample > 0:
                    x0 = x0.clamp(-cfg.clip_sample, cfg.clip_sample)
                x0 = steer(x0) * mf
                eps = (x - math.sqrt(abar) * x0) / math.sqrt(max(1 - abar, 1e-8))
                x = self.diffusion.step(x0, eps, x, t, t_prev, cfg.sampler, generator) * mf
        else:
            den = self._denoiser(x, kv, temb[:1])
            for i, (lv, lv_next) in enumerate(zip(grid[:-1], grid[1:])):
                v = den(x, temb[i:i + 1])
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
                      seed: int | None = None, guidance_scale: float | None = None
                      ) -> np.ndarray:
        """(H, 128) float32 joint-position targets, zeros off ``obs.mask``.

        ``seed`` fixes the sampling noise: bit-reproducible on one device, and the same noise
        on CPU and GPU (drawn from a CPU generator), so chunks agree across devices up to
        floating-point differences. ``guidance_scale``
        overrides the scale of inference-time steering set with :meth:`set_inference_guidance`
        (0 disables it for this call); without it set, sampling is unguided.
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
        # Only switch modes when needed: ``train()`` walks every submodule (~0.5 ms per call on
        # one core), and a deployed policy is already in eval mode.
        was_training = self.training
        if was_training:
            self.eval()
        try:
            chunk = self.sample(batch, num_steps, gen, guide)[0]
        finally:
            if was_training:
                self.train()
        out = chunk.float().cpu().numpy()
        out[:, ~obs.mask] = 0.0
        return out.astype(np.float32)

    # ----- save / load ---------------------------------------------------------------------------
    def save_pretrained(self, out_dir: str | Path, extra: dict | None = None) -> Path:
        """Write ``model.safetensors`` + ``config.json`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_tensors(out / WEIGHTS_FILE, self.state_dict(),
                     metadata={"format": "pt", "type": POLICY_TYPE})
        write_json(out / CONFIG_FILE, {"type": POLICY_TYPE, "policy": self.config.to_dict(),
                                       **(extra or {})})
        from ate_ros.core.steer.policies.text_encoder import cached_embeddings

        texts, vecs = cached_embeddings(self.config.text_encoder, self.config.text_dim)
        if texts:
            save_tensors(out / INSTRUCTIONS_FILE, {"embeddings": torch.from_numpy(vecs)},
                         metadata={"instructions": json.dumps(texts),
                                   "text_encoder": self.config.text_encoder})
        return out

    @property
    def known_instructions(self) -> list[str]:
        """Instructions whose embeddings are loaded (no language-model call needed)."""
        return list(self._text_cache)

    def _load_instruction_embeddings(self, path: Path) -> None:
        from safetensors import safe_open

        from ate_ros.core.steer.policies.text_encoder import prime_cache

        file = path / INSTRUCTIONS_FILE
        if not file.is_file():
            return
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("text_encoder") != self.config.text_encoder:
            return
        texts = json.loads(meta.get("instructions", "[]"))
        vecs = load_tensors(file)["embeddings"]
        prime_cache(self.config.text_encoder, self.config.text_dim, texts, vecs.numpy())
        dev = self.action_shift.device
        for t, v in zip(texts, vecs):
            self._text_cache[t] = v.to(dev)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> VLAPolicy:
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"policy folder not found: {path}")
        meta = read_json(path / CONFIG_FILE)
        if meta.get("type") != POLICY_TYPE or "policy" not in meta:
            raise CheckpointError(f"{path / CONFIG_FILE}: not an ate_ros VLA policy config "
                                  f"(type={meta.get('type')!r})")
        try:
            config = VLAConfig.from_dict(meta["policy"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path / CONFIG_FILE}: {exc}") from exc
        model = cls(config)
        load_state_dict_checked(model, load_tensors(path / WEIGHTS_FILE), str(path / WEIGHTS_FILE))
        model = model.to(device).eval()
        model._load_instruction_embeddings(path)
        return model

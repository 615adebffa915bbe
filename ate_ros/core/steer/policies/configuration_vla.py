"""Configuration of the compact VLA policy (images + instruction + proprioception -> chunk)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ate_ros.core.config_fields import strict_from_dict
from ate_ros.core.normalization import NORM_MODES
from ate_ros.core.steer.schedules import BETA_SCHEDULES, FLOW_CONVENTIONS, PREDICTION_TYPES

HEADS = ("diffusion", "flow")
ACTION_MODES = ("absolute", "relative")
VISION_POOLS = ("avg", "max", "keypoints")
SAMPLERS = ("ddim", "ddpm")
TEXT_ENCODERS = ("minilm", "hash")


@dataclass
class VLAConfig:
    """Architecture and sampling settings; saved as ``config.json`` next to the weights."""

    chunk_size: int = field(default=16, metadata={"help": "H, points per predicted chunk"})
    camera_names: list[str] = field(default_factory=lambda: ["front"], metadata={
        "help": "cameras the policy reads, in this order (empty: no image track; needs "
                "env_state_dim > 0)"})
    env_state_dim: int = field(default=0, metadata={
        "help": "width E of the low-dimensional environment state the policy reads (object "
                "positions, the low_dim track of robomimic / Diffusion Policy); 0: none"})
    env_object_slots: int = field(default=0, metadata={
        "help": "the environment state starts with this many object slots of env_slot_size "
                "values each: one token per object, and one for the object the instruction "
                "names (object_slots.ObjectSlotEncoder); 0: one token from the whole vector"})
    env_slot_size: int = field(default=4, metadata={
        "help": "values per object slot (the simulation: present, dx, dy, dz)"})
    action_mode: str = field(default="absolute", metadata={
        "help": f"one of {ACTION_MODES}: 'relative' predicts each chunk point minus the "
                "joint state at the observation (normalised with statistics of those offsets)"})
    n_action_steps: int = field(default=0, metadata={
        "help": "chunk points to execute before asking for the next chunk (receding horizon: "
                "the executor replans when chunk_size - n_action_steps points are left); 0: "
                "the executor's own replan_steps"})
    image_size: int = field(default=96, metadata={
        "help": "square input size; other sizes are resized"})
    head: str = field(default="diffusion", metadata={"help": f"action head: one of {HEADS}"})
    prediction_type: str = field(default="epsilon", metadata={
        "help": f"diffusion head output: one of {PREDICTION_TYPES}"})
    flow_convention: str = field(default="openpi", metadata={
        "help": "flow time convention: 'openpi' (x_t = t*noise + (1-t)*a) or 'paper' "
                "(a_tau = tau*a + (1-tau)*noise)"})
    num_train_timesteps: int = field(default=100, metadata={"help": "diffusion training steps"})
    beta_schedule: str = field(default="squaredcos_cap_v2", metadata={
        "help": f"diffusion beta schedule: one of {BETA_SCHEDULES}"})
    sampler: str = field(default="ddim", metadata={"help": f"diffusion sampler: {SAMPLERS}"})
    num_inference_steps: int = field(default=10, metadata={
        "help": "denoising / Euler steps per chunk at inference"})
    clip_sample: float = field(default=5.0, metadata={
        "help": "clip predicted normalised x0 to +-this during diffusion sampling (0: off)"})
    d_model: int = field(default=128, metadata={"help": "transformer width"})
    n_heads: int = field(default=4, metadata={"help": "attention heads"})
    n_layers: int = field(default=2, metadata={"help": "action transformer decoder layers"})
    ffn_dim: int = field(default=256, metadata={"help": "feed-forward width"})
    dropout: float = field(default=0.0, metadata={"help": "dropout in the action transformer"})
    vision_channels: list[int] = field(default_factory=lambda: [32, 64, 128], metadata={
        "help": "channels of the stride-2 conv stages of the image encoder"})
    vision_grid: int = field(default=4, metadata={
        "help": "image tokens per camera: grid x grid (avg: pooled cells; keypoints: "
                "grid^2 attention maps)"})
    vision_pool: str = field(default="keypoints", metadata={
        "help": f"image feature pooling: one of {VISION_POOLS}. 'keypoints' keeps where things "
                "are (learned attention maps -> pooled feature + expected x, y per token)"})
    instruction_keypoints: bool = field(default=False, metadata={
        "help": "keypoints only: the instruction shifts each attention map's query, so a map "
                "can look for 'the red block' rather than whatever its filters like; zero-"
                "initialised (starts as the plain encoder; a pre-trained encoder loads as is)"})
    state_dropout: float = field(default=0.0, metadata={
        "help": "training only: probability of hiding the proprioceptive state of a sample, so "
                "the policy must use the image and instruction (smooth demonstrations let the "
                "state alone predict most of a chunk: the copycat problem)"})
    goal_loss_weight: float = field(default=0.0, metadata={
        "help": "training only: weight of an auxiliary loss that predicts, from the observation "
                "tokens, the joint state at the end of the sample's episode (label-free: "
                "demonstrations hold it). Where the episode goes is in the image and the "
                "instruction, not the state, so this teaches those pathways (0: off)"})
    rtc_train_max_delay: int = field(default=0, metadata={
        "help": "training-time real-time chunking, d_max: the first d ~ U(0, d_max) points of "
                "each training chunk are given un-noised (with the clean time embedding) and "
                "left out of the loss; a policy trained with it (> 0) takes a committed prefix "
                "by that conditioning instead of guided sampling (0: off)", "min": 0})
    text_encoder: str = field(default="minilm", metadata={
        "help": "'minilm' (all-MiniLM-L6-v2, offline) or 'hash' (deterministic, for tests)"})
    text_dim: int = field(default=384, metadata={"help": "instruction embedding width"})
    norm_mode: str = field(default="mean_std", metadata={
        "help": f"normalisation of state and actions: one of {NORM_MODES}"})
    ema_decay: float = field(default=0.995, metadata={"help": "EMA decay of the saved weights"})
    embodiment_names: list[str] = field(default_factory=list, metadata={
        "help": "embodiments seen in training (informational)"})

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ValueError(f"VLAConfig: {msg}")

        if self.head not in HEADS:
            bad(f"head must be one of {HEADS}, got {self.head!r}")
        if self.prediction_type not in PREDICTION_TYPES:
            bad(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        if self.flow_convention not in FLOW_CONVENTIONS:
            bad(f"flow_convention must be one of {FLOW_CONVENTIONS}")
        if self.beta_schedule not in BETA_SCHEDULES:
            bad(f"beta_schedule must be one of {BETA_SCHEDULES}")
        if self.sampler not in SAMPLERS:
            bad(f"sampler must be one of {SAMPLERS}")
        if self.vision_pool not in VISION_POOLS:
            bad(f"vision_pool must be one of {VISION_POOLS}, got {self.vision_pool!r}")
        if self.vision_grid < 1:
            bad(f"vision_grid must be >= 1, got {self.vision_grid}")
        if self.text_encoder not in TEXT_ENCODERS:
            bad(f"text_encoder must be one of {TEXT_ENCODERS}")
        if self.norm_mode not in NORM_MODES:
            bad(f"norm_mode must be one of {NORM_MODES}")
        if self.chunk_size < 1:
            bad(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.env_state_dim < 0:
            bad(f"env_state_dim must be >= 0, got {self.env_state_dim}")
        if self.env_object_slots < 0 or self.env_slot_size < 1:
            bad(f"env_object_slots must be >= 0 and env_slot_size >= 1, got "
                f"{self.env_object_slots} and {self.env_slot_size}")
        if self.env_object_slots * self.env_slot_size > self.env_state_dim:
            bad(f"{self.env_object_slots} object slots of {self.env_slot_size} values do not "
                f"fit env_state_dim={self.env_state_dim}")
        if not self.camera_names and self.env_state_dim == 0:
            bad("camera_names must list at least one camera unless env_state_dim > 0")
        if self.action_mode not in ACTION_MODES:
            bad(f"action_mode must be one of {ACTION_MODES}, got {self.action_mode!r}")
        if not 0 <= self.n_action_steps <= self.chunk_size:
            bad(f"n_action_steps ({self.n_action_steps}) must be in [0, chunk_size="
                f"{self.chunk_size}]")
        if len(set(self.camera_names)) != len(self.camera_names):
            bad(f"duplicate camera names {self.camera_names}")
        if self.d_model % self.n_heads:
            bad(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.head == "diffusion" and not 1 <= self.num_inference_steps <= \
                self.num_train_timesteps:
            bad(f"num_inference_steps ({self.num_inference_steps}) must be in "
                f"[1, num_train_timesteps={self.num_train_timesteps}]")
        if self.num_inference_steps < 1:
            bad("num_inference_steps must be >= 1")
        if self.image_size < 2 ** len(self.vision_channels):
            bad(f"image_size ({self.image_size}) too small for {len(self.vision_channels)} "
                "stride-2 stages")
        if self.instruction_keypoints and not self.camera_names:
            bad("instruction_keypoints needs a camera")
        if self.instruction_keypoints and self.vision_pool != "keypoints":
            bad("instruction_keypoints needs vision_pool='keypoints', got "
                f"{self.vision_pool!r}")
        if not self.goal_loss_weight >= 0:
            bad(f"goal_loss_weight must be >= 0, got {self.goal_loss_weight}")
        if not 0 <= self.rtc_train_max_delay < self.chunk_size:
            bad(f"rtc_train_max_delay ({self.rtc_train_max_delay}) must be in [0, chunk_size="
                f"{self.chunk_size})")
        if not 0.0 <= self.state_dropout < 1.0:
            bad(f"state_dropout must be in [0, 1), got {self.state_dropout}")
        if not 0 < self.ema_decay < 1:
            bad(f"ema_decay must be in (0, 1), got {self.ema_decay}")

    @property
    def parameterization(self) -> str:
        """The guidance parameterisation of this head (see ``steer.guidance``)."""
        if self.head == "diffusion":
            return self.prediction_type
        return "flow_openpi" if self.flow_convention == "openpi" else "flow_paper"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VLAConfig:
        if "vision_pool" not in data:  # saved before the field existed: average pooling
            data = {**data, "vision_pool": "avg"}
        return strict_from_dict(cls, data)

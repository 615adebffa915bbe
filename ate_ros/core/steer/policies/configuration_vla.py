"""Configuration of the compact VLA policy (images + instruction + proprioception -> chunk)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ate_ros.core.config_fields import strict_from_dict, validate_fields
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

    chunk_size: int = field(default=16, metadata={"help": "H, points per predicted chunk",
                                                   "flag": "--chunk", "min": 1})
    camera_names: list[str] = field(default_factory=lambda: ["front"], metadata={
        "flag": "--cameras",
        "help": "cameras the policy reads, in this order (empty: no image track; needs "
                "env_state_dim > 0)"})
    env_state_dim: int = field(default=0, metadata={
        "help": "width E of the low-dimensional environment state the policy reads (object "
                "positions, the low_dim track of robomimic / Diffusion Policy); 0: none",
        "min": 0})
    env_object_slots: int = field(default=0, metadata={
        "help": "the environment state starts with this many object slots of env_slot_size "
                "values each: one token per object, and one for the object the instruction "
                "names (object_slots.ObjectSlotEncoder); 0: one token from the whole vector",
        "min": 0})
    env_slot_size: int = field(default=4, metadata={
        "help": "values per object slot (the simulation: present, dx, dy, dz)", "min": 1})
    action_mode: str = field(default="absolute", metadata={
        "choices": ACTION_MODES,
        "help": f"one of {ACTION_MODES}: 'relative' predicts each chunk point minus the "
                "joint state at the observation (normalised with statistics of those offsets)"})
    n_action_steps: int = field(default=0, metadata={
        "help": "chunk points to execute before asking for the next chunk (receding horizon: "
                "the executor replans when chunk_size - n_action_steps points are left); 0: "
                "the executor's own replan_steps", "min": 0})
    image_size: int = field(default=96, metadata={
        "help": "square input size; other sizes are resized", "min": 1})
    head: str = field(default="diffusion", metadata={"help": f"action head: one of {HEADS}",
                                                      "choices": HEADS})
    prediction_type: str = field(default="epsilon", metadata={
        "help": f"diffusion head output: one of {PREDICTION_TYPES}", "flag": "--prediction",
        "choices": PREDICTION_TYPES})
    flow_convention: str = field(default="openpi", metadata={
        "choices": FLOW_CONVENTIONS,
        "help": "flow time convention: 'openpi' (x_t = t*noise + (1-t)*a) or 'paper' "
                "(a_tau = tau*a + (1-tau)*noise)"})
    num_train_timesteps: int = field(default=100, metadata={
        "help": "diffusion training steps", "min": 1})
    beta_schedule: str = field(default="squaredcos_cap_v2", metadata={
        "help": f"diffusion beta schedule: one of {BETA_SCHEDULES}", "choices": BETA_SCHEDULES})
    sampler: str = field(default="ddim", metadata={
        "help": f"diffusion sampler: {SAMPLERS}", "choices": SAMPLERS})
    num_inference_steps: int = field(default=10, metadata={
        "help": "denoising / Euler steps per chunk at inference", "flag": "--inference-steps",
        "min": 1})
    clip_sample: float = field(default=5.0, metadata={
        "help": "clip predicted normalised x0 to +-this during diffusion sampling (0: off)",
        "min": 0.0})
    d_model: int = field(default=128, metadata={"help": "transformer width", "min": 1})
    n_heads: int = field(default=4, metadata={"help": "attention heads", "min": 1})
    n_layers: int = field(default=2, metadata={"help": "action transformer decoder layers",
                                               "flag": "--layers", "min": 1})
    ffn_dim: int = field(default=256, metadata={"help": "feed-forward width", "min": 1})
    dropout: float = field(default=0.0, metadata={
        "help": "dropout in the action transformer",
        "min": 0.0, "max": 1.0, "max_exclusive": True})
    vision_channels: list[int] = field(default_factory=lambda: [32, 64, 128], metadata={
        "help": "channels of the stride-2 conv stages of the image encoder", "min": 1})
    vision_grid: int = field(default=4, metadata={
        "help": "image tokens per camera: grid x grid (avg: pooled cells; keypoints: "
                "grid^2 attention maps)", "min": 1})
    vision_pool: str = field(default="keypoints", metadata={
        "choices": VISION_POOLS,
        "help": f"image feature pooling: one of {VISION_POOLS}. 'keypoints' keeps where things "
                "are (learned attention maps -> pooled feature + expected x, y per token)"})
    instruction_keypoints: bool = field(default=False, metadata={
        "help": "keypoints only: the instruction shifts each attention map's query, so a map "
                "can look for 'the red block' rather than whatever its filters like; zero-"
                "initialised (starts as the plain encoder; a pre-trained encoder loads as is)"})
    state_dropout: float = field(default=0.0, metadata={
        "help": "training only: probability of hiding the proprioceptive state of a sample, so "
                "the policy must use the image and instruction (smooth demonstrations let the "
                "state alone predict most of a chunk: the copycat problem)",
        "min": 0.0, "max": 1.0, "max_exclusive": True})
    goal_loss_weight: float = field(default=0.0, metadata={
        "flag": "--goal-loss",
        "help": "training only: weight of an auxiliary loss that predicts, from the observation "
                "tokens, the joint state at the end of the sample's episode (label-free: "
                "demonstrations hold it). Where the episode goes is in the image and the "
                "instruction, not the state, so this teaches those pathways (0: off)", "min": 0.0})
    rtc_train_max_delay: int = field(default=0, metadata={
        "help": "training-time real-time chunking, d_max: the first d ~ U(0, d_max) points of "
                "each training chunk are given un-noised (with the clean time embedding) and "
                "left out of the loss; a policy trained with it (> 0) takes a committed prefix "
                "by that conditioning instead of guided sampling (0: off)", "min": 0})
    text_encoder: str = field(default="minilm", metadata={
        "help": "'minilm' (all-MiniLM-L6-v2, offline) or 'hash' (deterministic, for tests)",
        "choices": TEXT_ENCODERS})
    text_dim: int = field(default=384, metadata={"help": "instruction embedding width", "min": 1})
    norm_mode: str = field(default="mean_std", metadata={
        "help": f"normalisation of state and actions: one of {NORM_MODES}", "choices": NORM_MODES})
    ema_decay: float = field(default=0.995, metadata={
        "help": "EMA decay of the saved weights",
        "min": 0.0, "min_exclusive": True, "max": 1.0, "max_exclusive": True})
    embodiment_names: list[str] = field(default_factory=list, metadata={
        "help": "embodiments seen in training (informational)"})

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ValueError(f"VLAConfig: {msg}")

        try:
            validate_fields(self)
        except ValueError as exc:
            raise ValueError(f"VLAConfig: {exc}") from None
        if self.env_object_slots * self.env_slot_size > self.env_state_dim:
            bad(f"{self.env_object_slots} object slots of {self.env_slot_size} values do not "
                f"fit env_state_dim={self.env_state_dim}")
        if not self.camera_names and self.env_state_dim == 0:
            bad("camera_names must list at least one camera unless env_state_dim > 0")
        if self.n_action_steps > self.chunk_size:
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
        if self.image_size < 2 ** len(self.vision_channels):
            bad(f"image_size ({self.image_size}) too small for {len(self.vision_channels)} "
                "stride-2 stages")
        if self.instruction_keypoints and not self.camera_names:
            bad("instruction_keypoints needs a camera")
        if self.instruction_keypoints and self.vision_pool != "keypoints":
            bad("instruction_keypoints needs vision_pool='keypoints', got "
                f"{self.vision_pool!r}")
        if self.rtc_train_max_delay >= self.chunk_size:
            bad(f"rtc_train_max_delay ({self.rtc_train_max_delay}) must be in [0, chunk_size="
                f"{self.chunk_size})")

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

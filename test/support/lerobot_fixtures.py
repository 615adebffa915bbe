"""Tiny LeRobot checkpoints for the graph and evaluation tests, built offline from a config.

The DiffusionPolicy is LeRobot's own class with a ResNet-18 from scratch (no pretrained
weights, nothing downloaded) and a two-level U-Net; it is saved untrained with LeRobot's
``save_pretrained`` next to its pre/post-processors, exactly the folder ``lerobot-train``
writes. Its normalisation statistics are the embodiment's joint limits (state and action
min/max), so the post-processor maps the policy's clipped [-1, 1] samples onto the limits.

The SmolVLA (LeRobot's, with its real-time chunking) runs on a SmolVLM backbone made here from a
config: a two-layer Llama text model, a one-layer vision tower and a character-level tokenizer
(built with ``tokenizers``), saved as a local folder that the checkpoint's ``vlm_model_name``
names, so neither the backbone nor the tokenizer comes from the hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ate_ros.core.embodiment import Embodiment
from ate_ros.core.lerobot_compat import require_lerobot

if TYPE_CHECKING:
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

STATE = "observation.state"
ACTION = "action"
IMAGES = "observation.images."


def tiny_diffusion_config(D: int, image: int = 16) -> DiffusionConfig:
    """A DiffusionPolicy small enough for CPU tests (resnet18 from scratch, 2-level U-Net)."""
    require_lerobot()
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

    return DiffusionConfig(
        input_features={"observation.state": PolicyFeature(FeatureType.STATE, (D,)),
                        "observation.images.front": PolicyFeature(FeatureType.VISUAL,
                                                                  (3, image, image))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (D,))},
        horizon=8, n_action_steps=4, n_obs_steps=2, pretrained_backbone_weights=None,
        crop_shape=(14, 14), down_dims=(8, 16), kernel_size=3, n_groups=4,
        diffusion_step_embed_dim=8, spatial_softmax_num_keypoints=4, num_train_timesteps=20,
        num_inference_steps=4, device="cpu")


def tiny_diffusion_checkpoint(out: Path, embodiment: Embodiment, seed: int = 0,
                              n_action_steps: int = 4, horizon: int = 8) -> Path:
    """Write an untrained DiffusionPolicy checkpoint for ``embodiment`` to ``out``."""
    require_lerobot()
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    inputs, outputs = _features(embodiment)
    cfg = DiffusionConfig(
        input_features=inputs, output_features=outputs,
        horizon=horizon, n_action_steps=n_action_steps, n_obs_steps=2,
        pretrained_backbone_weights=None, crop_shape=None, down_dims=(8, 16), kernel_size=3,
        n_groups=4, diffusion_step_embed_dim=8, spatial_softmax_num_keypoints=4,
        num_train_timesteps=20, num_inference_steps=4, device="cpu")
    lo = torch.tensor(embodiment.lower, dtype=torch.float32)
    hi = torch.tensor(embodiment.upper, dtype=torch.float32)
    stats = {STATE: {"min": lo, "max": hi}, ACTION: {"min": lo, "max": hi}}
    for cam in embodiment.cameras:
        stats[IMAGES + cam.name] = {"mean": torch.full((3, 1, 1), 0.5),
                                    "std": torch.full((3, 1, 1), 0.25)}
    torch.manual_seed(seed)
    return _save(Path(out), DiffusionPolicy(cfg), stats)


def _features(embodiment: Embodiment) -> tuple[dict, dict]:
    """(input_features, output_features): the joints as state and action, the cameras."""
    from lerobot.configs.types import FeatureType, PolicyFeature

    D = embodiment.dof
    inputs = {STATE: PolicyFeature(FeatureType.STATE, (D,))}
    for cam in embodiment.cameras:
        inputs[IMAGES + cam.name] = PolicyFeature(FeatureType.VISUAL,
                                                  (3, cam.height, cam.width))
    return inputs, {ACTION: PolicyFeature(FeatureType.ACTION, (D,))}


def _save(out: Path, policy, stats: dict) -> Path:
    """``save_pretrained`` of the policy and its processors into ``out`` (lerobot-train's
    pretrained_model folder)."""
    from lerobot.policies.factory import make_pre_post_processors

    pre, post = make_pre_post_processors(policy.config, dataset_stats=stats)
    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return out


VLM_SPECIALS = ("<pad>", "<unk>", "<|im_start|>", "<end_of_utterance>",
                "<fake_token_around_image>", "<image>", "<global-img>")


def tiny_smolvlm(out: Path, image: int = 32) -> Path:
    """A randomly initialisable SmolVLM backbone folder (config, processor, tokenizer) for
    SmolVLA's ``vlm_model_name``: 2 text layers of width 32, a 1-layer vision tower over
    ``image`` pixels in 8-pixel patches, a character-level vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, SmolVLMConfig, SmolVLMImageProcessor
    from transformers.models.smolvlm.processing_smolvlm import SmolVLMProcessor
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(i) for i in range(10)]
    vocab = {t: i for i, t in enumerate([*VLM_SPECIALS, *chars, " ", "\n"])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")  # one token a character
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
        extra_special_tokens={"fake_image_token": "<fake_token_around_image>",
                              "image_token": "<image>", "global_image_token": "<global-img>",
                              "end_of_utterance_token": "<end_of_utterance>"})
    size = {"longest_edge": image}
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(do_resize=False, do_image_splitting=False,
                                              size=size, max_image_size=size),
        tokenizer=tokenizer, video_processor=SmolVLMVideoProcessor(), image_seq_len=4)
    config = SmolVLMConfig(
        text_config={"model_type": "llama", "vocab_size": len(vocab), "hidden_size": 32,
                     "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "head_dim": 8, "max_position_embeddings": 256},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": image, "patch_size": 8},
        scale_factor=2, image_token_id=vocab["<image>"], vocab_size=len(vocab))
    out = Path(out)
    processor.save_pretrained(out)
    config.save_pretrained(out)
    return out


def tiny_smolvla_checkpoint(out: Path, embodiment: Embodiment, seed: int = 0,
                            chunk_size: int = 12, num_steps: int = 4) -> Path:
    """Write an untrained SmolVLA checkpoint for ``embodiment`` (its cameras, its joints as
    state and action) to ``out``, its backbone folder in ``out/backbone``.

    Normalisation: mean-std with the mid-range as mean and a quarter of the range as std.
    """
    require_lerobot()
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    out = Path(out)
    backbone = tiny_smolvlm(out / "backbone")
    D = embodiment.dof
    inputs, outputs = _features(embodiment)
    cfg = SmolVLAConfig(
        input_features=inputs, output_features=outputs,
        chunk_size=chunk_size, n_action_steps=chunk_size, max_state_dim=max(D, 8),
        max_action_dim=max(D, 8), resize_imgs_with_padding=(32, 32),
        vlm_model_name=str(backbone.resolve()), load_vlm_weights=False, num_vlm_layers=2,
        num_expert_layers=2, self_attn_every_n_layers=2, expert_width_multiplier=0.5,
        num_steps=num_steps, tokenizer_max_length=16, device="cpu")
    lo = torch.tensor(embodiment.lower, dtype=torch.float32)
    hi = torch.tensor(embodiment.upper, dtype=torch.float32)
    norm = {"mean": (lo + hi) / 2, "std": (hi - lo) / 4}
    stats = {STATE: dict(norm), ACTION: dict(norm)}
    torch.manual_seed(seed)
    return _save(out, SmolVLAPolicy(cfg), stats)


def tiny_alignment(out: Path, pretrain: Path, adapt: Path) -> Path:
    """Trains a one-epoch MLP alignment between two toy datasets (chunk size 4, latent 4).

    Args:
        out: Alignment folder to write.
        pretrain: Toy pre-training dataset folder (with its ``embodiment.yaml``).
        adapt: Toy adaptation dataset folder (with its ``embodiment.yaml``).

    Returns:
        The alignment folder.
    """
    from ate_ros.core.align import AlignConfig, StageConfig, train_alignment

    stage = StageConfig(epochs=1, batch_size=16, warmup_steps=1, patience=0)
    return Path(train_alignment(AlignConfig(
        out=str(out), pretrain=[str(pretrain)], embodiment_pre=[str(pretrain / "embodiment.yaml")],
        adapt=str(adapt), embodiment_ada=str(adapt / "embodiment.yaml"), preset="mlp",
        chunk_size=4, vae_overrides={"latent_dim": 4, "mlp_hidden": 32}, stage1=stage,
        stage2=stage, control=False, plots=False, tensorboard=False, progress=False,
        device="cpu")))

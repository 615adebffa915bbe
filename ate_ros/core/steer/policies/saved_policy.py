"""The saved-policy folder: ``model.safetensors`` (weights and normalisation buffers),
``config.json`` (``{"type": POLICY_TYPE, "policy": VLAConfig fields, ...extra}``) and, when
instructions were embedded, ``instruction_embeddings.safetensors`` (so a deployed policy needs no
language-model call for the instructions it was trained on).

The module imports no torch: :func:`read_policy_meta` is what the graph reads before loading a
model (``core.deploy.policy_factory.saved_policy_settings``); the functions that build or fill a
model import torch (and :class:`VLAConfig`, whose schedules need it) when called.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ate_ros.core.config_types import check_types
from ate_ros.core.training.files import (
    CONFIG_FILE,
    CheckpointError,
    SavedConfig,
    load_state_dict_checked,
    load_tensors,
    read_json,
    save_tensors,
    write_json,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ate_ros.core.steer.policies.configuration_vla import VLAConfig

WEIGHTS_FILE = "model.safetensors"
INSTRUCTIONS_FILE = "instruction_embeddings.safetensors"
POLICY_TYPE = "ate_ros.vla"
POLICY_SECTION = "policy"
"""The key of the :class:`VLAConfig` fields in ``config.json``."""


def save_policy_folder(policy: nn.Module, config: VLAConfig, out_dir: str | Path,
                       extra: dict | None = None) -> Path:
    """Write ``policy``'s weights, ``config`` (+ ``extra`` keys) and the cached instruction
    embeddings of its text encoder into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(out / WEIGHTS_FILE, policy.state_dict(),
                 metadata={"format": "pt", "type": POLICY_TYPE})
    write_json(out / CONFIG_FILE, {"type": POLICY_TYPE, POLICY_SECTION: config.to_dict(),
                                   **(extra or {})})
    import torch

    from ate_ros.core.steer.policies.text_encoder import cached_embeddings

    texts, vecs = cached_embeddings(config.text_encoder, config.text_dim)
    if texts:
        save_tensors(out / INSTRUCTIONS_FILE, {"embeddings": torch.from_numpy(vecs)},
                     metadata={"instructions": json.dumps(texts),
                               "text_encoder": config.text_encoder})
    return out


def read_policy_meta(path: str | Path) -> SavedConfig:
    """The checked ``config.json`` of a saved policy folder, without torch: its ``type`` is
    :data:`POLICY_TYPE` and it has a ``policy`` section (:class:`CheckpointError` naming the
    file and the field otherwise)."""
    meta = SavedConfig.read(path, "an ate_ros VLA policy folder", "type", POLICY_TYPE)
    meta.section(POLICY_SECTION)
    return meta


def read_policy_config(path: str | Path) -> VLAConfig:
    """The :class:`VLAConfig` of a saved policy folder (:class:`CheckpointError` naming the file
    and the field if it is not one)."""
    from ate_ros.core.steer.policies.configuration_vla import VLAConfig

    def from_dict(entry: dict) -> VLAConfig:
        check_types(VLAConfig, entry, prefix=f"{POLICY_SECTION}.")
        return VLAConfig.from_dict(entry)

    return read_policy_meta(path).build(POLICY_SECTION, from_dict)


def read_training_record(path: str | Path, slots: int) -> dict:
    """The ``training`` section of a saved policy's config.json (``{}`` when absent), with its
    ``stats_slots`` checked: a list of slot indices below ``slots``."""
    file = Path(path) / CONFIG_FILE
    record = read_json(file).get("training", {})
    if not isinstance(record, dict):
        raise CheckpointError(f"{file}: 'training' must be an object, got "
                              f"{type(record).__name__}")
    used = record.get("stats_slots", [])
    if not isinstance(used, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < slots for i in used):
        raise CheckpointError(f"{file}: training.stats_slots must be a list of slot indices "
                              f"in [0, {slots}), got {used!r}")
    return record


def build_from_config(build, config: VLAConfig, path: str | Path):
    """``build(config)``, with a config whose values pass their types but build no model (a
    negative width, a head count that does not divide the model size) reported against the
    folder's config.json instead of as a torch error."""
    try:
        return build(config)
    except (ValueError, TypeError, RuntimeError, ZeroDivisionError, IndexError,
            OverflowError) as exc:
        raise CheckpointError(f"{Path(path) / CONFIG_FILE}: the policy settings build no "
                              f"model ({type(exc).__name__}: {exc})") from exc


def load_policy_weights(policy: nn.Module, path: str | Path) -> None:
    """Load the folder's ``model.safetensors`` into ``policy`` (strict, errors name the keys)."""
    file = Path(path) / WEIGHTS_FILE
    load_state_dict_checked(policy, load_tensors(file), str(file))


def read_instruction_embeddings(path: str | Path, config: VLAConfig) -> dict[str, torch.Tensor]:
    """Instruction -> (text_dim,) embedding saved in the folder, for ``config``'s text encoder
    (empty when there are none or another encoder made them); primes the encoder's cache."""
    from safetensors import safe_open

    from ate_ros.core.steer.policies.text_encoder import prime_cache

    file = Path(path) / INSTRUCTIONS_FILE
    if not file.is_file():
        return {}
    with safe_open(str(file), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("text_encoder") != config.text_encoder:
        return {}
    texts = json.loads(meta.get("instructions", "[]"))
    vecs = load_tensors(file)["embeddings"]
    prime_cache(config.text_encoder, config.text_dim, texts, vecs.numpy())
    return dict(zip(texts, vecs))

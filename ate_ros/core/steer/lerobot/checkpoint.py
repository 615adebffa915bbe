"""Reading a LeRobot checkpoint folder (``save_pretrained`` of a policy and its processors)
with LeRobot's own classes, with the project's errors.

LeRobot's parsers raise whatever the broken part gives them: draccus' ``DecodingError`` for a
field of the wrong type, ``KeyError`` / ``IndexError`` for a missing one, torch's
``RuntimeError`` for a weight of another shape.
:func:`~ate_ros.core.lerobot_compat.lerobot_errors` turns each into a
:class:`~ate_ros.core.training.files.CheckpointError` that names the file LeRobot was reading
and keeps LeRobot's own words on one line (draccus names the field: "`down_dims`: Couldn't
parse ..."). Weights missing from ``model.safetensors`` and normaliser statistics missing from
the processor files, which LeRobot would accept without a word, are refused too. Used by the
run-time policy (:mod:`.chunk_policy`) and the fine-tuning (:mod:`.finetune`), so every
command that takes ``lerobot:<dir>`` reports a broken checkpoint the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ate_ros.core.lerobot_compat import lerobot_errors, require_lerobot
from ate_ros.core.training.files import CheckpointError

__all__ = ["CHECKPOINT_FILES", "CONFIG_FILE", "LoadedCheckpoint", "load_lerobot_checkpoint"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FILES = (CONFIG_FILE, WEIGHTS_FILE)
PROCESSOR_FILES = "policy_preprocessor*.json / policy_postprocessor*.json (and their "\
                  ".safetensors)"


def _checked_config(path: Path) -> dict[str, Any]:
    """``config.json`` parsed and of the shape LeRobot dispatches on (an object whose ``type``
    names a policy), before draccus reads it."""
    file = path / CONFIG_FILE
    try:
        doc = json.loads(file.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{file}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise CheckpointError(f"{file}: must hold a JSON object (a LeRobot policy config), "
                              f"not {type(doc).__name__}")
    if not isinstance(doc.get("type"), str) or not doc["type"]:
        raise CheckpointError(f"{file}: field 'type' must name the LeRobot policy "
                              f"(diffusion, smolvla, ...), got {doc.get('type')!r}")
    return doc


def _check_weights_complete(policy: Any, file: Path) -> None:
    """Every weight of ``policy`` is in ``file``: LeRobot loads non-strictly, so a tensor
    missing from the file would silently stay at its random initial value. A weight that shares
    its storage with one the file holds (tied weights, saved once) counts as present."""
    from safetensors import safe_open

    with lerobot_errors(file, "cannot list its tensors", CheckpointError):
        with safe_open(str(file), framework="pt") as f:
            saved = set(f.keys())
    state = policy.state_dict()
    present = {t.data_ptr() for k, t in state.items() if k in saved}
    missing = sorted(k for k, t in state.items() if k not in saved and t.data_ptr() not in present)
    if missing:
        raise CheckpointError(f"{file}: {len(missing)} weight(s) of the {policy.config.type} "
                              f"policy are missing (first: {missing[:3]}); the file does not "
                              "belong to this config.json")


class LoadedCheckpoint:
    """A LeRobot checkpoint's config, policy (on ``device``) and processor pipelines."""

    def __init__(self, config: Any, policy: Any, preprocessor: Any, postprocessor: Any) -> None:
        self.config = config
        self.policy = policy
        self.preprocessor = preprocessor
        self.postprocessor = postprocessor


def load_lerobot_checkpoint(path: str | Path, device: str = "cpu") -> LoadedCheckpoint:
    """Load the checkpoint folder ``path`` as LeRobot's ``lerobot-train`` / ``save_pretrained``
    writes it.

    Raises:
        FileNotFoundError: the folder or one of :data:`CHECKPOINT_FILES` is missing.
        CheckpointError: a file of it that LeRobot cannot read, naming the file (and, in
            LeRobot's words, the field).
    """
    import torch

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"LeRobot checkpoint folder not found: {path}")
    missing = [f for f in CHECKPOINT_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a LeRobot checkpoint: no {missing} (the "
                                "folder `save_pretrained` / lerobot-train's "
                                "checkpoints/<step>/pretrained_model writes)")
    _checked_config(path)
    require_lerobot()
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    device_type = torch.device(device).type
    with lerobot_errors(path / CONFIG_FILE, "LeRobot cannot read this policy config",
                        CheckpointError):
        cfg = PreTrainedConfig.from_pretrained(str(path))
        cfg.device = device_type
        policy_class = get_policy_class(cfg.type)
    with lerobot_errors(path / WEIGHTS_FILE, f"LeRobot cannot build the {cfg.type} policy from "
                        f"{CONFIG_FILE} and these weights", CheckpointError):
        policy = policy_class.from_pretrained(str(path), config=cfg)
        policy.to(device)
    _check_weights_complete(policy, path / WEIGHTS_FILE)
    with lerobot_errors(path, f"LeRobot cannot load the processors ({PROCESSOR_FILES})",
                        CheckpointError):
        pre, post = make_pre_post_processors(
            cfg, pretrained_path=str(path),
            preprocessor_overrides={"device_processor": {"device": device_type}})
    for pipeline in (pre, post):
        _check_normalizer_stats(pipeline, path)
    return LoadedCheckpoint(cfg, policy, pre, post)


NEEDED_STATS = {"MEAN_STD": ("mean", "std"), "MIN_MAX": ("min", "max"),
                "QUANTILES": ("q01", "q99"), "QUANTILE10": ("q10", "q90")}
"""The statistics each of LeRobot's normalisation modes reads."""


def _check_normalizer_stats(pipeline: Any, path: Path) -> None:
    """Every feature a (un)normaliser step of ``pipeline`` normalises has the statistics its
    mode needs. LeRobot passes a feature without statistics through unchanged (and fails on
    the first frame when only some are there), so a stats file that lost a tensor would run a
    policy on raw values without a word."""
    for index, step in enumerate(getattr(pipeline, "steps", ())):
        features, norm_map = getattr(step, "features", None), getattr(step, "norm_map", None)
        stats = getattr(step, "_tensor_stats", None)
        if not isinstance(features, dict) or not isinstance(norm_map, dict) or stats is None:
            continue
        for key, feature in features.items():
            mode = norm_map.get(getattr(feature, "type", None))
            mode = getattr(mode, "value", mode)
            if mode in (None, "IDENTITY"):
                continue
            missing = [s for s in NEEDED_STATS.get(mode, ()) if s not in stats.get(key, {})]
            if key not in stats or missing:
                name = getattr(pipeline, "name", "processor")
                raise CheckpointError(
                    f"{path}: {name} step {index} ({type(step).__name__}) normalises {key!r} "
                    f"with {mode} but its saved statistics lack {missing or 'all of them'} "
                    f"({name}_step_{index}_*.safetensors)")

"""The one policy factory of ``policy_node``, ``ate-ros run`` and ``ate-ros eval``.

A policy argument (``policy:=...``, ``--policy ...``) names one of:

- a built-in (``hold``, ``wave``: :mod:`ate_ros.core.deploy.builtin_policies`);
- ``lerobot:<dir>``, a LeRobot checkpoint folder
  (:class:`~ate_ros.core.steer.lerobot.chunk_policy.LeRobotChunkPolicy`: its own processors,
  pre and post, actions mapped onto the embodiment's joints);
- anything else: a folder of our own policy (``ate-ros pretrain`` / ``steer``;
  :class:`~ate_ros.core.steer.policies.VLAPolicy`).

Every one satisfies :class:`~ate_ros.core.policy_contract.ChunkPolicy`. Torch and LeRobot are
imported only when a model is loaded. :func:`saved_policy_settings` reads what the graph needs
to know before loading weights (chunk length, receding horizon, environment-state width).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ate_ros.core.embodiment import Embodiment
from ate_ros.core.lerobot_compat import is_lerobot_spec, lerobot_path
from ate_ros.core.policy_contract import ChunkPolicy, PolicyFeatureError

KIND_BUILTIN, KIND_ATE, KIND_LEROBOT = "builtin", "ate", "lerobot"
LEROBOT_ENV_STATE = "observation.environment_state"


def policy_kind(spec: str) -> str:
    """``builtin``, ``lerobot`` or ``ate`` (our policy folder) for a policy argument."""
    from ate_ros.core.deploy.builtin_policies import BUILTIN_POLICIES

    if str(spec) in BUILTIN_POLICIES:
        return KIND_BUILTIN
    return KIND_LEROBOT if is_lerobot_spec(spec) else KIND_ATE


def load_run_policy(spec: str, embodiment: Embodiment, device: str = "cpu",
                    num_steps: int | None = None) -> ChunkPolicy:
    """Load the policy a policy argument names, for ``embodiment``.

    Args:
        spec: A built-in name, ``lerobot:<dir>`` or our policy folder.
        embodiment: The robot it runs on (maps a LeRobot policy's action vector onto joints,
            and is what the built-ins move).
        device: Torch device of the model.
        num_steps: The denoising / integration steps the caller will ask for (None: the
            policy's default); checked here, so a policy that cannot honour it fails at load
            time with a message naming the feature instead of at its first chunk.

    Raises:
        FileNotFoundError: a LeRobot checkpoint folder or file is missing.
        PolicyFeatureError: ``num_steps`` for a policy without a step count.
        ValueError: the checkpoint does not fit the embodiment (action width, cameras).
        ate_ros.core.training.CheckpointError: our policy folder is missing or broken.
    """
    kind = policy_kind(spec)
    if kind == KIND_BUILTIN:
        from ate_ros.core.deploy.builtin_policies import builtin_policy

        return builtin_policy(str(spec), embodiment)
    if kind == KIND_LEROBOT:
        from ate_ros.core.steer.lerobot.chunk_policy import LeRobotChunkPolicy

        policy = LeRobotChunkPolicy.from_pretrained(lerobot_path(spec), embodiment,
                                                    device=device)
    else:
        from ate_ros.core.steer.policies import load_policy  # torch: only when a model is used

        policy = load_policy(spec, device=device)
    if num_steps and not getattr(policy, "supports_num_steps", True):
        raise PolicyFeatureError(f"num_steps={num_steps}: policy {spec!r} "
                                 f"({getattr(policy, 'model_id', type(policy).__name__)}) has "
                                 "no denoising / integration step count to override")
    return policy


@dataclass(frozen=True)
class PolicySettings:
    """What a saved policy tells the graph before its weights are loaded (0: unknown/none).

    Attributes:
        kind: ``builtin``, ``ate`` or ``lerobot``.
        chunk_size: Points per chunk the policy emits.
        n_action_steps: Points of each chunk executed before the next one is asked for
            (0: the executor's ``replan_steps`` decide).
        env_state_dim: Width of the environment state it reads (0: none).
    """

    kind: str
    chunk_size: int = 0
    n_action_steps: int = 0
    env_state_dim: int = 0

    @property
    def replan_steps(self) -> int | None:
        """The executor's ``replan_steps`` for this policy's receding horizon (None: default)."""
        from ate_ros.core.execution.config import receding_horizon_replan_steps

        if self.chunk_size <= 0:
            return None
        return receding_horizon_replan_steps(self.chunk_size, self.n_action_steps)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def saved_policy_settings(spec: str) -> PolicySettings:
    """:class:`PolicySettings` from a policy folder's ``config.json`` (no weights loaded).

    Our folders are read by :func:`~ate_ros.core.steer.policies.saved_policy.read_policy_meta`
    (without torch; a malformed ``config.json`` raises
    :class:`~ate_ros.core.training.files.CheckpointError` naming the file and the field; no
    folder gives zeros: ``expert`` is no folder, and the loader reports a missing one). A
    LeRobot chunk is ``n_action_steps`` long and executed whole (``select_action``'s
    behaviour), and ``observation.environment_state`` in its ``input_features`` is the
    environment state; an unreadable LeRobot config gives zeros (its loader reports it).
    """
    kind = policy_kind(spec)
    if kind == KIND_BUILTIN:
        return PolicySettings(kind)
    if kind == KIND_ATE:
        if not str(spec) or not Path(spec).is_dir():
            return PolicySettings(kind)
        from ate_ros.core.steer.policies.saved_policy import POLICY_SECTION, read_policy_meta

        meta = read_policy_meta(spec)
        return PolicySettings(kind, **{name: meta.integer(POLICY_SECTION, name) for name in (
            "chunk_size", "n_action_steps", "env_state_dim")})
    cfg = _read_json(lerobot_path(spec) / "config.json")
    steps = int(cfg.get("n_action_steps") or cfg.get("chunk_size") or 0)
    env = (cfg.get("input_features") or {}).get(LEROBOT_ENV_STATE) or {}
    return PolicySettings(kind, chunk_size=steps, n_action_steps=steps,
                          env_state_dim=int((env.get("shape") or [0])[0]))


__all__ = ["KIND_ATE", "KIND_BUILTIN", "KIND_LEROBOT", "PolicyFeatureError", "PolicySettings",
           "load_run_policy", "policy_kind", "saved_policy_settings"]

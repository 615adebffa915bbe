"""Episodes -> policy training samples (observation at t, action chunk action[t : t + H]).

Datasets are small, so every episode is preloaded into memory as concatenated frame arrays and a
batch is gathered with fancy indexing (no per-sample Python). Chunks that run past an episode's
end repeat its last action (the robot holds its final position), so no window is dropped.
All joint values are mapped into the 128-slot unified space with the episode's embodiment.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ate_ros.core.data.chunks import select_key
from ate_ros.core.data.episode_format import (
    EMBODIMENT_FILE,
    KEY_AUTO,
    EpisodeFormatError,
    read_episode,
    split_episode_paths,
)
from ate_ros.core.embodiment import Embodiment, load_embodiment
from ate_ros.core.normalization import NormStats

logger = logging.getLogger(__name__)

# Keys match the policy's batch keys (ate_ros.core.steer.policies.modeling_vla).
OBS_IMAGES = "observation.images"
OBS_STATE = "observation.state"
OBS_MASK = "observation.mask"
OBS_TEXT = "observation.text_embedding"
OBS_ENV_STATE = "observation.environment_state"
ACTION = "action"
EPISODE_GOAL = "episode.final_state"
"""(B, D) the joint state at the end of the sample's episode: where the demonstration went (the
target of the policy's auxiliary goal loss, never an input)."""


class PolicyDatasetError(ValueError):
    """The data cannot be turned into policy samples (message says why and where)."""


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, h, w, 3) uint8 -> (T, size, size, 3) uint8 (bilinear)."""
    if frames.shape[1:3] == (size, size):
        return frames
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                        align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def resolve_embodiments(data_dirs: Sequence[str | Path],
                        embodiments: Sequence[str | Path | Embodiment] | None
                        ) -> list[Embodiment]:
    """One embodiment per dataset: given explicitly (one for all, or one each), else the
    dataset's ``embodiment.yaml``."""
    if embodiments:
        embs = [load_embodiment(e) for e in embodiments]
        if len(embs) == 1:
            return embs * len(data_dirs)
        if len(embs) != len(data_dirs):
            raise PolicyDatasetError(f"{len(embs)} embodiments for {len(data_dirs)} datasets; "
                                     "give one, or one per dataset in the same order")
        return embs
    out = []
    for d in data_dirs:
        f = Path(d) / EMBODIMENT_FILE
        if not f.is_file():
            raise PolicyDatasetError(f"{d}: no {EMBODIMENT_FILE}; pass --embodiments")
        out.append(load_embodiment(f))
    return out


@dataclass
class _Episode:
    start: int
    length: int


class PolicyDataset(torch.utils.data.Dataset):
    """All (episode, t) samples of one split of one or more datasets, in memory.

    Args:
        data_dirs: dataset folders (episode format).
        split: ``"train"`` or ``"val"``.
        chunk_size: H.
        camera_names: cameras to load, in the policy's order; each episode must have them.
        image_size: frames are resized to image_size x image_size once at load time.
        embodiments: see :func:`resolve_embodiments`.
        text_embedder: ``list[str] -> (N, E)`` instruction embeddings (called once per unique
            instruction); required, the policy's encoder passed in by the caller.
        max_episodes: Use at most this many episodes per dataset.
        env_state_dim: Load each episode's ``environment_state`` (must have this width); 0
            loads none. With no ``camera_names`` no images are loaded either (low-dim track).
        key: The action target, decided per dataset as align decides what it chunks
            (:func:`ate_ros.core.data.chunks.select_key`): ``action``, or with ``qpos`` the next
            measured pose.
    """

    def __init__(self, data_dirs: Sequence[str | Path], split: str, chunk_size: int,
                 camera_names: Sequence[str], image_size: int,
                 embodiments: Sequence[str | Path | Embodiment] | None = None,
                 text_embedder=None, max_episodes: int | None = None,
                 env_state_dim: int = 0, key: str = KEY_AUTO) -> None:
        if not data_dirs:
            raise PolicyDatasetError("no datasets given")
        if text_embedder is None:
            # The policy's text encoder lives in core.steer; data does not import it.
            raise TypeError("PolicyDataset needs a text_embedder (the policy's instruction "
                            "encoder, e.g. steer.policies.text_encoder.embed_instructions)")
        self.chunk_size = int(chunk_size)
        self.camera_names = list(camera_names)
        self.embodiments = resolve_embodiments(data_dirs, embodiments)
        self.env_state_dim = int(env_state_dim)
        images, qpos, actions, masks, instr_idx, episodes = [], [], [], [], [], []
        env_states: list[np.ndarray] = []
        instructions: list[str] = []
        n = 0
        for data_dir, emb in zip(data_dirs, self.embodiments):
            try:
                paths = split_episode_paths(data_dir, split)
            except EpisodeFormatError as exc:
                raise PolicyDatasetError(str(exc)) from exc
            paths = paths[:max_episodes]
            eps = [read_episode(path, load_images=bool(self.camera_names),
                                cameras=self.camera_names) for path in paths]
            try:  # the rule align follows (--key), with its messages
                used = select_key(paths, [ep.action is not None for ep in eps], key)
            except ValueError as exc:
                raise PolicyDatasetError(str(exc)) from exc
            for path, ep in zip(paths, eps):
                self._check(ep, emb, path)
                if self.env_state_dim:
                    if ep.env_state is None:
                        raise PolicyDatasetError(
                            f"{path}: no environment_state (the policy reads object "
                            "positions; record with a simulator or perception that logs them)")
                    if ep.env_state.shape[1] != self.env_state_dim:
                        raise PolicyDatasetError(
                            f"{path}: environment_state has {ep.env_state.shape[1]} values, "
                            f"the policy reads {self.env_state_dim}")
                    env_states.append(ep.env_state.astype(np.float32))
                T = len(ep)
                act = ep.action if used == ACTION else np.concatenate(
                    [ep.qpos[1:], ep.qpos[-1:]])  # --key qpos: the next measured pose
                missing = [c for c in self.camera_names if c not in ep.images]
                if missing:
                    raise PolicyDatasetError(f"{path}: no images/{missing[0]} (the policy reads "
                                             f"cameras {self.camera_names})")
                if self.camera_names:
                    images.append(np.stack([_resize(ep.images[c], image_size)
                                            for c in self.camera_names], 1))  # (T, C, S, S, 3)
                qpos.append(emb.to_unified(ep.qpos.astype(np.float32)))
                actions.append(emb.to_unified(act.astype(np.float32)))
                masks.append(np.repeat(emb.mask[None], T, 0))
                if ep.instruction not in instructions:
                    instructions.append(ep.instruction)
                instr_idx.append(np.full(T, instructions.index(ep.instruction), np.int64))
                episodes.append(_Episode(n, T))
                n += T
        if n == 0:
            raise PolicyDatasetError(
                f"no frames in split {split!r} of {list(map(str, data_dirs))}")
        self.images = np.concatenate(images) if images else None
        self.env_state = np.concatenate(env_states) if env_states else None
        self.qpos = np.concatenate(qpos)
        self.actions = np.concatenate(actions)
        self.masks = np.concatenate(masks)
        self.instruction_index = np.concatenate(instr_idx)
        self.instructions = instructions
        self.episodes = episodes
        # Last frame index of each frame's episode, for clamping chunk windows.
        self.episode_end = np.concatenate([np.full(e.length, e.start + e.length - 1)
                                           for e in episodes])
        self.text = np.asarray(text_embedder(instructions), dtype=np.float32)
        logger.info("%s: %d episodes, %d frames, %d instructions, embodiments %s", split,
                    len(episodes), n, len(instructions),
                    sorted({e.name for e in self.embodiments}))

    @staticmethod
    def _check(ep, emb: Embodiment, path) -> None:
        if ep.embodiment and ep.embodiment != emb.name:
            raise PolicyDatasetError(f"{path}: recorded with embodiment {ep.embodiment!r}, "
                                     f"but {emb.name!r} was given")
        if ep.qpos.shape[1] != emb.dof:
            raise PolicyDatasetError(f"{path}: {ep.qpos.shape[1]} joints, embodiment "
                                     f"{emb.name!r} has {emb.dof}")
        if ep.slots is not None and not np.array_equal(ep.slots, emb.slots):
            raise PolicyDatasetError(f"{path}: slots {ep.slots.tolist()} differ from embodiment "
                                     f"{emb.name!r} slots {emb.slots.tolist()}")
        if ep.joint_names and list(ep.joint_names) != emb.joint_names:
            raise PolicyDatasetError(f"{path}: joint names {ep.joint_names} differ from "
                                     f"embodiment {emb.name!r} {emb.joint_names}")

    def __len__(self) -> int:
        return int(self.qpos.shape[0])

    @property
    def mask_union(self) -> np.ndarray:
        return self.masks.any(0)

    def chunk_indices(self, idx: np.ndarray) -> np.ndarray:
        """(N,) frame indices -> (N, H) frame indices of their action chunks."""
        win = idx[:, None] + np.arange(self.chunk_size)[None]
        return np.minimum(win, self.episode_end[idx][:, None])

    def get_batch(self, idx) -> dict[str, torch.Tensor]:
        idx = np.asarray(idx, dtype=np.int64)
        batch = {OBS_STATE: torch.from_numpy(self.qpos[idx]),
                 OBS_MASK: torch.from_numpy(self.masks[idx]),
                 OBS_TEXT: torch.from_numpy(self.text[self.instruction_index[idx]]),
                 ACTION: torch.from_numpy(self.actions[self.chunk_indices(idx)]),
                 EPISODE_GOAL: torch.from_numpy(self.qpos[self.episode_end[idx]])}
        if self.images is not None:
            batch[OBS_IMAGES] = torch.from_numpy(self.images[idx])
        if self.env_state is not None:
            batch[OBS_ENV_STATE] = torch.from_numpy(self.env_state[idx])
        return batch

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.get_batch([i]).items()}

    def fit_stats(self, mode: str = "mean_std", relative: bool = False,
                  max_frames: int = 4096, seed: int = 0) -> tuple[NormStats, NormStats]:
        """(state, action) statistics over the used slots of all embodiments.

        ``relative``: action statistics of chunk points minus the joint state at the chunk's
        observation (what a relative-action policy predicts), over every chunk point of up to
        ``max_frames`` evenly drawn frames (all chunks would be N x H x D floats).
        """
        used = self.mask_union
        state = NormStats.fit(self.qpos, mode, used=used)
        if not relative:
            return state, NormStats.fit(self.actions, mode, used=used)
        idx = np.arange(len(self))
        if len(idx) > max_frames:
            idx = np.sort(np.random.default_rng(seed).choice(idx, max_frames, replace=False))
        offsets = self.actions[self.chunk_indices(idx)] - (self.qpos[idx] *
                                                          self.masks[idx])[:, None]
        return state, NormStats.fit(offsets, mode, used=used)

    def fit_env_stats(self, mode: str = "mean_std") -> NormStats:
        """Statistics of the environment state (datasets loaded with ``env_state_dim``)."""
        if self.env_state is None:
            raise PolicyDatasetError("no environment state loaded (env_state_dim=0)")
        return NormStats.fit(self.env_state, mode)


def batch_iterator(dataset: PolicyDataset, batch_size: int, seed: int, rank: int = 0,
                   world_size: int = 1):
    """Endless shuffled batches of frame indices; DDP ranks take disjoint slices of each epoch."""
    rng = np.random.default_rng(seed)
    n = len(dataset)
    if n == 0:
        raise PolicyDatasetError("empty dataset")
    while True:
        perm = rng.permutation(n)[rank::world_size]
        if len(perm) < batch_size:  # tiny datasets: sample with replacement
            yield rng.choice(n, size=batch_size, replace=True)
            continue
        for i in range(0, len(perm) - batch_size + 1, batch_size):
            yield perm[i:i + batch_size]



def write_toy_dataset(root: str | Path, embodiment: Embodiment, episodes: int = 4,
                      length: int = 30, image_size: int = 32, cameras: Sequence[str] = ("front",),
                      instruction: str = "reach the target", seed: int = 0,
                      val_episodes: int = 1) -> Path:
    """Write a tiny random-but-smooth dataset (tests, benchmarks): sinusoidal joint paths inside
    the limits, whose phase is drawn per episode and shown in the images (a bright column whose
    position encodes the phase), so a policy can learn it."""
    from ate_ros.core.data.episode_format import Episode, write_episode

    root = Path(root)
    rng = np.random.default_rng(seed)
    lo, hi = embodiment.lower, embodiment.upper
    mid, amp = (lo + hi) / 2, (hi - lo) / 4
    t = np.arange(length) / embodiment.control_rate_hz
    for i in range(episodes + val_episodes):
        split = "train" if i < episodes else "val"
        phase = rng.uniform(0, 2 * np.pi)
        freq = 0.5 + 0.1 * np.arange(embodiment.dof)
        q = mid + amp * np.sin(2 * np.pi * freq[None] * t[:, None] * 0.2 + phase)
        action = np.concatenate([q[1:], q[-1:]])
        images = {}
        for c in cameras:
            img = np.full((length, image_size, image_size, 3), 40, np.uint8)
            col = int((phase / (2 * np.pi)) * (image_size - 1))
            img[:, :, col, 0] = 255
            rows = ((q[:, 0] - lo[0]) / (hi[0] - lo[0]) * (image_size - 1)).astype(int)
            img[np.arange(length), rows, :, 1] = 255
            images[c] = img
        ep = Episode(qpos=q.astype(np.float32), action=action.astype(np.float32),
                     timestamps=t.astype(np.float64), images=images, instruction=instruction,
                     task="toy", embodiment=embodiment.name, joint_names=embodiment.joint_names,
                     slots=embodiment.slots, rate_hz=embodiment.control_rate_hz, success=True)
        write_episode(root / split / f"episode_{i:04d}.hdf5", ep)
    embodiment.to_yaml(root / "embodiment.yaml")
    return root

"""Scripted-expert demonstrations: as rosbags (like a real robot) or straight into a dataset.

:func:`rollout_expert` runs one episode and keeps everything a robot would log: measured joint
states at ``state_rate_hz`` (faster than control, like ``/joint_states``), one camera frame and one
command per control tick, and the instruction. :func:`write_rollout_bag` writes that as a rosbag2
(MCAP or sqlite3) on the project's default topics, so ``ate-ros bag2dataset`` converts simulated
and real data the same way. :func:`record_dataset` skips the bag and writes episode files directly
(fast path for tests and benchmarks).

Episode timing follows the project convention: at control tick ``t`` the measurement ``qpos[t]``
and the image are taken, then ``action[t]`` is commanded and reached one period later.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ate_ros.core.embodiment import Embodiment, load_embodiment
from ate_ros.core.sim.env import SimEnv
from ate_ros.core.sim.experts import ExpertConfig, ScriptedExpert
from ate_ros.core.sim.object_labels import ENV_STATE_NAMES

logger = logging.getLogger(__name__)

BAG_EPOCH_NS = 1_700_000_000 * 1_000_000_000
"""Wall-clock stamp (ns) of simulated time 0 in bags: a fixed epoch keeps bags reproducible."""


def episode_seed(seed: int, index: int, stream: int = 0) -> int:
    """A well-mixed 32-bit seed for episode ``index`` of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(index), int(stream)]).generate_state(1)[0])


@dataclass
class ExpertRollout:
    """One expert episode.

    Attributes:
        seed: Episode seed (initial state).
        instruction: The task instruction.
        success: Whether the task succeeded.
        times: (T,) control-tick times (s).
        qpos: (T, D) measured joints at each tick.
        action: (T, D) target commanded at each tick.
        images: Camera -> (T, H, W, 3) uint8 (empty if not rendered).
        state_times: (N,) times of the fast joint-state samples.
        state_qpos: (N, D) joint positions at those times.
        state_qvel: (N, D) joint velocities at those times.
        env_state: (T, E) environment state (object positions, fingertip) at each tick.
    """

    seed: int
    instruction: str
    success: bool
    times: np.ndarray
    qpos: np.ndarray
    action: np.ndarray
    images: dict[str, np.ndarray] = field(default_factory=dict)
    state_times: np.ndarray = field(default_factory=lambda: np.empty(0))
    state_qpos: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    state_qvel: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    env_state: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.times.shape[0])


def rollout_expert(env: SimEnv, expert: ScriptedExpert, seed: int, render: bool = True,
                   state_rate_hz: float | None = None, hold_steps: int = 6) -> ExpertRollout:
    """Run the expert for one episode of ``env`` seeded with ``seed``.

    Args:
        env: The environment (its task and embodiment).
        expert: Expert bound to ``env``.
        seed: Episode seed.
        render: Record camera images at every control tick.
        state_rate_hz: Rate of the fast joint-state samples (a multiple of the control rate);
            ``None`` records none (direct-to-dataset path).
        hold_steps: Control ticks recorded after success (the expert holds still), so
            demonstrations show how to stop at the goal.

    Returns:
        The rollout.
    """
    obs = env.reset(seed=seed, render=render)
    expert.reset(obs.qpos, env.task_state())
    period = env.control_period
    sub = 1
    if state_rate_hz is not None:
        sub = max(1, int(round(state_rate_hz / env.control_rate_hz)))
    times, qs, acts, frames = [], [], [], {c: [] for c in env.camera_names} if render else {}
    st, sq, sv, es = [], [], [], []
    after = 0
    success = False
    while True:
        q = env.qpos()
        a = expert.act(q, env.task_state())
        times.append(env.time)
        qs.append(q)
        acts.append(a)
        es.append(env.environment_state())
        for c in frames:
            frames[c].append(env.render(c))
        env.set_targets(a)
        for _ in range(sub):
            if state_rate_hz is not None:
                st.append(env.time)
                sq.append(env.qpos())
                sv.append(env.qvel())
            env.advance(period / sub)
        success = success or env.success()
        if success:
            after += 1
            if after > hold_steps:
                break
        elif env.failed() or env.time >= env.task.time_limit - 1e-9:
            break
    d = env.dof
    return ExpertRollout(
        seed=int(seed), instruction=env.instruction, success=bool(success),
        times=np.asarray(times), qpos=np.asarray(qs), action=np.asarray(acts),
        images={c: np.stack(v) for c, v in frames.items()},
        state_times=np.asarray(st), state_qpos=np.asarray(sq).reshape(-1, d),
        state_qvel=np.asarray(sv).reshape(-1, d), env_state=np.asarray(es, np.float32))


def write_rollout_bag(path: str | Path, rollout: ExpertRollout, emb: Embodiment, task: str,
                      storage: str = "mcap", joint_noise: float = 0.0005,
                      rng: np.random.Generator | None = None) -> Path:
    """Write ``rollout`` as one rosbag on the default topics (see ``core/data/topics.py``).

    Topics: ``/joint_states`` (fast samples plus Gaussian sensor noise ``joint_noise`` rad),
    ``/<camera>/image_raw`` (one frame per tick), ``/arm_controller/joint_trajectory`` (one
    single-point trajectory per tick: the expert's target, ``time_from_start`` = one period),
    ``/environment_state`` (``ate_ros/EnvironmentState``, one per tick, stamped like the tick's
    image, when the rollout has one), ``/instruction`` (once, at the start). Bag metadata:
    instruction, task, embodiment, success, seed, control rate.
    """
    from ate_ros.core.data import topics as T
    from ate_ros.core.data.bag_writer import BagRecorder

    rng = rng or np.random.default_rng(rollout.seed)
    names = emb.joint_names
    period = 1.0 / emb.control_rate_hz

    def ns(t: float) -> int:
        return BAG_EPOCH_NS + int(round(t * 1e9))

    # Merge the streams in time order (writers and readers expect non-decreasing log times).
    events: list[tuple[float, int, str, int]] = []
    for i, t in enumerate(rollout.state_times):
        events.append((float(t), 0, "state", i))
    for i, t in enumerate(rollout.times):
        events.append((float(t), 1, "image", i))
        events.append((float(t), 2, "command", i))
        if rollout.env_state is not None:
            events.append((float(t), 1, "env", i))
    events.sort()
    with BagRecorder(path, storage=storage) as rec:
        for key, value in (("instruction", rollout.instruction), ("task", task),
                           ("embodiment", emb.name), ("success", str(rollout.success).lower()),
                           ("seed", str(rollout.seed)), ("rate_hz", str(emb.control_rate_hz)),
                           ("source", "ate_ros.core.sim scripted expert")):
            rec.set_metadata(key, value)
        rec.write_string(ns(float(rollout.times[0])), rollout.instruction,
                         topic=T.INSTRUCTION_TOPIC)
        for t, _, kind, i in events:
            if kind == "state":
                noisy = rollout.state_qpos[i] + rng.normal(0.0, joint_noise, len(names))
                rec.write_joint_state(ns(t), names, noisy, rollout.state_qvel[i],
                                      topic=T.JOINT_STATES_TOPIC)
            elif kind == "image":
                for cam, frames in rollout.images.items():
                    rec.write_image(ns(t), frames[i], topic=T.camera_topic(cam), frame_id=cam)
            elif kind == "env":
                rec.write_environment_state(ns(t), ENV_STATE_NAMES, rollout.env_state[i],
                                            topic=T.ENV_STATE_TOPIC)
            else:
                rec.write_joint_trajectory(ns(t), names, rollout.action[i][None, :], period,
                                           topic=T.COMMAND_TOPIC)
    return Path(path)


@dataclass
class RecordSummary:
    """What a recording run produced."""

    embodiment: str
    task: str
    requested: int
    written: int = 0
    attempts: int = 0
    failed: int = 0
    paths: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def expert_success_rate(self) -> float:
        return (self.attempts - self.failed) / self.attempts if self.attempts else math.nan

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["expert_success_rate"] = self.expert_success_rate
        return d


def _run(embodiment: str | Embodiment, task: str, episodes: int, seed: int,
         only_success: bool, render: bool, state_rate_hz: float | None,
         expert_config: ExpertConfig | None, sink, max_attempts: int | None) -> RecordSummary:
    import time

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    t0 = time.perf_counter()
    env = SimEnv(embodiment, task, seed=seed)
    try:
        summary = RecordSummary(env.embodiment.name, task, episodes)
        limit = max_attempts if max_attempts is not None else 2 * episodes + 10
        expert = ScriptedExpert(env, seed=episode_seed(seed, 0, 1), config=expert_config)
        index = 0
        while summary.written < episodes and summary.attempts < limit:
            s = episode_seed(seed, index)
            expert.rng = np.random.default_rng(episode_seed(seed, index, 1))
            index += 1
            ro = rollout_expert(env, expert, s, render=render, state_rate_hz=state_rate_hz)
            summary.attempts += 1
            if not ro.success:
                summary.failed += 1
                logger.info("expert failed episode seed %d (%s)", s, ro.instruction)
                if only_success:
                    continue
            path = sink(summary.written, ro, env.embodiment)
            summary.written += 1
            summary.paths.append(str(path))
            summary.seeds.append(s)
            summary.lengths.append(len(ro))
        if summary.written < episodes:
            logger.warning("only %d of %d episodes recorded after %d attempts", summary.written,
                           episodes, summary.attempts)
    finally:
        env.close()
    summary.seconds = time.perf_counter() - t0
    logger.info("%s/%s: %d episodes written, expert failed %d of %d attempts (%.1f s)",
                summary.embodiment, task, summary.written, summary.failed, summary.attempts,
                summary.seconds)
    return summary


def record_bags(embodiment: str | Embodiment, task: str, episodes: int, out: str | Path,
                seed: int = 0, storage: str = "mcap", only_success: bool = True,
                state_rate_hz: float = 50.0, expert_config: ExpertConfig | None = None,
                max_attempts: int | None = None) -> RecordSummary:
    """Record ``episodes`` expert demonstrations as one rosbag each under ``out``.

    Bags are named ``<embodiment>_<task>_<NNNN>`` (``.bag`` for ``ros1``). A ``sim_record.json``
    summary is written next to them.

    Args:
        embodiment: Simulated embodiment (name, YAML path or object).
        task: Task name.
        episodes: Number of episodes to write.
        out: Output folder (created).
        seed: Run seed; episode ``i`` uses :func:`episode_seed` ``(seed, i)``.
        storage: ``mcap``, ``sqlite3`` or ``ros1``.
        only_success: Skip episodes the expert failed (counted in the summary).
        state_rate_hz: ``/joint_states`` rate.
        expert_config: Expert behaviour.
        max_attempts: Give up after this many episodes (default ``2 * episodes + 10``).
    """
    out = Path(out)
    suffix = ".bag" if storage == "ros1" else ""

    def sink(i: int, ro: ExpertRollout, emb: Embodiment) -> Path:
        out.mkdir(parents=True, exist_ok=True)  # with the first bag: a failed start leaves none
        path = out / f"{emb.name}_{task}_{i:04d}{suffix}"
        return write_rollout_bag(path, ro, emb, task, storage=storage,
                                 rng=np.random.default_rng(episode_seed(seed, i, 2)))

    summary = _run(embodiment, task, episodes, seed, only_success, True, state_rate_hz,
                   expert_config, sink, max_attempts)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sim_record.json").write_text(json.dumps(summary.as_dict(), indent=2))
    return summary


def record_dataset(embodiment: str | Embodiment, task: str, episodes: int, out: str | Path,
                   seed: int = 0, val_fraction: float = 0.1, render: bool = True,
                   only_success: bool = True, expert_config: ExpertConfig | None = None,
                   max_attempts: int | None = None) -> RecordSummary:
    """Record expert episodes straight into an episode-format dataset (no bags).

    The last ``round(episodes * val_fraction)`` episodes go to ``val/``, the rest to
    ``train/``; ``embodiment.yaml`` and ``manifest.json`` are written next to them.
    """
    from ate_ros.core.data.episode_format import (
        EMBODIMENT_FILE,
        EPISODE_SUFFIX,
        MANIFEST,
        Episode,
        write_episode,
    )

    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    out = Path(out)
    n_val = int(round(episodes * val_fraction))

    def sink(i: int, ro: ExpertRollout, emb: Embodiment) -> Path:
        split = "val" if i >= episodes - n_val else "train"
        path = out / split / f"{emb.name}_{task}_{i:04d}{EPISODE_SUFFIX}"
        write_episode(path, Episode(
            qpos=ro.qpos.astype(np.float32), action=ro.action.astype(np.float32),
            timestamps=ro.times, images=ro.images, instruction=ro.instruction, task=task,
            embodiment=emb.name, joint_names=emb.joint_names, slots=emb.slots,
            rate_hz=emb.control_rate_hz, success=ro.success,
            source=f"sim:{emb.name}:{task}:seed={ro.seed}", env_state=ro.env_state,
            env_state_names=list(ENV_STATE_NAMES)))
        return path

    summary = _run(embodiment, task, episodes, seed, only_success, render, None, expert_config,
                   sink, max_attempts)
    out.mkdir(parents=True, exist_ok=True)
    load_embodiment(embodiment).to_yaml(out / EMBODIMENT_FILE)
    (out / MANIFEST).write_text(json.dumps({"source": "ate_ros.core.sim.record_dataset",
                                            **summary.as_dict()}, indent=2))
    return summary

"""Closed-loop evaluation of a :class:`~ate_ros.core.policy_contract.ChunkPolicy` in the sim.

Chunks go through :class:`~ate_ros.core.execution.ChunkScheduler`, the same safety, blending and
latency logic as the robot's executor node, so a policy is judged the way it would run on the
robot: every control tick the scheduler produces the target; whenever it runs low on planned
points the policy is asked for a new chunk from the current observation.

Evaluation episodes draw their initial states from a seed stream separate from the recorder's,
so evaluating with the recording seed never replays a training episode.

Inference delay (``inference_delay`` D control periods) is simulated on the stepped clock: a
chunk asked for at tick k reaches the scheduler at tick k + D, whatever the machine's speed.
In ``sync`` chunking the arm stops and holds until it arrives; in the asynchronous modes
(``replace``, ``crossfade``, ``ensemble``, ``rtc``: the executor's blend) it keeps executing
its plan, the request is made D ticks earlier, and the chunk (from the old observation) joins
the plan when it arrives; ``rtc`` hands the sampler the plan's next points as the committed
prefix and switches at index D.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ate_ros.core.embodiment import Embodiment
from ate_ros.core.execution.config import (
    CHUNKING_MODES,
    ExecutionConfig,
    receding_horizon_replan_steps,
)
from ate_ros.core.policy_contract import ChunkPolicy, supports_rtc
from ate_ros.core.sim.env import SimEnv
from ate_ros.core.sim.recording import episode_seed

logger = logging.getLogger(__name__)

EVAL_SEED_STREAM = 7
"""Stream index of :func:`episode_seed` for evaluation episodes (recording uses 0)."""



def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% for ``z = 1.96``).

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0 or n successes,
    which matters for the small episode counts of closed-loop evaluation.
    """
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes ({successes}) must be within [0, n={n}]")
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


def paired_bootstrap(groups: list[list[np.ndarray]], reps: int = 10_000, seed: int = 0
                     ) -> tuple[float, float, float]:
    """Mean paired difference and its 95% two-level bootstrap interval.

    Args:
        groups: Per training run (e.g. seed), per cell (e.g. task), the (E,) differences of two
            methods evaluated on the same E episodes.
        reps: Bootstrap replicates: runs are resampled (training variance), then episodes
            within each drawn run's cells (evaluation variance).
        seed: Seed of the resampling.

    Returns:
        (mean over cells of the mean difference, 2.5th percentile, 97.5th percentile).
    """
    cells = [[np.asarray(d, dtype=float) for d in g] for g in groups]
    mean = float(np.mean([d.mean() for g in cells for d in g]))
    rng = np.random.default_rng(seed)
    boot = np.empty(reps)
    for i in range(reps):
        pick = rng.integers(len(cells), size=len(cells))
        boot[i] = np.mean([d[rng.integers(len(d), size=len(d))].mean()
                           for j in pick for d in cells[j]])
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return mean, float(lo), float(hi)


@dataclass
class EpisodeRecord:
    """Outcome of one evaluation episode."""

    index: int
    seed: int
    instruction: str
    success: bool
    failed: bool
    steps: int
    duration: float
    chunks: int
    rejected_chunks: int
    final_ee: list[float] = field(default_factory=list)
    target_distance: float | None = None
    """Tasks with a named object among others (pick_color): horizontal distance from the
    fingertip to the named object at the end, and to the nearest other object."""
    other_distance: float | None = None
    switch_velocity_jump: float | None = None
    """Mean over chunk switches (after the episode's first chunk) of the largest joint
    velocity change between the last command before and the first after (rad/s)."""
    switch_peak_acceleration: float | None = None
    """Largest commanded joint acceleration within a tick of any switch (rad/s^2)."""
    rms_jerk: float | None = None
    """RMS of the commands' third difference / dt^3 over the episode (rad/s^3)."""
    pause_ticks: int = 0
    """Ticks the executor held position (nothing planned) before the episode ended."""


@dataclass
class EvalResult:
    """Success rate with its 95% Wilson interval, lengths and per-episode records."""

    embodiment: str
    task: str
    episodes: int
    successes: int
    success_rate: float
    ci_low: float
    ci_high: float
    mean_steps: float
    mean_success_steps: float
    records: list[EpisodeRecord]
    execution: dict = field(default_factory=dict)
    policy_seconds: float = 0.0
    seconds: float = 0.0
    renders: list[str] = field(default_factory=list)
    nearer_target: int | None = None
    """Episodes that ended nearer the named object than any other (chance: 1 in the number of
    objects): whether the policy follows the instruction, even when it misses."""
    chunking: str = "sync"
    inference_delay: int = 0
    traces: list[dict] = field(default_factory=list)
    """Commands (ticks, D) and switch ticks of the first ``keep_traces`` episodes."""

    def as_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.as_dict(), indent=2))

    def summary(self) -> str:
        return (f"{self.embodiment}/{self.task}: success {self.successes}/{self.episodes} = "
                f"{self.success_rate:.2f} (95% CI {self.ci_low:.2f}-{self.ci_high:.2f}), "
                f"mean length {self.mean_steps:.1f} steps"
                + ("" if self.nearer_target is None else
                   f", ended nearer the named object in {self.nearer_target}/{self.episodes}"))


def _object_distances(env) -> tuple[float | None, float | None]:
    """(named, nearest other) horizontal fingertip distances, for tasks that name one object
    among others; (None, None) otherwise."""
    state = env.task_state()
    if "target" not in state or "distractors" not in state or not len(state["distractors"]):
        return None, None
    tip = env.ee_position()[:2]
    named = float(np.linalg.norm(tip - np.asarray(state["target"])[:2]))
    other = min(float(np.linalg.norm(tip - np.asarray(d)[:2])) for d in state["distractors"])
    return round(named, 4), round(other, 4)


def _save_strip(path: Path, frames: list[np.ndarray], scale: int = 2) -> None:
    import cv2

    strip = np.concatenate(frames, axis=1)
    if scale > 1:
        strip = cv2.resize(strip, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))


def motion_metrics(commands: np.ndarray, switches: list[int], dt: float
                   ) -> tuple[float | None, float | None, float | None]:
    """(switch velocity jump, peak acceleration at switches, RMS jerk) of one episode's
    commands (T, D); ``switches``: indices of the first command after each chunk joined the
    plan (the first one, from rest, is not a switch between chunks)."""
    c = np.asarray(commands, dtype=np.float64)
    v = np.diff(c, axis=0) / dt  # v[k-1] = velocity into command k
    a = np.diff(v, axis=0) / dt  # a[k-2] = acceleration at command k
    jumps, peaks = [], []
    for s in switches[1:]:
        if 2 <= s < len(c):
            jumps.append(float(np.abs(v[s - 1] - v[s - 2]).max()))
            window = a[max(s - 3, 0):min(s + 1, len(a))]
            if len(window):
                peaks.append(float(np.abs(window).max()))
    jerk = np.diff(c, n=3, axis=0) / dt ** 3
    rms = float(np.sqrt(np.mean(jerk ** 2))) if jerk.size else None
    return (float(np.mean(jumps)) if jumps else None, max(peaks) if peaks else None, rms)


def _committed_prefix(scheduler, emb: Embodiment, now: float, horizon: int) -> np.ndarray | None:
    """The plan's next points for now + (i + 1) dt, unified space: what executes while the
    next chunk is computed (``None`` with nothing planned)."""
    n = min(scheduler.remaining(now), int(horizon))
    if n <= 0:
        return None
    _, pts = scheduler.planned(now, max_points=n)
    return emb.to_unified(pts.astype(np.float32))


def default_execution(policy) -> ExecutionConfig:
    """Executor settings for ``policy``: receding horizon after its ``n_action_steps`` points
    (``replan_steps = chunk_size - n_action_steps``), the defaults otherwise."""
    replan = receding_horizon_replan_steps(policy.chunk_size,
                                           int(getattr(policy, "n_action_steps", 0) or 0))
    return ExecutionConfig() if replan is None else ExecutionConfig(replan_steps=replan)


def evaluate_policy(policy: ChunkPolicy, embodiment: str | Embodiment, task: str,
                    episodes: int = 20, seed: int = 0, num_steps: int | None = None,
                    execution=None, render_dir: str | Path | None = None,
                    render_episodes: int = 3, render_every: int = 4,
                    env: SimEnv | None = None, inference_delay: int = 0,
                    chunking: str = "sync", keep_traces: int = 0) -> EvalResult:
    """Run ``episodes`` closed-loop episodes and report the success rate.

    Args:
        policy: Any :class:`ChunkPolicy` (unified-space chunks).
        embodiment: Simulated embodiment (name, YAML path or object).
        task: Task name.
        episodes: Number of episodes.
        seed: Evaluation seed (episode initial states and policy sampling seeds).
        num_steps: Denoising/integration steps passed to the policy (``None``: its default).
        execution: An :class:`~ate_ros.core.execution.ExecutionConfig`; ``None``: default
            settings, replanning after the policy's ``n_action_steps`` points when it has them.
        render_dir: If set, save PNG strips of the first ``render_episodes`` episodes here.
        render_episodes: Episodes to render.
        render_every: Control ticks between frames of a strip.
        env: Use this environment instead of creating one (it is not closed); needed by
            oracles such as :class:`~ate_ros.core.sim.experts.ExpertPolicy` that read its
            state.
        inference_delay: Control periods the policy takes per chunk (simulated, see the module
            docstring).
        chunking: One of :data:`CHUNKING_MODES`; an asynchronous mode sets the executor's blend.
        keep_traces: Keep the commands and switch ticks of this many first episodes.

    Returns:
        The :class:`EvalResult`.
    """
    from dataclasses import replace

    from ate_ros.core.execution import ChunkScheduler

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if chunking not in CHUNKING_MODES:
        raise ValueError(f"chunking must be one of {CHUNKING_MODES}, got {chunking!r}")
    if inference_delay < 0:
        raise ValueError(f"inference_delay must be >= 0 control periods, got {inference_delay}")
    if chunking == "rtc" and not supports_rtc(policy):
        raise ValueError(f"chunking 'rtc' needs a policy whose predict_chunk takes a committed "
                         f"prefix; {type(policy).__name__} does not")
    own_env = env is None
    if env is None:
        env = SimEnv(embodiment, task, seed=seed)
    elif env.task.name != task:
        raise ValueError(f"env runs task {env.task.name!r} but task={task!r} was requested")
    emb = env.embodiment
    missing = [c for c in getattr(policy, "camera_names", []) if c not in env.camera_names]
    if missing:
        raise ValueError(f"policy expects cameras {missing}; the simulation has "
                         f"{env.camera_names}")
    execution = execution or default_execution(policy)
    if chunking != "sync":
        execution = replace(execution, blend=chunking)
    scheduler = ChunkScheduler(emb, execution)
    delay = int(inference_delay)
    # Asynchronous modes ask D ticks earlier, so the chunk lands when replan_steps points are
    # left, as it does without delay.
    threshold = max(execution.replan_steps, 1) + (delay if chunking != "sync" else 0)
    render_obs = bool(getattr(policy, "camera_names", True))
    render_path = Path(render_dir) if render_dir is not None else None
    if render_path is not None:
        render_path.mkdir(parents=True, exist_ok=True)
    records: list[EpisodeRecord] = []
    renders: list[str] = []
    traces: list[dict] = []
    t_start = time.perf_counter()
    policy_time = 0.0
    try:
        for i in range(episodes):
            ep_seed = episode_seed(seed, i, EVAL_SEED_STREAM)
            env.reset(seed=ep_seed, render=False)
            scheduler.reset()
            chunks = rejected = steps = pauses = 0
            strip: list[np.ndarray] = []
            rendering = render_path is not None and i < render_episodes
            pending: tuple | None = None  # (arrival tick, obs stamp, chunk)
            commands: list[np.ndarray] = []
            switches: list[int] = []
            while not env.done():
                now = env.time
                q = env.qpos()
                if pending is not None and steps >= pending[0]:
                    _, stamp, chunk = pending
                    pending = None
                    # sync: the arm waited at rest, so the chunk runs from its arrival.
                    res = scheduler.submit(emb.from_unified(np.asarray(chunk)),
                                           obs_stamp=now if chunking == "sync" else stamp,
                                           now=now, measured_q=q, takeover=delay)
                    if res.accepted:
                        switches.append(steps)
                    else:
                        rejected += 1
                        logger.debug("episode %d: chunk rejected (%s)", i, res.reason)
                if pending is None and scheduler.remaining(now) < threshold:
                    obs = env.observe(render=render_obs)
                    extra = {}
                    if chunking == "rtc":
                        prefix = _committed_prefix(scheduler, emb, now, policy.chunk_size)
                        if prefix is not None:
                            extra = {"prefix": prefix, "inference_delay": delay}
                    t0 = time.perf_counter()
                    chunk = policy.predict_chunk(obs.to_policy(emb), num_steps=num_steps,
                                                 seed=episode_seed(seed, i, 1000 + chunks),
                                                 **extra)
                    policy_time += time.perf_counter() - t0
                    chunks += 1
                    if chunking == "sync" and delay:
                        scheduler.hold()  # stop and wait for the policy
                    pending = (steps + delay, now, chunk)
                    if delay == 0:
                        res = scheduler.submit(emb.from_unified(np.asarray(chunk)),
                                               obs_stamp=now, now=now, measured_q=q,
                                               takeover=0)
                        pending = None
                        if res.accepted:
                            switches.append(steps)
                        else:
                            rejected += 1
                            logger.debug("episode %d: chunk rejected (%s)", i, res.reason)
                if rendering and steps % render_every == 0:
                    strip.append(env.render(env.camera_names[0]))
                cmd = scheduler.command(now, q)
                pauses += int(scheduler.holding)
                commands.append(cmd)
                env.step(cmd, render=False)
                steps += 1
            if rendering:
                strip.append(env.render(env.camera_names[0]))
                tag = "success" if env.success() else "fail"
                path = render_path / f"{emb.name}_{task}_ep{i:03d}_{tag}.png"
                _save_strip(path, strip)
                renders.append(str(path))
            named, other = _object_distances(env)
            jump, peak, jerk = motion_metrics(np.asarray(commands), switches, emb.control_period)
            records.append(EpisodeRecord(
                index=i, seed=ep_seed, instruction=env.instruction, success=env.success(),
                failed=env.failed(), steps=steps, duration=env.time, chunks=chunks,
                rejected_chunks=rejected, final_ee=env.ee_position().round(4).tolist(),
                target_distance=named, other_distance=other, switch_velocity_jump=jump,
                switch_peak_acceleration=peak, rms_jerk=jerk, pause_ticks=pauses))
            if i < keep_traces:
                traces.append({"commands": np.asarray(commands).tolist(),
                               "switches": switches, "dt": emb.control_period})
            logger.debug("episode %d (%s): %s in %d steps", i, env.instruction,
                         "success" if env.success() else "failure", steps)
    finally:
        if own_env:
            env.close()
    k = sum(r.success for r in records)
    lo, hi = wilson_interval(k, len(records))
    ok_steps = [r.steps for r in records if r.success]
    result = EvalResult(
        embodiment=emb.name, task=task, episodes=len(records), successes=k,
        success_rate=k / len(records), ci_low=lo, ci_high=hi,
        mean_steps=float(np.mean([r.steps for r in records])),
        mean_success_steps=float(np.mean(ok_steps)) if ok_steps else math.nan,
        records=records, execution=scheduler.stats.as_dict(), policy_seconds=policy_time,
        seconds=time.perf_counter() - t_start, renders=renders, chunking=chunking,
        inference_delay=delay, traces=traces)
    if records and all(r.target_distance is not None for r in records):
        result.nearer_target = sum(r.target_distance < r.other_distance for r in records)
    logger.info(result.summary())
    return result

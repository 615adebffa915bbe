"""SimEnv: determinism, success detection, kinematics and rendering (real MuJoCo physics)."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from ate_ros.core.embodiment import load_embodiment
from ate_ros.core.sim import ADAPT_EMBODIMENT, PRETRAIN_EMBODIMENTS, SIM_EMBODIMENTS, SIM_TASKS
from ate_ros.core.sim.arms import BLOCK_HALF, COLORS, TIP_RADIUS
from ate_ros.core.sim.env import SimEnv


def test_embodiments_differ_and_split():
    dofs = {n: load_embodiment(n).dof for n in SIM_EMBODIMENTS}
    assert dofs == {"sim_arm6": 6, "sim_arm5": 5, "sim_arm7": 7}
    assert ADAPT_EMBODIMENT not in PRETRAIN_EMBODIMENTS
    for n in SIM_EMBODIMENTS:
        emb = load_embodiment(n)
        assert list(emb.slots) == list(range(emb.dof))  # right_arm_joint_pos[0..]
        assert emb.cameras[0].name == "front" and emb.ee_link


def _rollout(seed: int, n: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with SimEnv("sim_arm6", "push", seed=0) as env:
        obs = env.reset(seed=seed)
        rng = np.random.default_rng(1)
        qs = []
        for _ in range(n):
            target = obs.qpos + rng.normal(0.0, 0.05, env.dof)
            obs = env.step(target, render=False)
            qs.append(obs.qpos)
        return np.array(qs), env.task_state()["block"], env.render()


def test_same_seed_same_rollout_and_different_seed_differs():
    a, block_a, img_a = _rollout(3)
    b, block_b, img_b = _rollout(3)
    c, block_c, _ = _rollout(4)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(block_a, block_b)
    np.testing.assert_array_equal(img_a, img_b)
    assert not np.allclose(block_a, block_c)


def test_reset_without_seed_draws_a_reproducible_stream():
    with SimEnv("sim_arm5", "reach", seed=11) as e1, SimEnv("sim_arm5", "reach", seed=11) as e2:
        s1 = [e1.reset(render=False).qpos for _ in range(3)]
        s2 = [e2.reset(render=False).qpos for _ in range(3)]
    np.testing.assert_array_equal(np.array(s1), np.array(s2))
    assert not np.allclose(s1[0], s1[1])


def test_position_control_tracks_targets():
    with SimEnv("sim_arm7", "reach", seed=0) as env:
        obs = env.reset(seed=1, render=False)
        target = obs.qpos + 0.15
        for _ in range(5):
            obs = env.step(target, render=False)
        assert np.max(np.abs(obs.qpos - env.target)) < 0.01


def test_advance_in_pieces_equals_step():
    with SimEnv("sim_arm6", "push", seed=0) as e1, SimEnv("sim_arm6", "push", seed=0) as e2:
        e1.reset(seed=5, render=False)
        e2.reset(seed=5, render=False)
        target = e1.qpos() + 0.1
        e1.step(target, render=False)
        e2.set_targets(target)
        for _ in range(7):
            e2.advance(e2.control_period / 7)
        assert e2.time == pytest.approx(e1.time, abs=1e-9)
        np.testing.assert_allclose(e2.qpos(), e1.qpos(), atol=1e-12)


def test_ee_positions_matches_simulation():
    with SimEnv("sim_arm7", "reach", seed=0) as env:
        env.reset(seed=2, render=False)
        for _ in range(3):
            env.step(env.qpos() + 0.05, render=False)
        fk = env.ee_positions(np.stack([env.qpos(), env.qpos()]))
        assert fk.shape == (2, 3)
        np.testing.assert_allclose(fk[0], env.ee_position(), atol=1e-9)


def test_success_detection_reach():
    with SimEnv("sim_arm6", "reach", seed=0) as env:
        env.reset(seed=0, render=False)
        env.data.mocap_pos[env.scene.ball_mocap] = env.ee_position() + [0.02, 0.0, 0.0]
        assert env.success() and env.done()
        env.data.mocap_pos[env.scene.ball_mocap] = env.ee_position() + [0.05, 0.0, 0.0]
        assert not env.success() and not env.done()


def test_success_detection_push():
    with SimEnv("sim_arm6", "push", seed=0) as env:
        env.reset(seed=0, render=False)
        assert not env.success()
        goal = env.task_state()["goal"]
        env.scene.set_block(np.append(goal + [0.01, 0.0], BLOCK_HALF))
        mujoco.mj_forward(env.model, env.data)
        assert env.success()
        env.scene.set_block(np.array([0.3, 0.0, -0.1]))
        mujoco.mj_forward(env.model, env.data)
        assert env.failed() and env.done() and not env.success()


def test_success_detection_pick_color_and_wrong_block():
    with SimEnv("sim_arm5", "pick_color", seed=0) as env:
        env.reset(seed=0, render=False)
        task = env.task
        assert task.colors[task.target_index] in env.instruction
        tip = env.ee_position()
        below = tip - [0.0, 0.0, BLOCK_HALF + TIP_RADIUS + 0.002]
        env.data.mocap_pos[env.scene.touch_mocap[task.target_index]] = below
        assert env.success() and not env.failed()
        env.data.mocap_pos[env.scene.touch_mocap[task.target_index]] = below + [0.0, 0.0, -0.05]
        assert not env.success()
        other = 1 - task.target_index
        env.data.mocap_pos[env.scene.touch_mocap[other]] = below
        assert env.failed() and env.done()


def test_time_limit_ends_episode():
    with SimEnv("sim_arm6", "reach", seed=0) as env:
        obs = env.reset(seed=0, render=False)
        steps = 0
        while not env.done():
            env.step(obs.qpos, render=False)  # hold still: never reaches the ball
            steps += 1
        assert steps == env.max_steps == 40 and not env.success()


@pytest.mark.parametrize("task", SIM_TASKS)
def test_rendered_frames_are_images_not_noise(task):
    with SimEnv(ADAPT_EMBODIMENT, task, seed=0) as env:
        obs = env.reset(seed=1)
        img = obs.images["front"]
        assert img.shape == (96, 96, 3) and img.dtype == np.uint8
        f = img.astype(np.float64)
        assert f.std() > 10  # not a uniform frame
        # Rendered scenes are piecewise smooth: neighbouring pixels differ far less than
        # random pixel pairs (for noise both are equal).
        neighbour = np.abs(np.diff(f, axis=1)).mean()
        shuffled = np.random.default_rng(0).permutation(f.reshape(-1, 3))
        random_pairs = np.abs(np.diff(shuffled, axis=0)).mean()
        assert neighbour < 0.35 * random_pairs
        # The named object's colour is visible.
        name = next(c for c in COLORS if c in env.instruction) if task != "push" else "red"
        ref = np.array(COLORS[name][:3]) * 255
        close = np.linalg.norm(f - ref, axis=-1) < 90
        assert close.sum() >= 6


def test_invalid_arguments_are_explained():
    with pytest.raises(ValueError, match="unknown task"):
        SimEnv("sim_arm6", "juggle")
    with SimEnv("sim_arm6", "reach") as env:
        with pytest.raises(ValueError, match="shape"):
            env.set_targets(np.zeros(3))
        with pytest.raises(ValueError, match="negative"):
            env.advance(-1.0)

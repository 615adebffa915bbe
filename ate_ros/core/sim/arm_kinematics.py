"""Forward kinematics and damped-least-squares IK on a simulated arm's MuJoCo model.

Uses its own ``MjData`` so queries never disturb the simulation being stepped.
"""

from __future__ import annotations

import mujoco
import numpy as np

DOWN = np.array([0.0, 0.0, -1.0])


class ArmKinematics:
    """FK/IK for the first ``dof`` joints of ``model`` (the arm), fingertip site ``site``.

    Args:
        model: The scene model (arm joints come first in ``qpos``).
        dof: Number of arm joints.
        site: Name of the fingertip site.
        lower: (D,) joint lower limits.
        upper: (D,) joint upper limits.
        home: (D,) posture the IK's null-space term pulls toward.
    """

    def __init__(self, model: mujoco.MjModel, dof: int, site: str, lower: np.ndarray,
                 upper: np.ndarray, home: np.ndarray) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        self.dof = dof
        self.site = model.site(site).id
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.home = np.asarray(home, dtype=np.float64)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def _set(self, q: np.ndarray) -> None:
        self.data.qpos[:self.dof] = q
        # Only positions of bodies are needed: skip the full mj_forward.
        mujoco.mj_kinematics(self.model, self.data)

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fingertip position (3,) and tool axis (3,) (the site's z axis) for joints ``q``."""
        self._set(q)
        return (self.data.site_xpos[self.site].copy(),
                self.data.site_xmat[self.site].reshape(3, 3)[:, 2].copy())

    def ee_positions(self, qs: np.ndarray) -> np.ndarray:
        """(N, D) joint configurations -> (N, 3) fingertip positions."""
        qs = np.atleast_2d(np.asarray(qs, dtype=np.float64))
        out = np.empty((qs.shape[0], 3))
        for i, q in enumerate(qs):
            self._set(q)
            out[i] = self.data.site_xpos[self.site]
        return out

    def ik(self, q0: np.ndarray, target: np.ndarray, iters: int = 3, damping: float = 0.05,
           orient_weight: float = 0.3, posture_gain: float = 0.05, max_step: float = 0.2
           ) -> np.ndarray:
        """Joint positions near ``q0`` that put the fingertip at ``target``, tool pointing down.

        Damped least squares on the stacked position (3 rows) and tool-axis (3 rows, weighted)
        errors, plus a null-space pull toward the home posture so redundant arms (7-DoF) do not
        drift. A few iterations per control tick suffice because targets move a few cm a tick.

        Args:
            q0: (D,) starting joints (the previous command).
            target: (3,) desired fingertip position (world frame).
            iters: Gauss-Newton iterations.
            damping: DLS damping (lambda); trades accuracy for robustness near singularities.
            orient_weight: Weight of the tool-axis error relative to position (m per rad).
            posture_gain: Fraction of the home-posture error removed per iteration (null space).
            max_step: Largest per-joint change per iteration (rad).

        Returns:
            (D,) joint positions inside the limits.
        """
        q = np.array(q0, dtype=np.float64)
        d = self.dof
        eye = np.eye(6)
        for _ in range(iters):
            self._set(q)
            # Jacobians need com positions; mj_kinematics alone leaves cdof stale.
            mujoco.mj_comPos(self.model, self.data)
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site)
            pos = self.data.site_xpos[self.site]
            axis = self.data.site_xmat[self.site].reshape(3, 3)[:, 2]
            # Angular velocity that rotates the tool axis toward DOWN: axis x DOWN.
            err = np.concatenate([target - pos, orient_weight * np.cross(axis, DOWN)])
            jac = np.vstack([self._jacp[:, :d], orient_weight * self._jacr[:, :d]])
            jjt = jac @ jac.T + damping ** 2 * eye
            pinv = jac.T @ np.linalg.solve(jjt, eye)
            dq = pinv @ err
            dq += (np.eye(d) - pinv @ jac) @ (posture_gain * (self.home - q))
            dq = np.clip(dq, -max_step, max_step)
            q = np.clip(q + dq, self.lower, self.upper)
        return q

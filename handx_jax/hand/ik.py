"""Small batched inverse kinematics for in-hand touches (thumb tip onto another fingertip).

Damped Gauss-Newton (Levenberg-Marquardt) in JAX over six angles: thumb CMC flexion, CMC
abduction, MCP, IP and the touched finger's MCP and PIP (its DIP follows at 2/3 of the
PIP). A weak pull towards a preferred pose picks one of the many solutions, so different
preferences give varied, natural pinches. Angles are projected into the joint limits after
every step. Uniform subject scale leaves the solution unchanged, so solutions can be reused
across subjects.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from handx_jax.hand import kinematics

DIP_RATIO = 2.0 / 3.0
# Unknowns: thumb CMC flex, thumb CMC abduction, thumb MCP, thumb IP, finger MCP, finger PIP.
LOWER = np.array([kinematics.FLEXION_LIMITS[0, 0, 0], kinematics.ABDUCTION_LIMITS[0, 0],
                  kinematics.FLEXION_LIMITS[0, 0, 1], kinematics.FLEXION_LIMITS[0, 0, 2],
                  0.0, 0.0])
UPPER = np.array([kinematics.FLEXION_LIMITS[1, 0, 0], kinematics.ABDUCTION_LIMITS[1, 0],
                  kinematics.FLEXION_LIMITS[1, 0, 1], kinematics.FLEXION_LIMITS[1, 0, 2],
                  kinematics.FLEXION_LIMITS[1, 1, 0],
                  min(kinematics.FLEXION_LIMITS[1, 1, 1],
                      kinematics.FLEXION_LIMITS[1, 1, 2] / DIP_RATIO)])


def pose_from_unknowns(q: jnp.ndarray, finger: jnp.ndarray, base_flexion: jnp.ndarray,
                       base_abduction: jnp.ndarray):
    """Insert the six unknowns into a full pose (flexion (5, 3), abduction (5,))."""
    onehot = jax.nn.one_hot(finger, 5, dtype=q.dtype)  # (5,)
    finger_row = jnp.stack([q[4], q[5], DIP_RATIO * q[5]])
    flex = base_flexion * (1.0 - onehot)[:, None] + onehot[:, None] * finger_row[None, :]
    flex = flex.at[0].set(jnp.stack([q[0], q[2], q[3]]))
    abd = base_abduction * (1.0 - onehot)
    abd = abd.at[0].set(q[1])
    return flex, abd


def _tip_gap(q, finger, base_flexion, base_abduction):
    flex, abd = pose_from_unknowns(q, finger, base_flexion, base_abduction)
    joints = kinematics.local_joints(flex, abd)
    tips = joints[jnp.array([16, 17, 18, 19, 20])]
    other = jnp.sum(jax.nn.one_hot(finger, 5, dtype=q.dtype)[:, None] * tips, axis=0)
    return tips[0] - other


def _solve_one(q_pref, finger, base_flexion, base_abduction, iters, pull):
    lower, upper = jnp.asarray(LOWER, q_pref.dtype), jnp.asarray(UPPER, q_pref.dtype)

    def residual(q):
        gap = _tip_gap(q, finger, base_flexion, base_abduction) * 100.0  # centimetres
        return jnp.concatenate([gap, pull * (q - q_pref)])

    def step(q, _):
        r = residual(q)
        jac = jax.jacfwd(residual)(q)
        lhs = jac.T @ jac + 1e-3 * jnp.eye(6, dtype=q.dtype)
        q = jnp.clip(q - jnp.linalg.solve(lhs, jac.T @ r), lower, upper)
        return q, None

    q, _ = jax.lax.scan(step, jnp.clip(q_pref, lower, upper), None, length=iters)
    return q, jnp.linalg.norm(_tip_gap(q, finger, base_flexion, base_abduction))


@functools.partial(jax.jit, static_argnames=("iters",))
def solve_pinch(q_pref, finger, base_flexion=None, base_abduction=None, *, iters: int = 30,
                pull: float = 0.05):
    """Batched pinch IK.

    q_pref (B, 6) preferred unknowns (radians), finger (B,) int in 1..4 (index..pinky).
    Returns (q (B, 6), tip distance (B,) metres at scale 1).
    """
    batch = q_pref.shape[0]
    if base_flexion is None:
        base_flexion = jnp.zeros((batch, 5, 3), q_pref.dtype)
    if base_abduction is None:
        base_abduction = jnp.zeros((batch, 5), q_pref.dtype)
    return jax.vmap(_solve_one, in_axes=(0, 0, 0, 0, None, None))(
        q_pref, finger, base_flexion, base_abduction, iters, pull)

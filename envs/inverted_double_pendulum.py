"""InvertedDoublePendulum-v5: balance two poles on a cart
(gymnasium/envs/mujoco/inverted_double_pendulum_v5.py).

v5 defaults: frame_skip 5 (dt 0.05). With (x, _, y) = site_xpos of the tip: terminated iff
y <= 1; reward = healthy_reward * (not terminated) - (0.01 x^2 + (y - 2)^2)
- (1e-3 qvel[1]^2 + 5e-3 qvel[2]^2). Reset qpos ~ U(+-0.1), qvel ~ 0.1 * N(0, 1).
Observation = qpos[0], sin(qpos[1:]), cos(qpos[1:]), clip(qvel, -10, 10),
clip(qfrc_constraint, -10, 10)[0] -> 9 values.
"""
import jax.numpy as jnp

from envs.base import MujocoEnv


class InvertedDoublePendulum(MujocoEnv):
    xml_file = "inverted_double_pendulum.xml"
    frame_skip = 5
    healthy_reward = 10.0
    reset_noise_scale = 0.1
    reset_qvel_normal = True  # v5: qvel noise is reset_noise_scale * N(0, 1)
    # physics="fast": the XML's RK4 with Newton capped at 4 / 8 line-search steps. Measured (CPU,
    # 32 envs, one-step vs gymnasium's v5): same error as "v5" (obs 2.2e-6), ~1.3-1.7x the
    # steps/s; Euler / implicitfast miss qvel by 0.39 and flip 3 of 128 terminations.
    fast_physics = {"iterations": 4, "ls_iterations": 8}
    reset_needs_constraints = True  # observes qfrc_constraint

    def _observation(self, data):
        return jnp.concatenate(
            [
                data.qpos[:1],
                jnp.sin(data.qpos[1:]),
                jnp.cos(data.qpos[1:]),
                jnp.clip(data.qvel, -10.0, 10.0),
                jnp.clip(data.qfrc_constraint, -10.0, 10.0)[:1],
            ]
        ).astype(jnp.float32)

    def _reward_and_termination(self, before, after, ctrl):
        x, y = after.site_xpos[0, 0], after.site_xpos[0, 2]
        terminated = y <= 1.0
        v1, v2 = after.qvel[1], after.qvel[2]
        dist_penalty = 0.01 * x**2 + (y - 2.0) ** 2
        vel_penalty = 1e-3 * v1**2 + 5e-3 * v2**2
        alive_bonus = self.healthy_reward * (~terminated)
        info = {
            "reward_survive": alive_bonus,
            "distance_penalty": -dist_penalty,
            "velocity_penalty": -vel_penalty,
        }
        return alive_bonus - dist_penalty - vel_penalty, terminated, info

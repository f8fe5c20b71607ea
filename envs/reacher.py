"""Reacher-v5: move a two-link arm's fingertip to a random goal (gymnasium/envs/mujoco/reacher_v5.py).

v5 defaults: frame_skip 2 (dt 0.02), time limit 50 steps (Reacher-v5's max_episode_steps),
reward = -|fingertip - target| - |a|^2 (3-D body positions), no termination.
Reset: qpos = qpos0 + U(+-0.1), then the goal qpos[-2:] ~ U(+-0.2)^2 redrawn until its norm is
< 0.2 (uniform on the open disc); qvel = U(+-0.005) with the goal's qvel[-2:] = 0.
Observation = cos(qpos[:2]), sin(qpos[:2]), qpos[2:], qvel[:2], (fingertip - target)[:2] -> 10.
"""
import jax
import jax.numpy as jnp

from envs.base import MujocoEnv


class Reacher(MujocoEnv):
    xml_file = "reacher.xml"
    frame_skip = 2
    max_episode_steps = 50
    reward_dist_weight = 1.0
    reward_control_weight = 1.0
    # physics="fast": the XML's RK4 with Newton capped at 4 / 8 line-search steps. Measured (CPU,
    # 32 envs, one-step vs gymnasium's v5): same error as "v5" (obs 1.9e-6), ~1.1-1.4x the
    # steps/s; Euler / implicitfast (4-5x faster) miss qvel by 0.80.
    fast_physics = {"iterations": 4, "ls_iterations": 8}

    def _reset_qpos_qvel(self, key):
        kq, kg, kv = jax.random.split(key, 3)
        qpos = self.init_qpos + jax.random.uniform(kq, self.init_qpos.shape, minval=-0.1, maxval=0.1)

        def draw(carry):
            k, _ = carry
            k, sub = jax.random.split(k)
            return k, jax.random.uniform(sub, (2,), minval=-0.2, maxval=0.2)

        _, goal = jax.lax.while_loop(
            lambda carry: jnp.linalg.norm(carry[1]) >= 0.2, draw, (kg, jnp.full((2,), 1.0))
        )
        qpos = qpos.at[-2:].set(goal)
        qvel = self.init_qvel + jax.random.uniform(
            kv, self.init_qvel.shape, minval=-0.005, maxval=0.005
        )
        qvel = qvel.at[-2:].set(0.0)
        return qpos, qvel

    def _fingertip_minus_target(self, data):
        # gymnasium's get_body_com(name) is data.xpos of that body
        fingertip, target = self.mj_model.body("fingertip").id, self.mj_model.body("target").id
        return data.xpos[fingertip] - data.xpos[target]

    def _observation(self, data):
        theta = data.qpos[:2]
        return jnp.concatenate(
            [
                jnp.cos(theta),
                jnp.sin(theta),
                data.qpos[2:],
                data.qvel[:2],
                self._fingertip_minus_target(data)[:2],
            ]
        ).astype(jnp.float32)

    def _reward_and_termination(self, before, after, ctrl):
        reward_dist = -jnp.linalg.norm(self._fingertip_minus_target(after)) * self.reward_dist_weight
        reward_ctrl = -jnp.sum(jnp.square(ctrl)) * self.reward_control_weight
        info = {"reward_dist": reward_dist, "reward_ctrl": reward_ctrl}
        return reward_dist + reward_ctrl, jnp.zeros((), bool), info

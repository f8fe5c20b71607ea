"""HalfCheetah-v5: run forward in the plane (gymnasium/envs/mujoco/half_cheetah_v5.py).

v5 defaults: frame_skip 5 (dt 0.05), reward = forward_reward_weight * x_velocity
- ctrl_cost_weight * |a|^2, no termination, reset qpos ~ U(+-0.1), qvel ~ 0.1 * N(0, 1),
observation = qpos[1:] (rootx excluded), qvel  -> 17 values.
"""
import jax.numpy as jnp

from envs.base import MujocoEnv


class HalfCheetah(MujocoEnv):
    xml_file = "half_cheetah.xml"
    frame_skip = 5
    forward_reward_weight = 1.0
    ctrl_cost_weight = 0.1
    reset_noise_scale = 0.1
    reset_qvel_normal = True  # v5: qvel noise is reset_noise_scale * N(0, 1)
    exclude_current_positions_from_observation = True
    # physics="fast": the XML's Euler with Newton capped at 4 iterations / 8 line-search steps.
    # Measured (CPU, 32 envs, one-step vs gymnasium's v5 on 128 states): same error as "v5"
    # (obs 8.4e-4 max abs), ~2.2x the steps/s; 2/4 or 1/4 iterations miss qvel by 3.9 / 7.0.
    fast_physics = {"iterations": 4, "ls_iterations": 8}

    def _observation(self, data):
        qpos = data.qpos[1:] if self.exclude_current_positions_from_observation else data.qpos
        return jnp.concatenate([qpos, data.qvel]).astype(jnp.float32)

    def _reward_and_termination(self, before, after, ctrl):
        x_velocity = (after.qpos[0] - before.qpos[0]) / self.dt
        forward_reward = self.forward_reward_weight * x_velocity
        ctrl_cost = self.ctrl_cost_weight * jnp.sum(jnp.square(ctrl))
        info = {
            "x_position": after.qpos[0],
            "x_velocity": x_velocity,
            "reward_forward": forward_reward,
            "reward_ctrl": -ctrl_cost,
        }
        return forward_reward - ctrl_cost, jnp.zeros((), bool), info

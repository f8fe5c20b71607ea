"""Hopper-v5: hop forward without falling (gymnasium/envs/mujoco/hopper_v5.py).

v5 defaults: frame_skip 4 (dt 0.008), reward = x_velocity + healthy_reward * is_healthy
- 1e-3 * |a|^2; terminated when unhealthy: healthy iff every entry of (qpos, qvel)[2:] lies in
(-100, 100), z = qpos[1] in (0.7, inf) and angle = qpos[2] in (-0.2, 0.2) (all strict).
Reset qpos, qvel ~ U(+-5e-3). Observation = qpos[1:], clip(qvel, -10, 10) -> 11 values.
"""
import jax.numpy as jnp

from envs.base import MujocoEnv


def _inside(x, low_high):
    low, high = low_high
    return (low < x) & (x < high)


class Hopper(MujocoEnv):
    xml_file = "hopper.xml"
    frame_skip = 4
    forward_reward_weight = 1.0
    ctrl_cost_weight = 1e-3
    healthy_reward = 1.0
    terminate_when_unhealthy = True
    healthy_state_range = (-100.0, 100.0)
    healthy_z_range = (0.7, float("inf"))
    healthy_angle_range = (-0.2, 0.2)
    reset_noise_scale = 5e-3
    exclude_current_positions_from_observation = True
    # physics="fast": the XML's RK4 with Newton capped at 4 / 8 line-search steps. Measured (CPU,
    # 32 envs, one-step vs gymnasium's v5): same error as "v5" (obs 5.5e-6), ~1.9x the steps/s;
    # Euler misses qvel by 0.32; 2/4 iterations (3e-5 here) miss walker2d's qvel by 1.8.
    fast_physics = {"iterations": 4, "ls_iterations": 8}

    def _observation(self, data):
        qpos = data.qpos[1:] if self.exclude_current_positions_from_observation else data.qpos
        return jnp.concatenate([qpos, jnp.clip(data.qvel, -10.0, 10.0)]).astype(jnp.float32)

    def is_healthy(self, data):
        state = jnp.concatenate([data.qpos, data.qvel])[2:]
        z, angle = data.qpos[1], data.qpos[2]
        return (
            jnp.all(_inside(state, self.healthy_state_range))
            & _inside(z, self.healthy_z_range)
            & _inside(angle, self.healthy_angle_range)
        )

    def _reward_and_termination(self, before, after, ctrl):
        x_velocity = (after.qpos[0] - before.qpos[0]) / self.dt
        healthy = self.is_healthy(after)
        forward_reward = self.forward_reward_weight * x_velocity
        healthy_reward = healthy * self.healthy_reward
        ctrl_cost = self.ctrl_cost_weight * jnp.sum(jnp.square(ctrl))
        terminated = ~healthy & self.terminate_when_unhealthy
        info = {
            "x_position": after.qpos[0],
            "z_distance_from_origin": after.qpos[1] - self.init_qpos[1],
            "x_velocity": x_velocity,
            "reward_forward": forward_reward,
            "reward_ctrl": -ctrl_cost,
            "reward_survive": healthy_reward,
        }
        return forward_reward + healthy_reward - ctrl_cost, terminated, info

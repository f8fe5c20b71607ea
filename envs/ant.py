"""Ant-v5: a four-legged robot walks forward (gymnasium/envs/mujoco/ant_v5.py).

Observation (105 by default): qpos[2:] (13), qvel (14), clip(cfrc_ext, -1, 1)[1:] (78), with
cfrc_ext from mj_rnePostConstraint after the step (zero at reset, as in gymnasium).

Physics: ant.xml's RK4 integrator and MuJoCo's default Newton solver (100 iterations, 50 line
search steps) run unchanged in MJX under physics="v5". physics="fast" is `fast_physics` below,
chosen by measurement (docs/ENVS.md).
"""
import jax.numpy as jnp
import mujoco

from envs.base import MujocoEnv


class Ant(MujocoEnv):
    xml_file = "ant.xml"
    frame_skip = 5
    forward_reward_weight = 1.0
    ctrl_cost_weight = 0.5
    contact_cost_weight = 5e-4
    healthy_reward = 1.0
    main_body = 1
    terminate_when_unhealthy = True
    healthy_z_range = (0.2, 1.0)
    contact_force_range = (-1.0, 1.0)
    reset_noise_scale = 0.1
    reset_qvel_normal = True  # v5: qvel noise is reset_noise_scale * N(0, 1)
    exclude_current_positions_from_observation = True
    include_cfrc_ext_in_observation = True
    needs_rne_postconstraint = True

    # physics="fast": the XML's RK4 and 0.01 s timestep with 4 Newton iterations / 8 line-search
    # steps instead of 100/50. Measured (docs/ENVS.md, "Ant-v5"): one env step from 128 gymnasium
    # states equals v5 (float64) in 118 of them (max qvel rel 2.8e-2), at 5.8x v5's speed on an
    # H200 (77k vs 13k env steps/s, 4096 envs). Euler 4/8 would run 298k but differs from v5 by
    # 16% (median) in qvel after one step.
    fast_physics = {"iterations": 4, "ls_iterations": 8}

    @property
    def _main_body_id(self) -> int:
        if isinstance(self.main_body, str):
            return mujoco.mj_name2id(self.mj_model, mujoco.mjtObj.mjOBJ_BODY, self.main_body)
        return int(self.main_body)

    def _contact_forces(self, data):
        return jnp.clip(data._impl.cfrc_ext, *self.contact_force_range)

    def _observation(self, data):
        parts = [data.qpos[2:] if self.exclude_current_positions_from_observation else data.qpos]
        parts.append(data.qvel)
        if self.include_cfrc_ext_in_observation:
            parts.append(self._contact_forces(data)[1:].ravel())
        return jnp.concatenate(parts).astype(jnp.float32)

    def _reward_and_termination(self, before, after, ctrl):
        body = self._main_body_id
        x_velocity, y_velocity = (after.xpos[body, :2] - before.xpos[body, :2]) / self.dt
        min_z, max_z = self.healthy_z_range
        z = after.qpos[2]
        finite = jnp.all(jnp.isfinite(after.qpos)) & jnp.all(jnp.isfinite(after.qvel))
        is_healthy = finite & (min_z <= z) & (z <= max_z)
        forward_reward = self.forward_reward_weight * x_velocity
        healthy_reward = is_healthy.astype(jnp.float32) * self.healthy_reward
        # v5 charges the action passed to step(); Ant's ctrlrange is [-1, 1], so that is `ctrl`.
        ctrl_cost = self.ctrl_cost_weight * jnp.sum(jnp.square(ctrl))
        contact_cost = self.contact_cost_weight * jnp.sum(jnp.square(self._contact_forces(after)))
        reward = forward_reward + healthy_reward - ctrl_cost - contact_cost
        terminated = ~is_healthy & self.terminate_when_unhealthy
        info = {
            "x_position": after.qpos[0],
            "y_position": after.qpos[1],
            "distance_from_origin": jnp.linalg.norm(after.qpos[:2]),
            "x_velocity": x_velocity,
            "y_velocity": y_velocity,
            "reward_forward": forward_reward,
            "reward_ctrl": -ctrl_cost,
            "reward_contact": -contact_cost,
            "reward_survive": healthy_reward,
        }
        return reward, terminated, {k: jnp.asarray(v, jnp.float32) for k, v in info.items()}

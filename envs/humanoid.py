"""Humanoid-v5: walk forward without falling (gymnasium/envs/mujoco/humanoid_v5.py).

Observation (348 by default): qpos[2:] (22), qvel (23), cinert[1:] (130), cvel[1:] (78),
qfrc_actuator[6:] (17), cfrc_ext[1:] (78), with cfrc_ext from mj_rnePostConstraint after the step
(at reset it is zero, as in gymnasium, whose reset runs only mj_forward).

Physics: humanoid.xml asks for the PGS solver, which MJX does not have. physics="v5" keeps the
XML's RK4 integrator, 0.003 s timestep, 50 iterations (line search: MuJoCo's default 50) and all
126 collision pairs and uses the Newton solver instead of PGS (measured against PGS in
docs/ENVS.md). physics="fast" is `fast_physics` below, chosen by measurement.
"""
import math

import jax.numpy as jnp
import mujoco

from envs.base import MujocoEnv


class Humanoid(MujocoEnv):
    xml_file = "humanoid.xml"
    frame_skip = 5
    forward_reward_weight = 1.25
    ctrl_cost_weight = 0.1
    contact_cost_weight = 5e-7
    contact_cost_range = (-math.inf, 10.0)
    healthy_reward = 5.0
    terminate_when_unhealthy = True
    healthy_z_range = (1.0, 2.0)
    reset_noise_scale = 1e-2
    exclude_current_positions_from_observation = True
    include_cinert_in_observation = True
    include_cvel_in_observation = True
    include_qfrc_actuator_in_observation = True
    include_cfrc_ext_in_observation = True
    needs_rne_postconstraint = True

    # physics="fast": the XML's RK4 and 0.003 s timestep with 4 Newton iterations / 8 line-search
    # steps instead of 50/50. Measured (docs/ENVS.md, "Humanoid-v5"): one env step from 128
    # gymnasium states differs from v5 by float32 noise in the median (max qvel rel 4.6e-4, one
    # state) at 4.2x v5's speed on an H200 (41k vs 9.8k env steps/s, 4096 envs). Euler 4/8 would
    # run 158k but differs from v5 by 5% (median) in qvel after one step.
    fast_physics = {"iterations": 4, "ls_iterations": 8}

    def _configure_physics(self, model: mujoco.MjModel, physics: str) -> None:
        # PGS (the XML's solver) is not in MJX; Newton is the closer of Newton/CG to PGS (docs/ENVS.md).
        model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
        super()._configure_physics(model, physics)

    def _observation(self, data):
        parts = [data.qpos[2:] if self.exclude_current_positions_from_observation else data.qpos]
        parts.append(data.qvel)
        if self.include_cinert_in_observation:
            parts.append(data._impl.cinert[1:].ravel())
        if self.include_cvel_in_observation:
            parts.append(data.cvel[1:].ravel())
        if self.include_qfrc_actuator_in_observation:
            parts.append(data.qfrc_actuator[6:])
        if self.include_cfrc_ext_in_observation:
            parts.append(data._impl.cfrc_ext[1:].ravel())
        return jnp.concatenate(parts).astype(jnp.float32)

    def _mass_center_xy(self, data):
        mass = jnp.asarray(self.mj_model.body_mass, jnp.float32)
        return (mass @ data.xipos / mass.sum())[:2]

    def _reward_and_termination(self, before, after, ctrl):
        x_velocity, y_velocity = (self._mass_center_xy(after) - self._mass_center_xy(before)) / self.dt
        min_z, max_z = self.healthy_z_range
        z = after.qpos[2]
        is_healthy = (min_z < z) & (z < max_z)
        forward_reward = self.forward_reward_weight * x_velocity
        healthy_reward = is_healthy.astype(jnp.float32) * self.healthy_reward
        ctrl_cost = self.ctrl_cost_weight * jnp.sum(jnp.square(ctrl))
        contact_cost = jnp.clip(
            self.contact_cost_weight * jnp.sum(jnp.square(after._impl.cfrc_ext)),
            *self.contact_cost_range,
        )
        reward = forward_reward + healthy_reward - ctrl_cost - contact_cost
        terminated = ~is_healthy & self.terminate_when_unhealthy
        info = {
            "x_position": after.qpos[0],
            "y_position": after.qpos[1],
            "distance_from_origin": jnp.linalg.norm(after.qpos[:2]),
            "x_velocity": x_velocity,
            "y_velocity": y_velocity,
            "reward_survive": healthy_reward,
            "reward_forward": forward_reward,
            "reward_ctrl": -ctrl_cost,
            "reward_contact": -contact_cost,
        }
        return reward, terminated, {k: jnp.asarray(v, jnp.float32) for k, v in info.items()}

"""Walker2d-v5: walk forward on two legs (gymnasium/envs/mujoco/walker2d_v5.py).

v5 defaults: model walker2d_v5.xml (both feet with friction 0.9), frame_skip 4 (dt 0.008),
reward = x_velocity + healthy_reward * is_healthy - 1e-3 * |a|^2; terminated when unhealthy:
healthy iff z = qpos[1] in (0.8, 2.0) and angle = qpos[2] in (-1, 1) (strict).
Reset qpos, qvel ~ U(+-5e-3). Observation = qpos[1:], clip(qvel, -10, 10) -> 17 values.

Observation, reward and termination are Hopper-v5's formulas word for word (the two v5 files
share them); only the model, the health test and its ranges differ, so Walker2d subclasses Hopper.
"""
from envs.hopper import Hopper, _inside


class Walker2d(Hopper):
    xml_file = "walker2d_v5.xml"
    healthy_z_range = (0.8, 2.0)
    healthy_angle_range = (-1.0, 1.0)
    healthy_state_range = None  # Walker2d's health test has no state bound
    # physics="fast": the XML's RK4 with Newton capped at 4 / 8 line-search steps. Measured (CPU,
    # 32 envs, one-step vs gymnasium's v5): same error as "v5" (obs 1.2e-4), ~1.6-2.2x the
    # steps/s; 2/4 iterations miss qvel by 1.8, Euler by 5.0 (one step, max over 128 states).
    fast_physics = {"iterations": 4, "ls_iterations": 8}

    def is_healthy(self, data):
        z, angle = data.qpos[1], data.qpos[2]
        return _inside(z, self.healthy_z_range) & _inside(angle, self.healthy_angle_range)

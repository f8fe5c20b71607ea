"""The environment interface: a Gymnasium MuJoCo v5 task as pure, jit- and vmap-able functions.

Every task loads the MJCF file that ships inside the installed gymnasium package, so the model is
exactly the one Gymnasium v5 simulates. A task subclass only says what v5 says: its XML, frame
skip, reset noise, observation, reward and termination. Stepping, action scaling and the time
limit live here, once.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from flax import struct
from mujoco import mjx

import gymnasium

PHYSICS = ("v5", "fast")
GYMNASIUM_ASSETS = os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets")


@struct.dataclass
class State:
    """One environment's state (add a leading [N] axis to every leaf under vmap).

    data: the full MJX physics state. obs: [obs_size] float32. reward: [] float32.
    terminated: [] bool, the task's own end (a fall): do not bootstrap.
    truncated: [] bool, the time limit was reached: bootstrap from obs.
    steps: [] int32, env steps taken in this episode.
    info: per-step scalars (reward terms, positions) for logging.
    """

    data: mjx.Data
    obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    steps: jax.Array
    info: dict[str, jax.Array]


def gymnasium_model(xml_file: str) -> mujoco.MjModel:
    """Loads one of the MJCF files that ship with gymnasium (not a copy of it)."""
    return mujoco.MjModel.from_xml_path(os.path.join(GYMNASIUM_ASSETS, xml_file))


class MujocoEnv:
    """Base of the nine v5 ports. Subclasses set the class attributes and implement
    `_reset_qpos_qvel`, `_observation` and `_reward_and_termination`.

    Agent actions live in [-1, 1]^action_size; they map linearly onto the actuators' ctrlrange.
    """

    xml_file: str
    frame_skip: int
    max_episode_steps: int = 1000
    # gymnasium calls mj_rnePostConstraint after every step; only cfrc_ext/cacc/cfrc_int change,
    # so tasks whose observation holds none of them skip its cost.
    needs_rne_postconstraint: bool = False

    def __init__(self, physics: str = "v5", **overrides: Any):
        if physics not in PHYSICS:
            raise ValueError(f"physics must be one of {PHYSICS}, got {physics!r}")
        for name, value in overrides.items():
            if not hasattr(self, name) or name.startswith("_"):
                raise TypeError(f"{type(self).__name__} has no setting {name!r}")
            setattr(self, name, value)
        self.physics = physics
        self.mj_model = gymnasium_model(self.xml_file)
        self._configure_physics(self.mj_model, physics)
        self.mjx_model = mjx.put_model(self.mj_model)
        self.init_qpos = jnp.asarray(self.mj_model.qpos0, jnp.float32)
        self.init_qvel = jnp.zeros(self.mj_model.nv, jnp.float32)
        ctrl_range = np.asarray(self.mj_model.actuator_ctrlrange, np.float32)
        self._ctrl_low, self._ctrl_high = jnp.asarray(ctrl_range[:, 0]), jnp.asarray(ctrl_range[:, 1])
        self.action_size = int(self.mj_model.nu)
        self.observation_size = int(
            jax.eval_shape(self._observation, mjx.make_data(self.mjx_model)).shape[0]
        )

    # --- what a task defines -------------------------------------------------------------
    def _configure_physics(self, model: mujoco.MjModel, physics: str) -> None:
        """Edits solver settings in place. "v5" keeps the XML's; tasks override for "fast"."""

    def _reset_qpos_qvel(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError

    def _observation(self, data: mjx.Data) -> jax.Array:
        raise NotImplementedError

    def _reward_and_termination(
        self, before: mjx.Data, after: mjx.Data, ctrl: jax.Array
    ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        """-> (reward [], terminated [] bool, info). `ctrl` is in actuator units."""
        raise NotImplementedError

    # --- the public interface --------------------------------------------------------------
    def reset(self, key: jax.Array) -> State:
        """A fresh random initial state with v5's reset noise."""
        qpos, qvel = self._reset_qpos_qvel(key)
        return self.reset_to(qpos, qvel)

    def reset_to(self, qpos: jax.Array, qvel: jax.Array) -> State:
        """Starts an episode from a given physics state (like gymnasium's set_state)."""
        data = mjx.make_data(self.mjx_model)
        data = data.replace(qpos=jnp.asarray(qpos, jnp.float32), qvel=jnp.asarray(qvel, jnp.float32))
        data = mjx.forward(self.mjx_model, data)
        zero = jnp.zeros((), jnp.float32)
        _, _, info = jax.eval_shape(self._reward_and_termination, data, data, self._ctrl_low)
        return State(
            data=data,
            obs=self._observation(data),
            reward=zero,
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            steps=jnp.zeros((), jnp.int32),
            info={k: jnp.zeros(v.shape, v.dtype) for k, v in info.items()},
        )

    def step(self, state: State, action: jax.Array) -> State:
        """Applies `action` ([action_size], in [-1, 1]) for frame_skip physics steps."""
        if jnp.shape(action) != (self.action_size,):
            raise ValueError(
                f"{type(self).__name__}.step expects an action of shape ({self.action_size},), "
                f"got {jnp.shape(action)}; use envs.VecEnv for batches"
            )
        ctrl = self.scale_action(action)
        data = state.data.replace(ctrl=ctrl)
        data = jax.lax.fori_loop(0, self.frame_skip, lambda _, d: mjx.step(self.mjx_model, d), data)
        if self.needs_rne_postconstraint:
            data = mjx.rne_postconstraint(self.mjx_model, data)
        reward, terminated, info = self._reward_and_termination(state.data, data, ctrl)
        steps = state.steps + 1
        return State(
            data=data,
            obs=self._observation(data),
            reward=reward.astype(jnp.float32),
            terminated=terminated,
            truncated=steps >= self.max_episode_steps,
            steps=steps,
            info=info,
        )

    def scale_action(self, action: jax.Array) -> jax.Array:
        """[-1, 1] -> ctrlrange, linearly; out-of-range actions are clipped as MuJoCo would."""
        action = jnp.clip(action, -1.0, 1.0)
        return self._ctrl_low + (action + 1.0) * 0.5 * (self._ctrl_high - self._ctrl_low)

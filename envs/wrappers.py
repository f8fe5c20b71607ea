"""N environments as one: vectorised stepping with auto-reset and episode statistics."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from envs.base import MujocoEnv, State


@struct.dataclass
class VecState:
    """The state of N environments. Every leaf has a leading [N] axis.

    env_state: the per-env State; where an episode just ended it already holds the new episode.
    obs: [N, obs] what the policy acts on next (a fresh reset observation after an episode end).
    next_obs: [N, obs] the true successor observation of the last transition (the final
        observation at an episode end: bootstrap from this, not from `obs`).
    reward, terminated, truncated: [N] of the last transition; terminated and truncated distinct.
    episode_return, episode_length: [N] running totals of the current episode.
    done_return, done_length: [N] totals of the episode that ended on the last step, else 0.
    key: [N] typed or [N, 2] raw per-env PRNG keys, split at every reset so that each
        episode starts somewhere new.
    """

    env_state: State
    obs: jax.Array
    next_obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array
    done_return: jax.Array
    done_length: jax.Array
    key: jax.Array


class VecEnv:
    """Steps `num_envs` copies of `env`; an ended episode restarts from a fresh random state.

    Unlike brax's AutoResetWrapper (which returns to a cached first state), every reset draws new
    reset noise from the env's own key.
    """

    def __init__(self, env: MujocoEnv, num_envs: int):
        if num_envs <= 0:
            raise ValueError(f"num_envs must be positive, got {num_envs}")
        self.env = env
        self.num_envs = num_envs
        self.observation_size = env.observation_size
        self.action_size = env.action_size

    def reset(self, key: jax.Array) -> VecState:
        keys = jax.random.split(key, self.num_envs)
        reset_keys, carry_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
        env_state = jax.vmap(self.env.reset)(reset_keys)
        zeros = jnp.zeros(self.num_envs, jnp.float32)
        zeros_int = jnp.zeros(self.num_envs, jnp.int32)
        falses = jnp.zeros(self.num_envs, bool)
        return VecState(
            env_state=env_state,
            obs=env_state.obs,
            next_obs=env_state.obs,
            reward=zeros,
            terminated=falses,
            truncated=falses,
            episode_return=zeros,
            episode_length=zeros_int,
            done_return=zeros,
            done_length=zeros_int,
            key=carry_keys,
        )

    def step(self, vstate: VecState, action: jax.Array) -> VecState:
        """action: [N, action_size] in [-1, 1]."""
        expected = (self.num_envs, self.action_size)
        if jnp.shape(action) != expected:
            raise ValueError(f"VecEnv.step expects actions of shape {expected}, got {jnp.shape(action)}")
        stepped = jax.vmap(self.env.step)(vstate.env_state, action)
        done = stepped.terminated | stepped.truncated
        episode_return = vstate.episode_return + stepped.reward
        episode_length = vstate.episode_length + 1

        reset_keys, carry_keys = jax.vmap(jax.random.split, out_axes=1)(vstate.key)

        def where_done(new, old):
            return jnp.where(done.reshape(done.shape + (1,) * (new.ndim - 1)), new, old)

        def reset_where_done(stepped: State) -> State:
            fresh = jax.vmap(self.env.reset)(reset_keys)
            return jax.tree.map(where_done, fresh, stepped)

        # Resets cost a kinematics pass per env (`MujocoEnv._reset_pass`); skip it when no episode ends.
        env_state = jax.lax.cond(done.any(), reset_where_done, lambda s: s, stepped)
        return VecState(
            env_state=env_state,
            obs=env_state.obs,
            next_obs=stepped.obs,
            reward=stepped.reward,
            terminated=stepped.terminated,
            truncated=stepped.truncated,
            episode_return=jnp.where(done, 0.0, episode_return),
            episode_length=jnp.where(done, 0, episode_length),
            done_return=jnp.where(done, episode_return, 0.0),
            done_length=jnp.where(done, episode_length, 0),
            key=where_done(carry_keys, vstate.key),
        )

"""The replay buffer: a fixed-capacity ring of device arrays, filled N transitions at a time."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Transition:
    """One transition per row: obs/next_obs [..., O] raw (unnormalised), action [..., A] in
    [-1, 1], reward [...], terminated [...] (1.0 where the episode truly ended; a time-limit
    truncation stays 0.0 and bootstraps from next_obs, the true final observation)."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array


@struct.dataclass
class ReplayBuffer:
    data: Transition  # every leaf [capacity, ...]
    insert_at: jax.Array  # [] int32: the next row to write
    size: jax.Array  # [] int32: rows holding data


def transition_bytes(observation_size: int, action_size: int) -> int:
    """Bytes one stored transition takes (float32 everywhere)."""
    return 4 * (2 * observation_size + action_size + 2)


def init_buffer(capacity: int, observation_size: int, action_size: int) -> ReplayBuffer:
    data = Transition(
        obs=jnp.zeros((capacity, observation_size), jnp.float32),
        action=jnp.zeros((capacity, action_size), jnp.float32),
        reward=jnp.zeros((capacity,), jnp.float32),
        next_obs=jnp.zeros((capacity, observation_size), jnp.float32),
        terminated=jnp.zeros((capacity,), jnp.float32),
    )
    return ReplayBuffer(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def insert(buffer: ReplayBuffer, batch: Transition) -> ReplayBuffer:
    """Writes N rows at the ring position, wrapping around: O(N) work, never a roll of the buffer."""
    capacity = buffer.data.reward.shape[0]
    n = batch.reward.shape[0]
    rows = (buffer.insert_at + jnp.arange(n)) % capacity
    data = jax.tree.map(lambda store, new: store.at[rows].set(new.astype(store.dtype)), buffer.data, batch)
    return ReplayBuffer(
        data=data,
        insert_at=(buffer.insert_at + n) % capacity,
        size=jnp.minimum(buffer.size + n, capacity),
    )


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Transition:
    """B rows drawn uniformly (with replacement) from the filled part."""
    rows = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda store: store[rows], buffer.data)

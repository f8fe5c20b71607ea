"""The replay buffer: a fixed-capacity ring of device arrays, filled N transitions at a time.

Row layout: every insert writes the N envs' transitions to N consecutive rows, so with a capacity
that divides by N, row r + N holds the same env one step later. n-step returns walk that stride.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Transition:
    """One transition per row: obs/next_obs [..., O] raw (unnormalised), action [..., A] in
    [-1, 1], reward [...], terminated [...] (1.0 where the episode truly ended; a time-limit
    truncation stays 0.0 and bootstraps from next_obs, the true final observation), truncated
    [...] (1.0 at a time-limit end; stored only for n-step returns, None otherwise, so one-step
    buffers and their checkpoints are unchanged)."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    truncated: Optional[jax.Array] = None


@struct.dataclass
class Bootstrap:
    """The critic's TD target for one sampled row: y = reward + discount * V(next_obs).

    reward [B]: the discounted sum of the m <= n rewards from the row on; next_obs [B, O] raw:
    the observation after the m-th step; discount [B]: gamma^m (1 - terminated at the m-th step).
    With n = 1 it is the one-step target (r, s', gamma (1 - term))."""

    reward: jax.Array
    next_obs: jax.Array
    discount: jax.Array


@struct.dataclass
class ReplayBuffer:
    data: Transition  # every leaf [capacity, ...]
    insert_at: jax.Array  # [] int32: the next row to write
    size: jax.Array  # [] int32: rows holding data


def transition_bytes(observation_size: int, action_size: int, n_step: int = 1) -> int:
    """Bytes one stored transition takes (float32 everywhere; n-step adds the truncation flag)."""
    return 4 * (2 * observation_size + action_size + 2 + (n_step > 1))


def init_buffer(capacity: int, observation_size: int, action_size: int,
                store_truncated: bool = False) -> ReplayBuffer:
    data = Transition(
        obs=jnp.zeros((capacity, observation_size), jnp.float32),
        action=jnp.zeros((capacity, action_size), jnp.float32),
        reward=jnp.zeros((capacity,), jnp.float32),
        next_obs=jnp.zeros((capacity, observation_size), jnp.float32),
        terminated=jnp.zeros((capacity,), jnp.float32),
        truncated=jnp.zeros((capacity,), jnp.float32) if store_truncated else None,
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


def sample_rows(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> jax.Array:
    """[B] int32 rows drawn uniformly (with replacement) from the filled part."""
    return jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))


def gather(buffer: ReplayBuffer, rows: jax.Array) -> Transition:
    """The one-step transitions at `rows` [B]."""
    return jax.tree.map(lambda store: store[rows], buffer.data)


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Transition:
    """B one-step transitions drawn uniformly (with replacement) from the filled part."""
    return gather(buffer, sample_rows(buffer, key, batch_size))


def one_step_bootstrap(batch: Transition, gamma: jax.Array) -> Bootstrap:
    """The one-step target of a batch: (r, s', gamma (1 - term)); truncation still bootstraps."""
    return Bootstrap(reward=batch.reward, next_obs=batch.next_obs,
                     discount=jnp.asarray(gamma, jnp.float32) * (1.0 - batch.terminated))


def n_step_bootstrap(buffer: ReplayBuffer, rows: jax.Array, n: int, num_envs: int,
                     gamma: jax.Array) -> Bootstrap:
    """The n-step target of the transitions at `rows` [B] (`gamma` may be traced).

    From each row it follows the same env forward (stride `num_envs`, which must divide the
    capacity) for up to n steps, and stops early after the step where the episode ended
    (terminated or truncated: the next row starts a fresh episode) or at the newest row written,
    so the return never crosses an episode or reaches into data not yet collected. A shorter
    m-step return is still an unbiased target for the stored action; the discount says how far
    it reached. n = 1 is exactly the one-step target.
    """
    data = buffer.data
    slots = data.reward.shape[0] // num_envs
    slot, env = rows // num_envs, rows % num_envs
    newest = (buffer.insert_at // num_envs - 1) % slots
    available = (newest - slot) % slots + 1  # steps from this row to the newest written, inclusive
    gamma = jnp.asarray(gamma, jnp.float32)
    reward = jnp.zeros(rows.shape, jnp.float32)
    scale = jnp.ones(rows.shape, jnp.float32)  # gamma^(steps taken)
    last = rows
    going = jnp.ones(rows.shape, bool)
    for k in range(n):
        row = ((slot + k) % slots) * num_envs + env
        take = going & (k < available)
        reward = reward + jnp.where(take, scale * data.reward[row], 0.0)
        scale = jnp.where(take, scale * gamma, scale)
        last = jnp.where(take, row, last)
        if k + 1 < n:
            going = take & (data.terminated[row] == 0) & (data.truncated[row] == 0)
    return Bootstrap(reward=reward, next_obs=data.next_obs[last],
                     discount=scale * (1.0 - data.terminated[last]))

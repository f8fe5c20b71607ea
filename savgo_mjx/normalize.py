"""Running observation statistics (mean and variance over every observation seen)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningStats:
    """mean, var: [obs_size]; count: [] float32 (float so it never overflows)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array


def init_stats(size: int) -> RunningStats:
    return RunningStats(jnp.zeros(size), jnp.ones(size), jnp.zeros(()))


def update_stats(stats: RunningStats, batch: jax.Array, axis_name: str | None = None) -> RunningStats:
    """Merges a batch [N, obs_size] into the statistics (Chan et al.'s parallel update).
    With `axis_name`, the batch is this shard's part of a batch split over that named axis in
    equal parts, and every shard merges the whole batch's moments (so all keep the same stats)."""
    n = batch.shape[0]
    batch_mean = batch.mean(axis=0)
    batch_var = batch.var(axis=0)
    if axis_name is not None:
        local_mean = batch_mean
        batch_mean = jax.lax.pmean(local_mean, axis_name)
        batch_var = jax.lax.pmean(batch_var + (local_mean - batch_mean) ** 2, axis_name)
        n = n * jax.lax.psum(1, axis_name)
    total = stats.count + n
    delta = batch_mean - stats.mean
    mean = stats.mean + delta * n / total
    m2 = stats.var * stats.count + batch_var * n + delta**2 * stats.count * n / total
    return RunningStats(mean, m2 / total, total)


def normalize(stats: RunningStats, obs: jax.Array, enabled: bool = True) -> jax.Array:
    """obs [..., obs_size] -> standardised obs. Disabled normalisation is the identity."""
    if not enabled:
        return obs
    return (obs - stats.mean) / jnp.sqrt(stats.var + 1e-8)

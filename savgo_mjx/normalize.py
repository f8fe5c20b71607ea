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


def update_stats(stats: RunningStats, batch: jax.Array) -> RunningStats:
    """Merges a batch [N, obs_size] into the statistics (Chan et al.'s parallel update)."""
    n = batch.shape[0]
    batch_mean = batch.mean(axis=0)
    batch_var = batch.var(axis=0)
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

"""Running observation statistics (mean and variance over every observation seen)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

STD_FLOOR = 1e-2
"""Smallest standard deviation an observation is divided by. Humanoid and Ant observe contact
forces (cfrc_ext) that stay exactly 0 until a body touches the ground, and body masses that never
change: with a float32 variance of 0 (or of rounding noise), a bare 1e-8 epsilon turned the first
contact of 100 N into an input of 1e7 and the first critic loss into ~1e7. FastTD3's normaliser
adds 1e-2 to the std for the same reason."""

CLIP = 10.0
"""Standardised observations are clipped to [-CLIP, CLIP] (SB3's VecNormalize default): a
heavy-tailed dim (a contact force 50 stds out) cannot dominate a network's input."""


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
    """obs [..., obs_size] -> standardised obs in [-CLIP, CLIP]. Disabled normalisation is the
    identity. `savgo_mjx.policy.Policy.normalize` is the numpy twin used for Gymnasium evaluation."""
    if not enabled:
        return obs
    std = jnp.sqrt(jnp.maximum(stats.var, STD_FLOOR**2))
    return jnp.clip((obs - stats.mean) / std, -CLIP, CLIP)

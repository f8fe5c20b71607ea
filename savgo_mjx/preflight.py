"""Memory preflight: refuse a run whose buffer and batches cannot fit, before allocating them."""
from __future__ import annotations

import os

import jax

from savgo_mjx.config import Config, ConfigError, shard_config
from savgo_mjx.replay import transition_bytes

GB = 1024**3


def footprint_bytes(cfg: Config, observation_size: int, action_size: int, env_state_bytes: int) -> dict[str, int]:
    """Estimated device bytes of a run, by part.

    buffer: the replay ring. envs: N env states (training) plus the eval envs. update: the largest
    live activations of one update, dominated by the P x K candidate forward passes through the
    embedding (4 layers) and the twin critics (2 x 2 layers), with their backward pass, plus the
    M x M geometry matrices.
    """
    h = cfg.hidden
    ha, hc = cfg.actor_hidden or h, cfg.critic_hidden or h
    pk = cfg.actor_batch * cfg.num_candidates
    per_candidate = observation_size + action_size + 4 * h + 2 * 2 * hc + 2
    update = 4 * (2 * pk * per_candidate + 8 * cfg.geometry_batch**2
                  + 3 * cfg.batch_size * (2 * observation_size + action_size + 2 * ha + 4 * hc + 2 * h))
    return {
        "buffer": cfg.buffer_size * transition_bytes(observation_size, action_size, cfg.n_step),
        "envs": (cfg.num_envs + cfg.eval_envs) * env_state_bytes * 2,
        "update": update,
    }


def free_device_bytes(device: jax.Device | None = None) -> int:
    """Free memory of the device: the allocator's limit minus use on GPU, available RAM on CPU."""
    device = device or jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(cfg: Config, observation_size: int, action_size: int, env_state_bytes: int,
                 free_bytes: int | None = None, headroom: float = 0.85,
                 num_members: int = 1) -> dict[str, int]:
    """Raises ConfigError with a capacity that would fit when the run needs too much memory.
    Every member (seed, swept setting) has its own buffer, envs and update activations; with
    --devices D each device holds one shard of them (`shard_config`), and that is what must fit
    into the first device's free memory. Returns one device's parts."""
    local = shard_config(cfg)
    parts = {k: v * num_members
             for k, v in footprint_bytes(local, observation_size, action_size, env_state_bytes).items()}
    free = free_device_bytes() if free_bytes is None else free_bytes
    budget = int(free * headroom)
    total = sum(parts.values())
    if total > budget:
        rest = total - parts["buffer"]
        row = num_members * transition_bytes(observation_size, action_size, cfg.n_step)
        fits = max(0, (budget - rest) // row)
        if cfg.n_step > 1:  # n-step returns need whole vector steps
            fits = fits // local.num_envs * local.num_envs
        fits = fits * cfg.devices  # the flag counts all shards
        detail = ", ".join(f"{k} {v / GB:.2f} GB" for k, v in parts.items())
        hint = (f"try --buffer-size {fits:,}".replace(",", "_") if fits >= cfg.batch_size
                else "reduce --num-envs, --actor-batch or --num-candidates")
        where = "each device needs" if cfg.devices > 1 else "the run needs"
        raise ConfigError(
            f"{where} about {total / GB:.2f} GB ({detail}) but the device has "
            f"{free / GB:.2f} GB free ({headroom:.0%} usable); {hint}"
        )
    return parts

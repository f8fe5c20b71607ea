"""The host side of a run: set up, then alternate device chunks with logging, evaluation and
checkpoints. Nothing here runs per environment step."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import envs
from savgo_mjx.checkpoint import Checkpointer
from savgo_mjx.config import Config, validate
from savgo_mjx.metrics import MetricsLogger
from savgo_mjx.preflight import check_memory
from savgo_mjx.trainer import Trainer

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "savgo-mjx", "jax")
WATCHED = ("critic_loss", "geometry_loss", "actor_loss", "alpha_loss", "q_mean", "alpha")


class TrainingDiverged(RuntimeError):
    """A loss or parameter became NaN or infinite; the message names which and when."""


def configure_jax(cache_dir: str | None = DEFAULT_CACHE) -> None:
    """Full float32 matmuls (TF32 defaults have produced NaNs with MJX) and the persistent
    compilation cache, so a second run of the same program skips most of its compile."""
    jax.config.update("jax_default_matmul_precision", "highest")
    cache_dir = os.environ.get("SAVGO_MJX_CACHE", cache_dir)
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def default_run_dir(cfg: Config) -> str:
    return os.path.join("runs", f"{cfg.env}-{cfg.algo}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}")


def _tree_bytes(tree) -> int:
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def train(cfg: Config) -> dict:
    """Trains according to `cfg`; returns a summary (run_dir, env_steps, final eval return...).

    Raises ConfigError for impossible settings (before allocating anything), TrainingDiverged when
    a loss or parameter goes non-finite. Ctrl-C saves a checkpoint, then re-raises.
    """
    validate(cfg)
    env = envs.make(cfg.env, physics=cfg.physics)
    trainer = Trainer(cfg, env)
    env_state_bytes = _tree_bytes(jax.eval_shape(env.reset, jax.random.PRNGKey(0)))
    check_memory(cfg, env.observation_size, env.action_size, env_state_bytes)

    run_dir = cfg.run_dir or default_run_dir(cfg)
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(dataclasses.replace(cfg, run_dir=run_dir)), f, indent=2)

    checkpointer = Checkpointer(run_dir, save_buffer=cfg.save_buffer)
    ts = jax.jit(trainer.init)(cfg.seed)
    if cfg.resume:
        ts = checkpointer.restore(ts)
    start_steps = int(ts.env_steps)

    t0 = time.perf_counter()
    chunk = jax.jit(trainer.run_chunk, donate_argnums=0).lower(ts, jnp.int32(1)).compile()
    evaluate = jax.jit(trainer.evaluate)
    compile_s = time.perf_counter() - t0

    total_iterations = math.ceil(cfg.total_steps / cfg.num_envs)
    chunk_iterations = max(1, cfg.log_every // cfg.num_envs)
    logger = MetricsLogger(cfg, run_dir, initial_steps=start_steps)
    logger.print(f"run dir {run_dir}; {cfg.num_envs} envs; compiled in {compile_s:.1f} s")
    last_saved = checkpointer.latest_step()
    eval_return = None
    steps = start_steps
    try:
        wall0 = time.perf_counter()
        while int(ts.iteration) < total_iterations:
            n = min(chunk_iterations, total_iterations - int(ts.iteration))
            tick = time.perf_counter()
            ts, metrics = chunk(ts, jnp.int32(n))
            metrics = jax.device_get(metrics)
            elapsed = time.perf_counter() - tick
            steps = int(ts.env_steps)
            _check_finite(metrics, steps, last_saved, run_dir)

            row = {"env_steps": steps, "wall_s": time.perf_counter() - wall0 + compile_s,
                   "sps": n * cfg.num_envs / elapsed}
            row.update({k: v for k, v in metrics.items() if k != "params_finite"})
            finished = int(ts.iteration) >= total_iterations
            if finished or (cfg.eval_every and steps // cfg.eval_every > (steps - n * cfg.num_envs) // cfg.eval_every):
                returns = np.asarray(evaluate(ts, jax.random.fold_in(jax.random.PRNGKey(cfg.seed + 1), steps)))
                eval_return = float(returns.mean())
                row.update(eval_return=eval_return, eval_return_std=float(returns.std()))
            logger.log(row)
            if finished or (cfg.checkpoint_every and steps // cfg.checkpoint_every
                            > (steps - n * cfg.num_envs) // cfg.checkpoint_every):
                last_saved = checkpointer.save(ts)
    except KeyboardInterrupt:
        jax.block_until_ready(ts)
        if _finite_params(ts):
            last_saved = checkpointer.save(ts)
            logger.print(f"interrupted: saved a checkpoint at {last_saved} env steps in {run_dir}; "
                         f"continue with --resume --run-dir {run_dir}")
        raise
    finally:
        logger.close()
        checkpointer.close()
    return {"run_dir": run_dir, "env_steps": steps, "eval_return": eval_return,
            "compile_s": compile_s, "wall_s": time.perf_counter() - t0}


def _finite_params(ts) -> bool:
    params = (ts.agent.actor, ts.agent.critic, ts.agent.embed)
    return all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(params))


def _check_finite(metrics: dict, steps: int, last_saved: int | None, run_dir: str) -> None:
    bad = [k for k in WATCHED if k in metrics and not np.isfinite(metrics[k])]
    if not metrics["params_finite"]:
        bad.append("network parameters")
    if bad:
        kept = (f"the last good checkpoint ({last_saved} env steps) in {run_dir} is kept"
                if last_saved is not None else "no checkpoint had been written yet")
        raise TrainingDiverged(f"non-finite {', '.join(bad)} by env step {steps}; {kept}")

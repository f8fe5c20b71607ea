"""brax's own PPO on our Gymnasium-v5 MJX tasks: the peer baseline beside SAVGO, same env, same machine.

    python benchmarks/brax_ppo.py --env humanoid --time-box 300 --run-dir runs/ppo_humanoid
    python -m savgo_mjx.report runs/ppo_humanoid runs/savgo_humanoid   # one figure, both curves

brax's PPO (`brax.training.agents.ppo.train`, unchanged) trains on our v5 task through a small
adapter (`BraxEnv`): brax's wrappers (vmap, episode length 1000, auto-reset) drive our env's pure
`reset`/`step`, so the reward, observation, termination and action range are Gymnasium v5's, not
those of brax's own humanoid. Two of brax's habits stay as brax users know them, and differ from
our trainer: its auto-reset returns an env to the state of its first reset (no new reset noise),
and it bootstraps nothing at the time limit unless asked. Its hyperparameters default to brax's
published humanoid PPO settings (2048 envs, batch 1024, 32 minibatches, 8 updates per batch,
unroll 10, gamma 0.97, lr 3e-4, entropy 1e-3, reward scaling 0.1, observation normalisation).

Output: RUN_DIR/config.json and metrics.jsonl in train.py's layout (algo "brax-ppo"; one row per
evaluation: env_steps, wall_s from the start of `ppo.train` (its compile included, as train.py's
wall_s), eval_return = the mean return of `--eval-envs` deterministic episodes), written as each
evaluation arrives, so a run stopped by `--time-box` or Ctrl-C keeps every row it had.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import envs  # noqa: E402
from savgo_mjx.config import Config  # noqa: E402
from savgo_mjx.train_loop import configure_jax  # noqa: E402


def patch_brax_for_new_jax() -> None:
    """brax 0.14.2's PPO on jax >= 0.10, without its recompiles.

    - jax.device_put_replicated / device_put_sharded, which brax calls and jax 0.10 removed
      (../shared/gpu/README.md), come back as an identity pmap over brax's own axis name, so the
      first training epoch sees the layout its later calls get from the previous epoch.
    - brax hands the evaluation its policy parameters sliced out of pmap outputs, and jax 0.10
      keeps pmap's mesh axis in their types; the evaluation's state, fed back into the next
      evaluation, then changed type at each of the first calls. Measured on CPU with
      JAX_EXPLAIN_CACHE_MISSES=1: the evaluation program compiled 3-4 times and the training epoch
      twice in a 3-epoch run. The parameters now reach the evaluation as plain arrays (a host round
      trip of the small policy, once per evaluation)."""
    import numpy as np
    from brax.training.agents.ppo import train as ppo_train

    def sharded(xs, devices):
        stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *xs)
        return jax.pmap(lambda tree: tree, axis_name=ppo_train._PMAP_AXIS_NAME, devices=devices)(stacked)

    jax.device_put_sharded = sharded
    jax.device_put_replicated = lambda x, devices: sharded([x] * len(devices), devices)
    ppo_train._unpmap = lambda tree: jax.tree.map(
        lambda x: jnp.asarray(np.asarray(x.addressable_shards[0].data)[0]), tree)


def make_brax_env(name: str, physics: str):
    """Our v5 task as a brax `Env` (one env; brax's wrappers add the batch axis).

    brax's State.pipeline_state holds our whole env State (physics data, step counter, info), so
    brax's auto-reset, which swaps pipeline_state back to the first one, resets all of it."""
    from brax.envs.base import Env, State as BraxState

    ours = envs.make(name, physics=physics)

    class BraxEnv(Env):
        observation_size = ours.observation_size
        action_size = ours.action_size
        backend = "mjx"

        def reset(self, rng: jax.Array) -> BraxState:
            s = ours.reset(rng)
            return BraxState(pipeline_state=s, obs=s.obs, reward=s.reward, done=s.terminated.astype(jnp.float32))

        def step(self, state: BraxState, action: jax.Array) -> BraxState:
            # brax's EpisodeWrapper applies the 1000-step limit itself; our own limit is the same.
            s = ours.step(state.pipeline_state, action)
            return state.replace(pipeline_state=s, obs=s.obs, reward=s.reward,
                                 done=s.terminated.astype(jnp.float32))

    return BraxEnv()


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="humanoid", choices=sorted(envs.REGISTRY))
    p.add_argument("--physics", default="fast", choices=envs.base.PHYSICS)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--total-steps", type=int, default=50_000_000)
    p.add_argument("--eval-every", type=int, default=1_000_000, help="env steps between evaluations")
    p.add_argument("--eval-envs", type=int, default=16, help="deterministic evaluation episodes")
    p.add_argument("--time-box", type=float, default=0.0, help="stop after this many seconds (0: none)")
    p.add_argument("--num-envs", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--num-minibatches", type=int, default=32)
    p.add_argument("--updates-per-batch", type=int, default=8)
    p.add_argument("--unroll-length", type=int, default=10)
    p.add_argument("--gamma", type=float, default=0.97)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--entropy-cost", type=float, default=1e-3)
    p.add_argument("--reward-scaling", type=float, default=0.1)
    a = p.parse_args(argv)
    for name in ("total_steps", "eval_every", "eval_envs", "num_envs", "batch_size", "num_minibatches",
                 "updates_per_batch", "unroll_length"):
        if getattr(a, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(a, name)}")
    if a.batch_size * a.num_minibatches % a.num_envs:
        p.error(f"--batch-size x --num-minibatches ({a.batch_size * a.num_minibatches}) must be a multiple "
                f"of --num-envs ({a.num_envs}): brax's PPO splits each rollout into whole minibatches")
    return a


class TimeBox(Exception):
    """The time box ran out (SIGALRM) or the user pressed Ctrl-C."""


def main(argv: Optional[list[str]] = None) -> int:
    a = parse_args(argv)
    configure_jax()  # as train.py: float32 matmuls for MJX, the persistent compilation cache
    patch_brax_for_new_jax()
    from brax.training.agents.ppo import train as ppo

    os.makedirs(a.run_dir, exist_ok=True)
    config = {**dataclasses.asdict(Config(env=a.env, physics=a.physics, seed=a.seed, num_envs=a.num_envs,
                                          total_steps=a.total_steps, batch_size=a.batch_size, gamma=a.gamma,
                                          eval_every=a.eval_every, eval_envs=a.eval_envs, run_dir=a.run_dir)),
              "algo": "brax-ppo", "ppo": {k: v for k, v in vars(a).items() if k != "run_dir"}}
    with open(os.path.join(a.run_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    metrics_path = os.path.join(a.run_dir, "metrics.jsonl")
    open(metrics_path, "w").close()

    start = time.perf_counter()

    def progress(step: int, metrics: dict) -> None:
        if "eval/episode_reward" not in metrics:
            return
        row = {"env_steps": int(step), "wall_s": time.perf_counter() - start, "member": 0, "seed": a.seed,
               "eval_return": float(metrics["eval/episode_reward"]),
               "eval_return_std": float(metrics.get("eval/episode_reward_std", 0.0))}
        with open(metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"[{row['wall_s']:7.1f} s] {step:>12,} env steps  eval {row['eval_return']:9.1f}", flush=True)

    def stop(signum, frame):
        raise TimeBox(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGALRM, signal.SIGINT)}
    if a.time_box > 0:
        signal.setitimer(signal.ITIMER_REAL, a.time_box)
    env = make_brax_env(a.env, a.physics)
    try:
        ppo.train(environment=env, num_timesteps=a.total_steps, num_evals=a.total_steps // a.eval_every + 1,
                  episode_length=1000, num_envs=a.num_envs, batch_size=a.batch_size,
                  num_minibatches=a.num_minibatches, num_updates_per_batch=a.updates_per_batch,
                  unroll_length=a.unroll_length, discounting=a.gamma, learning_rate=a.lr,
                  entropy_cost=a.entropy_cost, reward_scaling=a.reward_scaling, normalize_observations=True,
                  num_eval_envs=a.eval_envs, deterministic_eval=True, seed=a.seed, progress_fn=progress)
        how = "finished"
    except TimeBox as e:
        how = f"stopped by {e}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"brax PPO on {a.env} ({a.physics}): {how} after {time.perf_counter() - start:.1f} s; "
          f"rows in {metrics_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

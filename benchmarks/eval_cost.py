"""What one evaluation costs, by backend: the deterministic policy's episodes in MJX on the
device (`--eval-backend mjx`: between chunks, while training waits) against the same episode
steps in Gymnasium's own v5 env on host threads (`--eval-backend gymnasium`: beside training, no
device time).

    python benchmarks/eval_cost.py --env humanoid --physics fast --episodes 16 --steps 100 --workers 1 2 4

Both run `--steps` steps of `--episodes` episodes of one freshly initialised actor (the preset's
width): MJX steps all episodes as one vmapped batch per step (a fallen humanoid keeps stepping),
Gymnasium runs each episode in its own env on one of `--workers` threads (resetting when it
ends). Figures are per evaluation of `--episodes` episodes of 1000 steps (a full Humanoid
episode, i.e. a good policy), scaled from `--steps`; the MJX time is the best of `--repeats`
calls after a compiling first call, Gymnasium's the best of `--repeats` runs per thread count.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import envs  # noqa: E402
from savgo_mjx.agent import Agent  # noqa: E402
from savgo_mjx.config import defaults_for  # noqa: E402
from savgo_mjx.evaluate import make_gym_env  # noqa: E402
from savgo_mjx.normalize import init_stats, normalize  # noqa: E402
from savgo_mjx.policy import make_policy  # noqa: E402
from savgo_mjx.train_loop import configure_jax  # noqa: E402

EPISODE = 1000
"""Steps of a full episode: what figures are scaled to."""


def mjx_eval_seconds(env, agent, actor, episodes: int, steps: int, repeats: int) -> dict:
    """Best wall time of `steps` vmapped deterministic steps of `episodes` MJX envs."""
    stats = init_stats(env.observation_size)

    @jax.jit
    def run(key):
        states = jax.vmap(env.reset)(jax.random.split(key, episodes))

        def body(states, _):
            action = agent.act_deterministic(actor, normalize(stats, states.obs))
            states = jax.vmap(env.step)(states, action)
            return states, states.reward

        return jax.lax.scan(body, states, None, length=steps)[1].sum()

    t0 = time.perf_counter()
    run(jax.random.PRNGKey(0)).block_until_ready()
    first = time.perf_counter() - t0
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        run(jax.random.PRNGKey(i + 1)).block_until_ready()
        times.append(time.perf_counter() - t0)
    return dict(first_call_s=first, best_s=min(times))


def gym_episode_steps(policy, steps: int, seed: int) -> int:
    """`steps` steps of the policy in its own Gymnasium env (reset at each episode end)."""
    env = make_gym_env(policy)
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(policy(obs))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return steps


def gym_eval_seconds(policy, episodes: int, steps: int, workers: int, repeats: int) -> float:
    """Best wall time of `episodes` x `steps` Gymnasium steps on `workers` threads."""
    times = []
    for _ in range(repeats):
        with ThreadPoolExecutor(workers) as pool:
            t0 = time.perf_counter()
            list(pool.map(lambda e: gym_episode_steps(policy, steps, e), range(episodes)))
            times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="humanoid")
    p.add_argument("--physics", default="fast", choices=sorted(envs.PHYSICS))
    p.add_argument("--episodes", type=int, default=16)
    p.add_argument("--steps", type=int, default=100, help="steps timed per episode (scaled to 1000)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="write the rows as JSON here")
    a = p.parse_args(argv)
    if min(a.episodes, a.steps, a.repeats, *a.workers) <= 0:
        p.error("--episodes, --steps, --repeats and --workers must be positive")
    configure_jax(None)
    cfg = defaults_for(a.env)
    env = envs.make(a.env, physics=a.physics)
    agent = Agent(cfg, env.observation_size, env.action_size)
    actor = agent.actor.init(jax.random.PRNGKey(0), jnp.zeros((1, env.observation_size)))
    ctrl = np.asarray(env.mj_model.actuator_ctrlrange, np.float32)
    policy = make_policy(jax.device_get(actor), None, None, ctrl[:, 0], ctrl[:, 1], {
        "env": a.env, "gym_id": envs.GYMNASIUM_IDS[a.env], "observation_size": env.observation_size,
        "action_size": env.action_size, "seed": 0, "env_steps": 0})
    scale = EPISODE / a.steps
    device = jax.devices()[0]
    common = dict(env=a.env, episodes=a.episodes, steps_timed=a.steps, device=f"{device.platform}:{device.device_kind}")

    print(f"MJX ({a.physics}) on {common['device']}: compiling ...", flush=True)
    mjx = mjx_eval_seconds(env, agent, actor, a.episodes, a.steps, a.repeats)
    rows = [dict(common, backend="mjx", physics=a.physics, workers=None, compile_s=mjx["first_call_s"],
                 s_per_eval=mjx["best_s"] * scale)]
    for w in a.workers:
        seconds = gym_eval_seconds(policy, a.episodes, a.steps, w, a.repeats)
        rows.append(dict(common, backend="gymnasium", physics="v5", workers=w, s_per_eval=seconds * scale))
    for row in rows:
        row["over_mjx"] = row["s_per_eval"] / rows[0]["s_per_eval"]
        who = "MJX, on the device" if row["backend"] == "mjx" else f"Gymnasium, {row['workers']} thread(s)"
        print(f"{who:28s} {row['s_per_eval']:8.2f} s per evaluation of {a.episodes} x {EPISODE} steps "
              f"({row['over_mjx']:.2f}x MJX)", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()

"""The training program: TrainState, one iteration, and a jitted chunk of iterations.

    iteration = act on N envs -> step them -> insert N transitions -> G gradient updates

All of it is one pure function `TrainState -> TrainState` on the device; `run_chunk` repeats it
between two log points inside a single jitted `fori_loop`, so the host only sees a few scalars
per chunk. Seeds and sweeps are a vmap over the same functions.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

import envs
from savgo_mjx.agent import Agent, AgentState, Hyper
from savgo_mjx.config import Config
from savgo_mjx.normalize import RunningStats, init_stats, normalize, update_stats
from savgo_mjx.replay import ReplayBuffer, Transition, init_buffer, insert, sample


@struct.dataclass
class TrainState:
    agent: AgentState
    hyper: Hyper
    buffer: ReplayBuffer
    obs_stats: RunningStats
    env: envs.VecState
    key: jax.Array  # [2] raw uint32 (checkpoints store it as plain data)
    env_steps: jax.Array  # [] int32, summed over all envs
    iteration: jax.Array  # [] int32


class Trainer:
    """Builds the pure functions of one config. Holds no mutable state."""

    def __init__(self, cfg: Config, env: envs.MujocoEnv):
        self.cfg = cfg
        self.env = env
        self.vec_env = envs.VecEnv(env, cfg.num_envs)
        self.agent = Agent(cfg, env.observation_size, env.action_size)

    def init(self, seed: int | jax.Array) -> TrainState:
        cfg = self.cfg
        key = jax.random.PRNGKey(seed)
        key, k_agent, k_env = jax.random.split(key, 3)
        return TrainState(
            agent=self.agent.init(k_agent),
            hyper=Hyper.from_config(cfg, self.env.action_size),
            buffer=init_buffer(cfg.buffer_size, self.env.observation_size, self.env.action_size),
            obs_stats=init_stats(self.env.observation_size),
            env=self.vec_env.reset(k_env),
            key=key,
            env_steps=jnp.zeros((), jnp.int32),
            iteration=jnp.zeros((), jnp.int32),
        )

    def _normalize(self, stats: RunningStats, obs: jax.Array) -> jax.Array:
        return normalize(stats, obs, self.cfg.obs_norm)

    # --- one iteration ---------------------------------------------------------------------------
    def iteration(self, ts: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
        cfg, agent = self.cfg, self.agent
        key = jax.random.fold_in(ts.key, ts.iteration)
        k_random, k_policy, k_update = jax.random.split(key, 3)

        # Act: uniform random during warm-up, the stochastic policy after.
        obs = ts.env.obs
        shape = (cfg.num_envs, self.env.action_size)
        random_action = jax.random.uniform(k_random, shape, minval=-1.0, maxval=1.0)
        policy_action = agent.act(ts.agent.actor, self._normalize(ts.obs_stats, obs), k_policy)
        action = jnp.where(ts.env_steps < cfg.warmup_steps, random_action, policy_action)

        env = self.vec_env.step(ts.env, action)
        buffer = insert(ts.buffer, Transition(
            obs=obs, action=action, reward=env.reward, next_obs=env.next_obs,
            terminated=env.terminated.astype(jnp.float32),
        ))
        obs_stats = update_stats(ts.obs_stats, obs) if cfg.obs_norm else ts.obs_stats
        env_steps = ts.env_steps + cfg.num_envs

        learn = (env_steps >= cfg.warmup_steps) & (buffer.size >= cfg.batch_size)
        agent_state, update_metrics = jax.lax.cond(
            learn,
            lambda: self._updates(ts.agent, ts.hyper, buffer, obs_stats, env_steps, k_update),
            lambda: (ts.agent, self._zero_update_metrics()),
        )
        done = env.terminated | env.truncated
        metrics = dict(
            update_metrics,
            learned=learn.astype(jnp.float32),
            episodes=done.sum().astype(jnp.float32),
            episode_return_sum=env.done_return.sum(),
            episode_length_sum=env.done_length.sum().astype(jnp.float32),
        )
        new = TrainState(
            agent=agent_state, hyper=ts.hyper, buffer=buffer, obs_stats=obs_stats, env=env,
            key=ts.key, env_steps=env_steps, iteration=ts.iteration + 1,
        )
        return new, metrics

    def _updates(self, agent_state, hyper, buffer, obs_stats, env_steps, key):
        """G gradient updates, each on B freshly sampled transitions. Returns mean metrics."""

        def one_update(agent_state, key):
            k_sample, k_update = jax.random.split(key)
            batch = sample(buffer, k_sample, self.cfg.batch_size)
            batch = batch.replace(
                obs=self._normalize(obs_stats, batch.obs),
                next_obs=self._normalize(obs_stats, batch.next_obs),
            )
            return self.agent.update(agent_state, hyper, batch, env_steps, k_update)

        keys = jax.random.split(key, self.cfg.updates_per_iter)
        agent_state, metrics = jax.lax.scan(one_update, agent_state, keys)
        return agent_state, jax.tree.map(jnp.mean, metrics)

    @functools.cached_property
    def _update_metric_shapes(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Traced once (tracing an update is slow), then reused by every zero-metrics call."""
        return jax.eval_shape(
            lambda ts: self._updates(ts.agent, ts.hyper, ts.buffer, ts.obs_stats, ts.env_steps,
                                     ts.key)[1],
            jax.eval_shape(self.init, 0),
        )

    def _zero_update_metrics(self) -> dict[str, jax.Array]:
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self._update_metric_shapes)

    # --- a chunk of iterations between two host syncs ---------------------------------------------
    def run_chunk(self, ts: TrainState, num_iterations: jax.Array) -> tuple[TrainState, dict]:
        """Runs `num_iterations` iterations (a traced count: one compile serves every chunk).

        Returns the new state and chunk metrics: update metrics averaged over the iterations that
        learned, episode return/length averaged over the episodes that ended (NaN if none), and
        `params_finite`, False if any network parameter went NaN or infinite.
        """
        zero = self._chunk_sums_like(ts)

        def body(_, carry):
            ts, sums = carry
            ts, m = self.iteration(ts)
            update = {k: m[k] * m["learned"] for k in sums["update"]}
            sums = jax.tree.map(jnp.add, sums, {"update": update, "episode": {
                k: m[k] for k in ("learned", "episodes", "episode_return_sum", "episode_length_sum")}})
            return ts, sums

        ts, sums = jax.lax.fori_loop(0, num_iterations, body, (ts, zero))
        ep = sums["episode"]
        learned = jnp.maximum(ep["learned"], 1.0)
        metrics = {k: v / learned for k, v in sums["update"].items()}
        episodes = ep["episodes"]
        metrics["episode_return"] = jnp.where(episodes > 0, ep["episode_return_sum"] / episodes, jnp.nan)
        metrics["episode_length"] = jnp.where(episodes > 0, ep["episode_length_sum"] / episodes, jnp.nan)
        metrics["episodes"] = episodes
        params = (ts.agent.actor, ts.agent.critic, ts.agent.embed, ts.agent.log_alpha)
        metrics["params_finite"] = jnp.all(jnp.stack(
            [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(params)]))
        return ts, metrics

    def _chunk_sums_like(self, ts: TrainState) -> dict:
        update = self._zero_update_metrics()
        zero = jnp.zeros((), jnp.float32)
        return {"update": update, "episode": {
            k: zero for k in ("learned", "episodes", "episode_return_sum", "episode_length_sum")}}

    # --- deterministic evaluation on separate envs ------------------------------------------------
    def evaluate(self, ts: TrainState, key: jax.Array) -> jax.Array:
        """Runs cfg.eval_envs fresh episodes with the deterministic policy; returns their returns
        [eval_envs]. Stops as soon as every episode has ended."""
        env, cfg = self.env, self.cfg
        states = jax.vmap(env.reset)(jax.random.split(key, cfg.eval_envs))
        returns = jnp.zeros(cfg.eval_envs)
        alive = jnp.ones(cfg.eval_envs, bool)

        def cond(carry):
            return carry[2].any()

        def body(carry):
            states, returns, alive = carry
            obs = self._normalize(ts.obs_stats, states.obs)
            states = jax.vmap(env.step)(states, self.agent.act_deterministic(ts.agent.actor, obs))
            returns = returns + jnp.where(alive, states.reward, 0.0)
            alive = alive & ~(states.terminated | states.truncated)
            return states, returns, alive

        return jax.lax.while_loop(cond, body, (states, returns, alive))[1]

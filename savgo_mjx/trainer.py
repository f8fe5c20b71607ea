"""The training program: TrainState, one iteration, and a jitted chunk of iterations.

    iteration = act on N envs -> step them -> insert N transitions -> G gradient updates

All of it is one pure function `TrainState -> TrainState` on the device; `run_chunk` repeats it
between two log points inside a single jitted `fori_loop`, so the host only sees a few scalars
per chunk. A run trains S members side by side (seeds times swept hyperparameter settings): the
state carries a leading [S] axis and an iteration is a vmap of the one-member functions.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

import envs
from savgo_mjx.agent import Agent, AgentState, Hyper, with_lr
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
        """One member's fresh state (the config's own hyperparameters)."""
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

    def init_members(self, members: list[Config]) -> TrainState:
        """The stacked states of S members (seeds and swept settings of this config): every leaf
        gets a leading [S] axis. One compiled init serves all; each member's traced
        hyperparameters, learning rates and initial temperature are then set from its Config."""
        seeds = jnp.asarray([m.seed for m in members], jnp.uint32)
        ts = jax.jit(jax.vmap(self.init))(seeds)
        stack = lambda values: jnp.asarray(values, jnp.float32)  # noqa: E731
        hyper = jax.tree.map(lambda *leaves: jnp.stack(leaves),
                             *[Hyper.from_config(m, self.env.action_size) for m in members])
        agent = ts.agent.replace(
            log_alpha=jnp.log(stack([m.alpha_init for m in members])),
            actor_opt=with_lr(ts.agent.actor_opt, stack([m.actor_lr for m in members])),
            critic_opt=with_lr(ts.agent.critic_opt, stack([m.critic_lr for m in members])),
            embed_opt=with_lr(ts.agent.embed_opt, stack([m.embedding_lr for m in members])),
            alpha_opt=with_lr(ts.agent.alpha_opt, stack([m.alpha_lr for m in members])),
        )
        return ts.replace(agent=agent, hyper=hyper)

    def _normalize(self, stats: RunningStats, obs: jax.Array) -> jax.Array:
        return normalize(stats, obs, self.cfg.obs_norm)

    # --- one iteration ---------------------------------------------------------------------------
    def collect(self, ts: TrainState) -> tuple[TrainState, dict[str, jax.Array], jax.Array]:
        """Acts on the N envs, steps them and stores the N transitions (one member).
        Returns the new state, episode metrics and the key for this iteration's updates."""
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
        done = env.terminated | env.truncated
        metrics = dict(
            episodes=done.sum().astype(jnp.float32),
            episode_return_sum=env.done_return.sum(),
            episode_length_sum=env.done_length.sum().astype(jnp.float32),
        )
        new = ts.replace(buffer=buffer, obs_stats=obs_stats, env=env,
                         env_steps=ts.env_steps + cfg.num_envs, iteration=ts.iteration + 1)
        return new, metrics, k_update

    def learning(self, ts: TrainState) -> jax.Array:
        """[] bool: whether updates run now. It depends only on counters that every member of a
        run shares, so the members path decides it once, outside the vmap."""
        return (ts.env_steps >= self.cfg.warmup_steps) & (ts.buffer.size >= self.cfg.batch_size)

    def learn(self, ts: TrainState, key: jax.Array) -> tuple[AgentState, dict[str, jax.Array]]:
        """G gradient updates, each on B freshly sampled transitions. Returns mean metrics."""

        def one_update(agent_state, key):
            k_sample, k_update = jax.random.split(key)
            batch = sample(ts.buffer, k_sample, self.cfg.batch_size)
            batch = batch.replace(
                obs=self._normalize(ts.obs_stats, batch.obs),
                next_obs=self._normalize(ts.obs_stats, batch.next_obs),
            )
            return self.agent.update(agent_state, ts.hyper, batch, ts.env_steps, k_update)

        keys = jax.random.split(key, self.cfg.updates_per_iter)
        agent_state, metrics = jax.lax.scan(one_update, ts.agent, keys)
        return agent_state, jax.tree.map(jnp.mean, metrics)

    def iteration(self, ts: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
        """One iteration of one member: collect, then G updates once learning has started."""
        ts, metrics, key = self.collect(ts)
        learn = self.learning(ts)
        agent, update_metrics = jax.lax.cond(
            learn, lambda: self.learn(ts, key), lambda: (ts.agent, self._zero_update_metrics()))
        return ts.replace(agent=agent), dict(metrics, **update_metrics, learned=learn.astype(jnp.float32))

    def members_iteration(self, ts: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
        """One iteration of S members ([S]-leading state and metrics). With S = 1 it is the plain
        iteration: under vmap a `lax.cond` becomes a select that runs both branches, which would
        make warm-up pay for updates and every env step pay for resets."""
        if _num_members(ts) == 1:
            ts, metrics = self.iteration(jax.tree.map(lambda x: x[0], ts))
            return jax.tree.map(lambda x: x[None], (ts, metrics))
        ts, metrics, keys = jax.vmap(self.collect)(ts)
        learn = self.learning(jax.tree.map(lambda x: x[0], ts))
        zero = jax.tree.map(lambda x: jnp.broadcast_to(x, keys.shape[:1] + x.shape),
                            self._zero_update_metrics())
        agent, update_metrics = jax.lax.cond(
            learn, lambda: jax.vmap(self.learn)(ts, keys), lambda: (ts.agent, zero))
        learned = jnp.broadcast_to(learn.astype(jnp.float32), keys.shape[:1])
        return ts.replace(agent=agent), dict(metrics, **update_metrics, learned=learned)

    @functools.cached_property
    def _update_metric_shapes(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Traced once (tracing an update is slow), then reused by every zero-metrics call."""
        return jax.eval_shape(lambda ts: self.learn(ts, ts.key)[1], jax.eval_shape(self.init, 0))

    def _zero_update_metrics(self) -> dict[str, jax.Array]:
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self._update_metric_shapes)

    # --- a chunk of iterations between two host syncs ---------------------------------------------
    def run_chunk(self, ts: TrainState, num_iterations: jax.Array) -> tuple[TrainState, dict]:
        """Runs `num_iterations` iterations of every member (a traced count: one compile serves
        every chunk). `ts` has a leading member axis [S]; so does every returned metric.

        Metrics per member: update metrics averaged over the iterations that learned, episode
        return/length averaged over the episodes that ended (NaN if none), and `params_finite`,
        False if any network parameter went NaN or infinite.
        """
        names = (*self._update_metric_shapes, "learned", "episodes", "episode_return_sum",
                 "episode_length_sum")
        zero = {k: jnp.zeros(_num_members(ts), jnp.float32) for k in names}

        def body(_, carry):
            ts, sums = carry
            ts, m = self.members_iteration(ts)
            learned = m["learned"]
            sums = {k: sums[k] + (m[k] * learned if k in self._update_metric_shapes else m[k])
                    for k in names}
            return ts, sums

        ts, sums = jax.lax.fori_loop(0, num_iterations, body, (ts, zero))
        learned = jnp.maximum(sums["learned"], 1.0)
        metrics = {k: sums[k] / learned for k in self._update_metric_shapes}
        episodes = sums["episodes"]
        metrics["episode_return"] = jnp.where(episodes > 0, sums["episode_return_sum"] / episodes, jnp.nan)
        metrics["episode_length"] = jnp.where(episodes > 0, sums["episode_length_sum"] / episodes, jnp.nan)
        metrics["episodes"] = episodes
        metrics["params_finite"] = jax.vmap(params_finite)(ts.agent)
        return ts, metrics

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

    def evaluate_members(self, ts: TrainState, keys: jax.Array) -> jax.Array:
        """`evaluate` for every member of an [S]-leading state with its own key [S, 2];
        returns [S, eval_envs]."""
        return jax.vmap(self.evaluate)(ts, keys)


def _num_members(ts: TrainState) -> int:
    return ts.env_steps.shape[0]


def params_finite(agent: AgentState) -> jax.Array:
    """[] bool: every network parameter and the temperature are finite."""
    params = (agent.actor, agent.critic, agent.embed, agent.log_alpha)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(params)]))


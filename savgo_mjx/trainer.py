"""The training program: TrainState, one iteration, and a jitted chunk of iterations.

    iteration = act on N envs -> step them -> insert N transitions -> G gradient updates

All of it is one pure function `TrainState -> TrainState` on the device; `run_chunk` repeats it
between two log points inside a single jitted `fori_loop`, so the host only sees a few scalars
per chunk. A run trains S members side by side (seeds times swept hyperparameter settings): the
state carries a leading [S] axis and an iteration is a vmap of the one-member functions.

Data parallelism (`--devices D`): the N envs, the replay buffer and every batch are split into D
equal shards. Each shard acts, stores and samples on its own part; gradients, beta and the
observation statistics are averaged over the shards (`DATA` axis), so the parameters stay
identical everywhere. On D devices the shards are a `shard_map` over a device mesh; the same
code runs the shards as a named `vmap` on one device (`mesh=None`), which is how tests check
that D devices compute what one device computes.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import envs
from savgo_mjx.agent import Agent, AgentState, Hyper, Rates
from savgo_mjx.config import Config, shard_config
from savgo_mjx.normalize import RunningStats, init_stats, normalize, update_stats
from savgo_mjx.replay import (ReplayBuffer, Transition, gather, init_buffer, insert, n_step_bootstrap,
                              sample_rows)


DATA = "data"
"""Name of the data-parallel axis (envs, replay and batches are split along it)."""


@struct.dataclass
class TrainState:
    """One member's state. With D > 1 shards, `buffer` and `env` get a leading [D] axis (each
    shard's own part); everything else is the same on every shard."""

    agent: AgentState
    hyper: Hyper
    buffer: ReplayBuffer
    obs_stats: RunningStats
    env: envs.VecState
    key: jax.Array  # [2] raw uint32 (checkpoints store it as plain data)
    env_steps: jax.Array  # [] int32, summed over all envs
    iteration: jax.Array  # [] int32


def make_env(cfg: Config) -> envs.MujocoEnv:
    """The task and simulator settings of `cfg` (env, physics, RK4 unroll): the one place a run's
    env is built from its config."""
    return envs.make(cfg.env, physics=cfg.physics, rk4_stage_unroll=cfg.rk4_stage_unroll)


def _sharded_axes(axis):
    """A TrainState-shaped prefix: `axis` for the per-shard parts, None for the shared ones."""
    return TrainState(agent=None, hyper=None, buffer=axis, obs_stats=None, env=axis, key=None,
                      env_steps=None, iteration=None)


class Trainer:
    """Builds the pure functions of one config. Holds no mutable state."""

    def __init__(self, cfg: Config, env: envs.MujocoEnv, mesh: Mesh | None = None):
        """`mesh`: a 1-D device mesh with axis DATA of size cfg.devices to run the shards on;
        None runs them on one device (a named vmap when cfg.devices > 1)."""
        self.cfg = cfg
        self.env = env
        self.shards = cfg.devices
        self.mesh = mesh
        self.local = shard_config(cfg)
        self.axis_name = DATA if self.shards > 1 else None
        self.vec_env = envs.VecEnv(env, self.local.num_envs)
        self.agent = Agent(self.local, env.observation_size, env.action_size, self.axis_name)

    def init(self, seed: int | jax.Array, hyper: Hyper | None = None,
             rates: Rates | None = None) -> TrainState:
        """One member's fresh state; `hyper` and `rates` default to the config's values."""
        cfg, local = self.cfg, self.local
        key = jax.random.PRNGKey(seed)
        key, k_agent, k_env = jax.random.split(key, 3)
        buffer = init_buffer(local.buffer_size, self.env.observation_size, self.env.action_size,
                             store_truncated=cfg.n_step > 1)
        if self.shards == 1:
            env = self.vec_env.reset(k_env)
        else:
            env = jax.vmap(self.vec_env.reset)(jax.random.split(k_env, self.shards))
            buffer = jax.tree.map(lambda x: jnp.broadcast_to(x, (self.shards, *x.shape)), buffer)
        return TrainState(
            agent=self.agent.init(k_agent, rates),
            hyper=Hyper.from_config(cfg, self.env.action_size) if hyper is None else hyper,
            buffer=buffer,
            obs_stats=init_stats(self.env.observation_size),
            env=env,
            key=key,
            env_steps=jnp.zeros((), jnp.int32),
            iteration=jnp.zeros((), jnp.int32),
        )

    def init_members(self, members: list[Config]) -> TrainState:
        """The stacked states of S members (seeds and swept settings of this config): every leaf
        gets a leading [S] axis. Each member's hyperparameters, learning rates and initial
        temperature are traced inputs: one compiled init serves any values."""
        return self.place(self.init_program(*self.member_inputs(members)))

    def member_inputs(self, members: list[Config]) -> tuple[jax.Array, Hyper, Rates]:
        """The init program's inputs for S members: seeds [S] and the stacked Hyper and Rates."""
        seeds = jnp.asarray([m.seed for m in members], jnp.uint32)
        stack = lambda *leaves: jnp.stack(leaves)  # noqa: E731
        hyper = jax.tree.map(stack, *[Hyper.from_config(m, self.env.action_size) for m in members])
        rates = jax.tree.map(stack, *[Rates.from_config(m) for m in members])
        return seeds, hyper, rates

    @functools.cached_property
    def init_program(self):
        """jit of `init` vmapped over members: (seeds [S], Hyper, Rates) -> [S]-leading TrainState."""
        return jax.jit(jax.vmap(self.init))

    def place(self, ts):
        """An [S]-leading state (or its ShapeDtypeStructs) on the mesh's shardings; as is
        without a mesh."""
        if self.mesh is None:
            return ts
        if all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(ts)):
            return jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh),
                                ts, self.shardings(ts))
        return jax.device_put(ts, self.shardings(ts))

    def shardings(self, ts: TrainState):
        """Where each leaf of an [S]-leading state lives on the mesh: the shard axis (axis 1 of
        buffer and env leaves) split over DATA, everything else replicated."""
        spec = jax.tree.map(lambda axis: P() if axis is None else P(None, DATA),
                            _sharded_axes(1), is_leaf=lambda x: x is None)
        return jax.tree.map(lambda sp, x: jax.tree.map(lambda _: NamedSharding(self.mesh, sp), x),
                            spec, ts, is_leaf=lambda x: isinstance(x, P))

    def _normalize(self, stats: RunningStats, obs: jax.Array) -> jax.Array:
        return normalize(stats, obs, self.cfg.obs_norm)

    # --- one iteration ---------------------------------------------------------------------------
    def collect(self, ts: TrainState) -> tuple[TrainState, dict[str, jax.Array], jax.Array]:
        """Acts on the N envs, steps them and stores the N transitions (one member).
        Returns the new state, episode metrics and the key for this iteration's updates."""
        cfg, agent = self.cfg, self.agent
        key = jax.random.fold_in(ts.key, ts.iteration)
        if self.axis_name is not None:  # each shard draws its own actions and batches
            key = jax.random.fold_in(key, jax.lax.axis_index(self.axis_name))
        k_random, k_policy, k_update = jax.random.split(key, 3)

        # Act: uniform random during warm-up, the stochastic policy after.
        obs = ts.env.obs
        shape = (self.local.num_envs, self.env.action_size)
        random_action = jax.random.uniform(k_random, shape, minval=-1.0, maxval=1.0)
        policy_action = agent.act(ts.agent.actor, self._normalize(ts.obs_stats, obs), k_policy)
        action = jnp.where(ts.env_steps < cfg.warmup_steps, random_action, policy_action)

        env = self.vec_env.step(ts.env, action)
        buffer = insert(ts.buffer, Transition(
            obs=obs, action=action, reward=env.reward, next_obs=env.next_obs,
            terminated=env.terminated.astype(jnp.float32),
            truncated=env.truncated.astype(jnp.float32) if cfg.n_step > 1 else None,
        ))
        obs_stats = update_stats(ts.obs_stats, obs, self.axis_name) if cfg.obs_norm else ts.obs_stats
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
        run shares, so the members path decides it once, outside the vmap (and all shards alike)."""
        size = ts.buffer.size
        if self.axis_name is not None:
            size = jax.lax.pmin(size, self.axis_name)
        return (ts.env_steps >= self.cfg.warmup_steps) & (size >= self.local.batch_size)

    def learn(self, ts: TrainState, key: jax.Array) -> tuple[AgentState, dict[str, jax.Array]]:
        """G gradient updates, each on B freshly sampled transitions; the actor takes part in the
        last of every `policy_frequency` of them. Returns mean metrics of the updates the actor
        took part in (so every metric averages over the same updates)."""

        def one_update(agent_state, key, update_actor=True):
            k_sample, k_update = jax.random.split(key)
            rows = sample_rows(ts.buffer, k_sample, self.local.batch_size)
            batch = gather(ts.buffer, rows)
            batch = batch.replace(
                obs=self._normalize(ts.obs_stats, batch.obs),
                next_obs=self._normalize(ts.obs_stats, batch.next_obs),
            )
            boot = None  # one step: the agent's target comes from `batch`, gathered and normalised once
            if self.cfg.n_step > 1:
                boot = n_step_bootstrap(ts.buffer, rows, self.cfg.n_step, self.local.num_envs, ts.hyper.gamma)
                boot = boot.replace(next_obs=self._normalize(ts.obs_stats, boot.next_obs))
            return self.agent.update(agent_state, ts.hyper, batch, ts.env_steps, k_update, boot,
                                     update_actor=update_actor)

        delay = self.cfg.policy_frequency

        def block(agent_state, keys):  # keys [delay, ...]: critic-only updates, then a full one
            if delay > 1:
                critic_only = lambda st, k: (one_update(st, k, update_actor=False)[0], None)  # noqa: E731
                agent_state, _ = jax.lax.scan(critic_only, agent_state, keys[:-1])
            return one_update(agent_state, keys[-1])

        keys = jax.random.split(key, self.cfg.updates_per_iter)
        keys = keys.reshape((-1, delay) + keys.shape[1:])
        agent_state, metrics = jax.lax.scan(block, ts.agent, keys)
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
        like = jax.eval_shape(self.init, 0)
        metrics = lambda ts: self.learn(ts, ts.key)[1]  # noqa: E731
        if self.shards == 1:
            return jax.eval_shape(metrics, like)
        shapes = jax.eval_shape(jax.vmap(metrics, in_axes=(_sharded_axes(0),), axis_name=DATA), like)
        return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), shapes)

    def _zero_update_metrics(self) -> dict[str, jax.Array]:
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self._update_metric_shapes)

    # --- a chunk of iterations between two host syncs ---------------------------------------------
    def chunk_program(self, ts):
        """`run_chunk` jitted with the state donated. On a mesh the returned state keeps the
        input's shardings (`ts`: the state or its ShapeDtypeStructs): left to itself XLA returns
        zero-size leaves (MJX has some) replicated, and the compiled chunk refuses those on its
        next call."""
        if self.mesh is None:
            return jax.jit(self.run_chunk, donate_argnums=0)
        return jax.jit(self.run_chunk, donate_argnums=0,
                       out_shardings=(self.shardings(ts), NamedSharding(self.mesh, P())))

    def run_chunk(self, ts: TrainState, num_iterations: jax.Array) -> tuple[TrainState, dict]:
        """Runs `num_iterations` iterations of every member (a traced count: one compile serves
        every chunk). `ts` has a leading member axis [S]; so does every returned metric.

        Metrics per member: update metrics averaged over the iterations that learned, episode
        return/length averaged over the episodes that ended (NaN if none), and `params_finite`,
        False if any network parameter went NaN or infinite.
        """
        if self.shards == 1:
            return self._run_chunk_shard(ts, num_iterations)
        self._update_metric_shapes  # noqa: B018 (traced here: it vmaps over DATA itself)
        if self.mesh is None:
            return jax.vmap(self._run_chunk_shard, in_axes=(_sharded_axes(1), None),
                            out_axes=(_sharded_axes(1), None), axis_name=DATA)(ts, num_iterations)
        specs = jax.tree.map(lambda axis: P() if axis is None else P(None, DATA),
                             _sharded_axes(1), is_leaf=lambda x: x is None)

        def on_device(ts, n):  # the local block keeps the shard axis with size 1
            squeeze = _sharded_axes(lambda x: x[:, 0])
            ts = _map_sharded(squeeze, ts)
            ts, metrics = self._run_chunk_shard(ts, n)
            return _map_sharded(_sharded_axes(lambda x: x[:, None]), ts), metrics

        # check_vma off: MJX's solver loops are not written for varying-axis type checks; the
        # replicated outputs are replicated by construction (averaged gradients, see Agent).
        return jax.shard_map(on_device, mesh=self.mesh, in_specs=(specs, P()),
                             out_specs=(specs, P()), check_vma=False)(ts, num_iterations)

    def _run_chunk_shard(self, ts: TrainState, num_iterations: jax.Array) -> tuple[TrainState, dict]:
        """run_chunk on one shard's part of the state; metrics are already over all shards."""
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
        if self.axis_name is not None:  # update metrics: mean over shards; episodes: sum
            sums = {k: (jax.lax.pmean if k in self._update_metric_shapes or k == "learned"
                        else jax.lax.psum)(v, self.axis_name) for k, v in sums.items()}
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


def _map_sharded(fns: TrainState, ts: TrainState) -> TrainState:
    """Applies fns.buffer / fns.env to every leaf of ts.buffer / ts.env."""
    return ts.replace(buffer=jax.tree.map(fns.buffer, ts.buffer), env=jax.tree.map(fns.env, ts.env))


def _num_members(ts: TrainState) -> int:
    return ts.env_steps.shape[0]


def params_finite(agent: AgentState) -> jax.Array:
    """[] bool: every network parameter and the temperature are finite."""
    params = (agent.actor, agent.critic, agent.embed, agent.log_alpha)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(params)]))


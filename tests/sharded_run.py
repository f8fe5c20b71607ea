"""Run by tests/test_multi_device.py in a fresh process with 4 fake CPU devices (XLA reads
XLA_FLAGS once, at start-up): `python tests/sharded_run.py update OUT.npz` (one agent update: cheap),
`python tests/sharded_run.py compare OUT.npz` (the whole training program) or
`python tests/sharded_run.py learn RUN_DIR`."""
import dataclasses
import json
import os
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import envs  # noqa: E402
from savgo_mjx.config import Config, members  # noqa: E402
from savgo_mjx.train_loop import configure_jax, make_mesh, train  # noqa: E402
from savgo_mjx.trainer import Trainer  # noqa: E402

SHARDED = Config(
    num_envs=8, total_steps=768, warmup_steps=64, buffer_size=2048, batch_size=64,
    updates_per_iter=1, geometry_batch=32, actor_batch=16, num_candidates=8, hidden=32,
    log_every=64, eval_every=256, eval_envs=2, checkpoint_every=0, progress=False, devices=4,
)


def update(out: str) -> None:
    """One SAVGO update on a batch split 4 ways: as 4 shards on one device (named vmap) and on 4
    devices (shard_map over the mesh). Same keys, same data: the results must agree."""
    from jax.sharding import PartitionSpec as P

    from savgo_mjx.agent import Agent, Hyper
    from savgo_mjx.replay import Transition
    from savgo_mjx.trainer import DATA

    obs, act, batch = 5, 2, 32
    cfg = Config(hidden=32, batch_size=batch // 4, geometry_batch=4, actor_batch=2, num_candidates=8)
    r = np.random.default_rng(0)
    data = Transition(
        obs=jnp.asarray(r.normal(size=(4, batch // 4, obs)), jnp.float32),
        action=jnp.asarray(r.uniform(-1, 1, size=(4, batch // 4, act)), jnp.float32),
        reward=jnp.asarray(r.normal(size=(4, batch // 4)), jnp.float32),
        next_obs=jnp.asarray(r.normal(size=(4, batch // 4, obs)), jnp.float32),
        terminated=jnp.asarray(r.random((4, batch // 4)) < 0.2, jnp.float32))
    agent = Agent(cfg, obs, act, axis_name=DATA)
    state, hyper = agent.init(jax.random.PRNGKey(0)), Hyper.from_config(cfg, act)
    key, steps = jax.random.PRNGKey(1), jnp.int32(10_000)
    one_device = jax.jit(jax.vmap(agent.update, in_axes=(None, None, 0, None, None),
                                  out_axes=(None, 0), axis_name=DATA))(state, hyper, data, steps, key)

    def on_device(st, hp, b, s, k):
        new, metrics = agent.update(st, hp, jax.tree.map(lambda x: x[0], b), s, k)
        return new, jax.tree.map(lambda x: x[None], metrics)

    four_devices = jax.jit(jax.shard_map(
        on_device, mesh=make_mesh(4), in_specs=(P(), P(), P(DATA), P(), P()),
        out_specs=(P(), P(DATA)), check_vma=False))(state, hyper, data, steps, key)
    results = {"devices_in_mesh": np.asarray(len(four_devices[0].actor["params"]["mu"]["kernel"].sharding.device_set))}
    for name, tree in (("one_device", one_device), ("four_devices", four_devices)):
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            results[f"{name}{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
    np.savez(out, **results)


def compare(out: str) -> None:
    """The same 12 iterations as 4 shards on one device (named vmap) and on 4 devices, in two
    calls of the compiled chunk as train() makes them (the second takes the first's output)."""
    env = envs.make(SHARDED.env)
    results = {}
    for name, mesh in (("one_device", None), ("four_devices", make_mesh(4))):
        trainer = Trainer(SHARDED, env, mesh)
        ts = trainer.init_members(members(SHARDED))
        chunk = trainer.chunk_program(ts).lower(ts, jnp.int32(1)).compile()
        ts, _ = chunk(ts, jnp.int32(6))
        ts, metrics = chunk(ts, jnp.int32(6))
        if name == "four_devices":
            results["buffer_devices"] = np.asarray(len(ts.buffer.data.obs.sharding.device_set))
            results["agent_replicated"] = np.asarray(ts.agent.log_alpha.sharding.is_fully_replicated)
        for path, leaf in jax.tree_util.tree_flatten_with_path((ts, metrics))[0]:
            results[f"{name}{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
    np.savez(out, **results)


def learn(run_dir: str) -> None:
    cfg = dataclasses.replace(
        SHARDED, env="inverted_pendulum", total_steps=20_000, warmup_steps=1_000,
        buffer_size=50_000, batch_size=128, updates_per_iter=4, geometry_batch=64,
        actor_batch=32, num_candidates=32, hidden=64, eval_every=0, eval_envs=5,
        log_every=1_000, run_dir=run_dir)
    print(json.dumps(train(cfg)))


if __name__ == "__main__":
    configure_jax()
    assert len(jax.devices()) == 4, jax.devices()
    {"update": update, "compare": compare, "learn": learn}[sys.argv[1]](sys.argv[2])

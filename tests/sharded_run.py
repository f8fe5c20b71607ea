"""Run by tests/test_multi_device.py in a fresh process with 4 fake CPU devices (XLA reads
XLA_FLAGS once, at start-up): `python tests/sharded_run.py compare OUT.npz` or
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


def compare(out: str) -> None:
    """The same 12 iterations as 4 shards on one device (named vmap) and on 4 devices."""
    env = envs.make(SHARDED.env)
    results = {}
    for name, mesh in (("one_device", None), ("four_devices", make_mesh(4))):
        trainer = Trainer(SHARDED, env, mesh)
        ts = trainer.init_members(members(SHARDED))
        ts, metrics = jax.jit(trainer.run_chunk)(ts, jnp.int32(12))
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
    {"compare": compare, "learn": learn}[sys.argv[1]](sys.argv[2])

"""Data parallelism over devices. Default suite: the averaged update on 4 shards equals the
one-batch update where the math says it must (critic), and one update on 4 fake CPU devices
(shard_map, in a fresh process: tests/sharded_run.py) equals the same 4 shards on one device;
no env to compile. Marked slow (a
fresh process with 4 fake CPU devices, tests/sharded_run.py; ~4-9 min of MJX compiles on 2
cores): the whole sharded training program on 4 devices computes what the same 4 shards
compute on one device, and learning still works."""
import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train
from savgo_mjx.agent import Agent, Hyper
from savgo_mjx.config import Config
from savgo_mjx.replay import Transition

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, timeout):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "sharded_run.py"), *args],
                            capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_critic_update_averaged_over_four_shards_equals_the_full_batch_update():
    obs, act, batch, shards = 5, 2, 32, 4
    cfg = Config(hidden=32, batch_size=batch, geometry_batch=16, actor_batch=8, num_candidates=8)
    local = dataclasses.replace(cfg, batch_size=batch // shards, geometry_batch=16 // shards,
                                actor_batch=8 // shards)
    r = np.random.default_rng(0)
    data = Transition(
        obs=jnp.asarray(r.normal(size=(batch, obs)), jnp.float32),
        action=jnp.asarray(r.uniform(-1, 1, size=(batch, act)), jnp.float32),
        reward=jnp.asarray(r.normal(size=batch), jnp.float32),
        next_obs=jnp.asarray(r.normal(size=(batch, obs)), jnp.float32),
        terminated=jnp.asarray(r.random(batch) < 0.2, jnp.float32))
    whole, sharded = Agent(cfg, obs, act), Agent(local, obs, act, axis_name="data")
    state = whole.init(jax.random.PRNGKey(0))
    hyper = Hyper.from_config(cfg, act)
    # gamma = 0 makes the critic target the reward alone, so it does not depend on the sampled
    # next actions (whose random draws differ between the two layouts).
    hyper = hyper.replace(gamma=jnp.float32(0.0))
    key, steps = jax.random.PRNGKey(1), jnp.int32(10_000)
    one, _ = jax.jit(whole.update)(state, hyper, data, steps, key)
    parts = jax.tree.map(lambda x: x.reshape(shards, batch // shards, *x.shape[1:]), data)
    four, metrics = jax.jit(jax.vmap(sharded.update, in_axes=(None, None, 0, None, None),
                                     out_axes=(None, 0), axis_name="data"))(state, hyper, parts, steps, key)
    # Parameters and Adam's moments (which see the gradient's scale: a sum instead of a mean
    # over shards would show there, not in Adam's scale-free step).
    for x, y in zip(jax.tree.leaves((one.critic, one.critic_opt)), jax.tree.leaves((four.critic, four.critic_opt))):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6)
    assert not np.allclose(metrics["critic_loss"][0], metrics["critic_loss"][1])  # shards saw different data
    # Everything else stays identical across shards: that is what out_axes=None asserted.


def _split(runs):
    one = {k[len("one_device"):]: v for k, v in runs.items() if k.startswith("one_device")}
    four = {k[len("four_devices"):]: v for k, v in runs.items() if k.startswith("four_devices")}
    assert one.keys() == four.keys() and len(one) > 20
    return one, four


def _assert_same(one, four):
    for name in one:
        if one[name].dtype.kind == "f":
            np.testing.assert_allclose(four[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(four[name], one[name], err_msg=name)


def test_update_on_four_fake_devices_matches_the_four_shards_on_one_device(tmp_path):
    out = tmp_path / "update.npz"
    _run("update", str(out), timeout=900)
    runs = np.load(out)
    assert int(runs["devices_in_mesh"]) == 4
    one, four = _split(runs)
    _assert_same(one, four)  # every parameter, optimiser moment, beta, alpha and metric
    losses = [k for k in one if "critic_loss" in k]
    assert losses and len(set(one[losses[0]].tolist())) == 4  # each shard had its own data


@pytest.mark.slow
def test_four_devices_match_four_shards_on_one_device(tmp_path):
    out = tmp_path / "runs.npz"
    _run("compare", str(out), timeout=1200)
    runs = np.load(out)
    assert int(runs["buffer_devices"]) == 4  # the replay buffer really is split over devices
    assert bool(runs["agent_replicated"])  # and the parameters are the same everywhere
    one, four = _split(runs)
    learned = [k for k in one if "actor_opt" in k and "mu" in k]
    assert learned and all(np.any(one[k] != 0) for k in learned)  # the updates did run
    _assert_same(one, four)


@pytest.mark.slow
def test_inverted_pendulum_still_learns_on_four_devices(tmp_path):
    summary = json.loads(_run("learn", str(tmp_path), timeout=3000).strip().splitlines()[-1])
    assert summary["eval_return"] >= 950, summary


SIZES = ["--num-envs", "64", "--buffer-size", "6400", "--batch-size", "128", "--geometry-batch", "128",
         "--actor-batch", "64"]


@pytest.mark.parametrize("args, message", [
    (["--devices", "3"], "--num-envs (64) must divide by --devices (3)"),
    (["--devices", "2", "--buffer-size", "1001"], "--buffer-size (1001) must divide"),
    (["--devices", "64"], "--devices 64 but jax sees"),
])
def test_device_count_errors(args, message, tmp_path, capsys):
    assert train.main(SIZES + args + ["--run-dir", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()

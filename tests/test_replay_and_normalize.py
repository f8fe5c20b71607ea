"""The replay ring and the running observation statistics against plain numpy."""
import jax
import jax.numpy as jnp
import numpy as np

from savgo_mjx.normalize import init_stats, normalize, update_stats
from savgo_mjx.replay import (Transition, init_buffer, insert, n_step_bootstrap, one_step_bootstrap, sample,
                              transition_bytes)


def _batch(start: int, n: int, obs: int = 3, act: int = 2) -> Transition:
    ids = np.arange(start, start + n, dtype=np.float32)
    return Transition(
        obs=jnp.asarray(np.repeat(ids[:, None], obs, 1)),
        action=jnp.asarray(np.repeat(-ids[:, None], act, 1)),
        reward=jnp.asarray(ids),
        next_obs=jnp.asarray(np.repeat(ids[:, None] + 0.5, obs, 1)),
        terminated=jnp.asarray((ids % 2 == 0).astype(np.float32)),
    )


def test_ring_wraps_and_overwrites_oldest_rows():
    buffer = init_buffer(capacity=10, observation_size=3, action_size=2)
    step = jax.jit(insert)
    for i in range(4):  # 4 inserts of 4 rows into 10 rows: rows 0..15, the oldest 6 overwritten
        buffer = step(buffer, _batch(4 * i, 4))
    assert int(buffer.size) == 10
    assert int(buffer.insert_at) == 16 % 10
    expected = {float(i) for i in range(6, 16)}
    assert set(np.asarray(buffer.data.reward).tolist()) == expected
    # each row stays one consistent transition
    rows = np.asarray(buffer.data.reward)
    np.testing.assert_array_equal(np.asarray(buffer.data.obs)[:, 0], rows)
    np.testing.assert_array_equal(np.asarray(buffer.data.next_obs)[:, 0], rows + 0.5)
    np.testing.assert_array_equal(np.asarray(buffer.data.action)[:, 1], -rows)


def test_sample_draws_only_filled_rows_and_keeps_rows_together():
    buffer = insert(init_buffer(100, 3, 2), _batch(1, 7))
    batch = sample(buffer, jax.random.PRNGKey(0), 500)
    rewards = np.asarray(batch.reward)
    assert set(rewards.tolist()) == set(range(1, 8))  # never an empty (zero) row; all 7 seen
    np.testing.assert_array_equal(np.asarray(batch.obs)[:, 2], rewards)
    np.testing.assert_array_equal(np.asarray(batch.terminated), (rewards % 2 == 0).astype(np.float32))


def test_transition_bytes_matches_arrays():
    buffer = init_buffer(5, 348, 17)
    total = sum(x.nbytes for x in jax.tree.leaves(buffer.data))
    assert total == 5 * transition_bytes(348, 17)
    buffer = init_buffer(5, 348, 17, store_truncated=True)
    assert sum(x.nbytes for x in jax.tree.leaves(buffer.data)) == 5 * transition_bytes(348, 17, n_step=3)


def _episodes(num_envs: int, steps: int, seed: int = 0) -> list[dict]:
    """`steps` vector steps of `num_envs` envs with random rewards and episode ends: one dict of
    [N] arrays per step (next_obs marks env and step: 100 * step + env)."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(steps):
        ended = rng.random(num_envs) < 0.25
        terminated = ended & (rng.random(num_envs) < 0.5)
        out.append(dict(reward=rng.normal(size=num_envs).astype(np.float32),
                        terminated=terminated.astype(np.float32),
                        truncated=(ended & ~terminated).astype(np.float32),
                        marker=100.0 * t + np.arange(num_envs)))
    return out


def _filled(history: list[dict], capacity: int) -> "ReplayBuffer":  # noqa: F821
    num_envs = history[0]["reward"].shape[0]
    buffer = init_buffer(capacity, 1, 1, store_truncated=True)
    for step in history:
        marker = jnp.asarray(step["marker"][:, None], jnp.float32)
        buffer = insert(buffer, Transition(
            obs=marker, action=jnp.zeros((num_envs, 1)), reward=jnp.asarray(step["reward"]),
            next_obs=marker + 0.5, terminated=jnp.asarray(step["terminated"]),
            truncated=jnp.asarray(step["truncated"])))
    return buffer


def _n_step_reference(history: list[dict], t: int, env: int, n: int, gamma: float):
    """Straight from the definition: sum gamma^k r over the same env's next steps until n, the
    episode's end (inclusive) or the newest step; then bootstrap unless terminated."""
    reward, k = 0.0, 0
    while True:
        step = history[t + k]
        reward += gamma**k * float(step["reward"][env])
        k += 1
        if (k == n or t + k == len(history) or step["terminated"][env] or step["truncated"][env]):
            break
    discount = gamma**k * (1.0 - float(step["terminated"][env]))
    return reward, float(step["marker"][env]) + 0.5, discount


def test_n_step_bootstrap_follows_each_env_and_stops_at_episode_ends_and_newest_data():
    num_envs, n, gamma = 3, 4, 0.9
    history = _episodes(num_envs, steps=11)
    buffer = _filled(history, capacity=num_envs * 5)  # 11 steps into 5 slots: wrapped twice
    rows = jnp.arange(num_envs * 5)
    boot = jax.jit(n_step_bootstrap, static_argnums=(2, 3))(buffer, rows, n, num_envs, jnp.float32(gamma))
    lengths = set()
    for row in range(num_envs * 5):
        marker = float(buffer.data.obs[row, 0])
        t, env = int(marker) // 100, int(marker) % 100
        reward, next_marker, discount = _n_step_reference(history, t, env, n, gamma)
        np.testing.assert_allclose(float(boot.reward[row]), reward, rtol=1e-5, atol=1e-6)
        assert float(boot.next_obs[row, 0]) == next_marker, (row, t, env)
        np.testing.assert_allclose(float(boot.discount[row]), discount, rtol=1e-6)
        lengths.add(round(np.log(discount) / np.log(gamma)) if discount else None)
    assert {1, 2, 4} <= lengths  # full returns, ones cut short, and terminated ones all occur


def test_one_step_bootstrap_is_n_step_with_n_1_and_truncation_still_bootstraps():
    num_envs, gamma = 4, 0.97
    history = _episodes(num_envs, steps=6, seed=1)
    buffer = _filled(history, capacity=num_envs * 6)
    rows = jnp.arange(num_envs * 6)
    one = one_step_bootstrap(jax.tree.map(lambda x: x[rows], buffer.data), gamma)
    n1 = n_step_bootstrap(buffer, rows, 1, num_envs, gamma)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(n1)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    truncated = np.asarray(buffer.data.truncated) > 0
    terminated = np.asarray(buffer.data.terminated) > 0
    assert truncated.any() and terminated.any()
    np.testing.assert_allclose(np.asarray(one.discount)[truncated], gamma)
    np.testing.assert_array_equal(np.asarray(one.discount)[terminated], 0.0)


def test_running_stats_match_numpy_over_batches():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 4)) * [1, 10, 0.1, 1] for n in (5, 17, 1, 64)]
    stats = init_stats(4)
    for b in batches:
        stats = update_stats(stats, jnp.asarray(b, jnp.float32))
    everything = np.concatenate(batches)
    np.testing.assert_allclose(stats.mean, everything.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.var, everything.var(0), rtol=1e-4)
    assert float(stats.count) == len(everything)
    z = np.asarray(normalize(stats, jnp.asarray(everything, jnp.float32)))
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-3)
    np.testing.assert_array_equal(normalize(stats, jnp.ones(4), enabled=False), jnp.ones(4))


def test_a_dim_that_never_varied_cannot_blow_up_the_input():
    """Humanoid's contact forces are exactly 0 until the first contact: the first 100 N must not
    become a 1e7 input (the early critic-loss blow-up on Humanoid)."""
    quiet = jnp.asarray([[0.0, 5.0, 1.0], [0.0, 5.0, -1.0]] * 8, jnp.float32)  # dims 0, 1 constant
    stats = update_stats(init_stats(3), quiet)
    assert float(stats.var[0]) == 0.0
    z = np.asarray(normalize(stats, jnp.asarray([[100.0, 5.0, 1.0], [-3e-3, 5.0 + 1e-6, 50.0]])))
    np.testing.assert_allclose(z[0], [10.0, 0.0, 1.0], atol=1e-6)  # clipped; constant dim stays 0
    np.testing.assert_allclose(z[1], [-0.3, 1e-4, 10.0], rtol=1e-3, atol=1e-5)  # std floor 1e-2

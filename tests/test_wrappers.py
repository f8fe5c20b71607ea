"""VecEnv: auto-reset, time limit, episode statistics (on InvertedPendulum, the cheapest task).

One jitted rollout (reset + lax.scan of VecEnv.step) is compiled once for the module: six envs,
time limit 10 steps (via the max_episode_steps override), 36 steps. Envs 0-2 push the cart hard
(the pole falls within a few steps: terminated), envs 3-5 apply no force (the pole stays up for
10 steps: truncated).
"""
from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

import envs  # noqa: E402

NUM_ENVS, LIMIT, T = 6, 10, 36
ACTIONS = np.array([[1.0], [0.8], [-1.0], [0.0], [0.0], [0.0]], np.float32)
FIELDS = ("obs", "next_obs", "reward", "terminated", "truncated", "episode_return",
          "episode_length", "done_return", "done_length")


@pytest.fixture(scope="module")
def rollout():
    env = envs.make("inverted_pendulum", max_episode_steps=LIMIT)
    vec = envs.VecEnv(env, NUM_ENVS)
    actions = jnp.asarray(ACTIONS)

    @jax.jit
    def run(key):
        vs = vec.reset(key)

        def body(vs, _):
            vs = vec.step(vs, actions)
            return vs, {f: getattr(vs, f) for f in FIELDS} | {"steps": vs.env_state.steps}

        _, hist = jax.lax.scan(body, vs, None, length=T)
        return vs.obs, hist

    first_obs, hist = run(jax.random.key(0))
    return np.asarray(first_obs), {k: np.asarray(v) for k, v in hist.items()}


def test_time_limit_sets_truncated_not_terminated(rollout):
    _, h = rollout
    done = h["terminated"] | h["truncated"]
    # envs 3-5 stand for exactly LIMIT steps, then the time limit (not a fall) ends the episode
    for i in (3, 4, 5):
        ends = np.flatnonzero(done[:, i])
        assert ends.tolist() == list(range(LIMIT - 1, T, LIMIT)), ends
        assert h["truncated"][ends, i].all() and not h["terminated"][: ends[-1] + 1, i].any()
    # a truncation always means the episode reached the limit; before it, never truncated
    assert (h["done_length"][h["truncated"]] == LIMIT).all()
    assert not h["truncated"][h["done_length"] == 0].any()


def test_falls_set_terminated(rollout):
    _, h = rollout
    for i in (0, 1, 2):
        ends = np.flatnonzero(h["terminated"][:, i])
        assert len(ends) >= 2, f"env {i} should fall repeatedly under a constant push"
        assert (h["done_length"][ends, i] < LIMIT).all()
        assert not h["truncated"][ends, i].any()


def test_auto_reset_keeps_true_final_observation(rollout):
    _, h = rollout
    done = h["terminated"] | h["truncated"]
    # where an episode ended, obs is already the next episode's start (reset noise U(+-0.01)),
    # and next_obs is the real successor of the last action: the fallen pole for terminations
    assert (np.abs(h["obs"][done]) <= 0.01 + 1e-6).all()
    assert not np.allclose(h["next_obs"][done], h["obs"][done])
    assert (np.abs(h["next_obs"][h["terminated"]][:, 1]) > 0.2).all()
    # elsewhere the two are the same observation
    np.testing.assert_array_equal(h["next_obs"][~done], h["obs"][~done])
    # the step counter restarts with the new episode
    assert (h["steps"][done] == 0).all() and (h["steps"][~done] > 0).all()


def test_reset_states_differ_across_envs_and_episodes(rollout):
    first_obs, h = rollout
    done = h["terminated"] | h["truncated"]
    starts = [first_obs[i] for i in range(NUM_ENVS)]
    for i in range(NUM_ENVS):
        starts += [h["obs"][t, i] for t in np.flatnonzero(done[:, i])]
    starts = np.stack(starts)
    assert len(starts) >= NUM_ENVS + 9
    gaps = np.abs(starts[:, None, :] - starts[None, :, :]).max(-1)
    np.fill_diagonal(gaps, np.inf)
    assert gaps.min() > 1e-6, "two episodes started from the same state"


def test_episode_return_and_length_tracked(rollout):
    _, h = rollout
    done = h["terminated"] | h["truncated"]
    ret, length = np.zeros(NUM_ENVS), np.zeros(NUM_ENVS, int)
    for t in range(T):
        ret += h["reward"][t]
        length += 1
        np.testing.assert_allclose(h["done_return"][t], np.where(done[t], ret, 0.0), rtol=1e-6)
        np.testing.assert_array_equal(h["done_length"][t], np.where(done[t], length, 0))
        ret, length = np.where(done[t], 0.0, ret), np.where(done[t], 0, length)
        np.testing.assert_allclose(h["episode_return"][t], ret, rtol=1e-6)
        np.testing.assert_array_equal(h["episode_length"][t], length)


def test_vec_wrong_action_shape_raises():
    vec = envs.VecEnv(envs.make("inverted_pendulum"), 3)
    with pytest.raises(ValueError, match=r"\(3, 1\)"):
        vec.step(None, jnp.zeros((3, 2)))
    with pytest.raises(ValueError):
        envs.VecEnv(vec.env, 0)

"""Our MJX ports against Gymnasium's own v5 environments, for every task (tests/gym_parity.py).

One-step parity: from 128 states visited by gymnasium's env under random actions (falls
included), both simulators take the same action; observation, reward, terminated and the new
(qpos, qvel) must agree. Tasks not yet in envs.REGISTRY are skipped.

Float32 tolerance. MJX runs in float32 (JAX's default), gymnasium in float64, so agreement is
checked as |ours - gym| <= tol * (1 + |gym|) elementwise:
  * reset observation, tol 1e-5: kinematics only (mj_forward of the same state); a few float32
    roundings of O(1) values (measured max 5e-7).
  * stepped observation and qpos/qvel, tol 2e-3: one env step is frame_skip integrator steps
    (RK4: 4 forward passes each) with a constraint solve per pass. The solver's tolerance (1e-8)
    is below float32 resolution, so it stops at float32 convergence and contact forces carry
    relative errors far above eps; velocities inherit them (measured max 5.7e-4 on halfcheetah
    qvel, 1.1e-4 on walker2d, <= 6e-6 on the contact-free tasks). 2e-3 leaves a 3x margin yet is
    orders of magnitude below any porting error (a wrong weight, term or index is O(0.1..1)).
  * reward, tol 1e-4: velocity terms divide float32 positions by dt (dt 0.008 amplifies a 1e-7
    error 125x); measured max 8e-6 (halfcheetah).
  * terminated: must match exactly (fixed seeds make the test deterministic; no sampled state
    lies within float32 noise of a health boundary).
Reset distribution: mean, std and excess kurtosis of the initial qpos/qvel over 2000 gymnasium
resets vs 2000 of ours must agree within Z_MAX = 5 standard errors per component (~50 comparisons
per task: a false alarm has probability ~3e-5; uniform vs normal noise of the same scale differs
by >40 standard errors in std and by 8 in kurtosis).
"""
from __future__ import annotations

import functools
import inspect
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gym_parity as gp  # noqa: E402  (puts the repo root on sys.path too)

import gymnasium  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import envs  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = list(gp.GYM_IDS)  # all nine ports
MINE = ["inverted_pendulum", "inverted_double_pendulum", "reacher", "swimmer", "halfcheetah",
        "hopper", "walker2d"]
TERMINATING = {"inverted_pendulum", "inverted_double_pendulum", "hopper", "walker2d", "ant", "humanoid"}

TOL = {"reset_obs": 1e-5, "obs": 2e-3, "qpos": 2e-3, "qvel": 2e-3, "reward": 1e-4}
# Per-task loosening, each with its measured reason.
TOL_OVERRIDES: dict[str, dict[str, float]] = {
    # Ant-v5's observation carries the contact forces (cfrc_ext) of its four feet. With up to
    # four pyramidal-cone contacts solved in float32, one sampled state (a foot landing) gave a
    # relative error of 4.5e-3 in one cfrc_ext component and 1.2e-4 in the reward (whose contact
    # cost is that force squared). Measured on this harness's 128 states; the limits leave 2x.
    "ant": {"obs": 1e-2, "reward": 3e-4},
    # Humanoid-v5's reward holds the contact cost 5e-7 * sum(cfrc_ext^2) of up to a dozen
    # contacts solved in float32 (and Newton in place of PGS): one of 128 states gave a scaled
    # reward error of 1.21e-4 (ours 0.10172 vs gymnasium 0.10186); the limit leaves 2.5x.
    "humanoid": {"reward": 3e-4},
}
Z_MAX = 5.0


def _registered(name: str) -> None:
    if name not in envs.REGISTRY:
        pytest.skip(f"{name} is not in envs.REGISTRY yet")


@functools.lru_cache(maxsize=None)
def _parity(name: str) -> gp.ParityResult:
    return gp.run_parity(name, physics="v5", n_states=128, n_resets=2000, seed=0)


@pytest.fixture(scope="module", params=NAMES)
def parity(request) -> gp.ParityResult:
    _registered(request.param)
    return _parity(request.param)


def _check(result: gp.ParityResult, field: str) -> None:
    tol = TOL_OVERRIDES.get(result.name, {}).get(field, TOL[field])
    ours, ref = result.ours[field].astype(np.float64), result.gym[field].astype(np.float64)
    assert ours.shape == ref.shape, f"{result.name} {field}: shape {ours.shape} vs gymnasium {ref.shape}"
    scaled = np.abs(ours - ref) / (1.0 + np.abs(ref))
    worst = np.unravel_index(np.argmax(scaled), scaled.shape)
    assert scaled.max() <= tol, (
        f"{result.name} {field}: max |ours - gym| / (1 + |gym|) = {scaled.max():.3g} > {tol} at "
        f"state/index {worst}: ours {ours[worst]!r} gym {ref[worst]!r}"
    )


@pytest.mark.parametrize("field", ["reset_obs", "obs", "reward", "qpos", "qvel"])
def test_one_step_matches_gymnasium(parity, field):
    _check(parity, field)


def test_terminated_matches_gymnasium(parity):
    ours, ref = parity.ours["terminated"], parity.gym["terminated"]
    bad = np.flatnonzero(ours != ref)
    assert bad.size == 0, f"{parity.name}: terminated differs at states {bad.tolist()}"
    if parity.name in TERMINATING:  # the sample must exercise falls
        assert ref.sum() >= 5, f"{parity.name}: only {ref.sum()} terminations among the states"


@pytest.mark.parametrize("part", ["qpos", "qvel"])
def test_reset_distribution_matches_gymnasium(parity, part):
    z = parity.reset_z[part]
    for moment in ("mean", "std", "kurtosis"):
        worst = int(np.argmax(z[moment]))
        assert z[moment][worst] <= Z_MAX, (
            f"{parity.name} reset {part}[{worst}] {moment}: z = {z[moment][worst]:.2f}; "
            f"ours mean/std/kurt {z['mean_a'][worst]:.4g}/{z['std_a'][worst]:.4g}/{z['kurt_a'][worst]:.3g}"
            f", gym {z['mean_b'][worst]:.4g}/{z['std_b'][worst]:.4g}/{z['kurt_b'][worst]:.3g}"
        )


# --- cheap checks (no compilation) ------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_defaults_match_gymnasium_v5(name):
    """Every argument of the gymnasium v5 constructor is a class attribute with v5's default."""
    _registered(name)
    ours = envs.REGISTRY[name]
    spec = gymnasium.spec(gp.GYM_IDS[name])
    theirs = gymnasium.envs.registration.load_env_creator(spec.entry_point)
    assert ours.max_episode_steps == spec.max_episode_steps
    assert not spec.kwargs, f"{spec.id} is registered with non-default kwargs {spec.kwargs}"
    missing, wrong = [], []
    for param in inspect.signature(theirs.__init__).parameters.values():
        if param.name in ("self", "default_camera_config") or param.kind is param.VAR_KEYWORD:
            continue
        if not hasattr(ours, param.name):
            missing.append(param.name)
        elif getattr(ours, param.name) != param.default:
            wrong.append((param.name, getattr(ours, param.name), param.default))
    assert not missing, f"{name}: v5 arguments without a class attribute: {missing}"
    assert not wrong, f"{name}: (argument, ours, v5 default) differ: {wrong}"


@pytest.mark.parametrize("name", NAMES)
def test_sizes_match_gymnasium(name):
    _registered(name)
    env = envs.make(name)
    gym_env = gymnasium.make(gp.GYM_IDS[name])
    assert env.observation_size == gym_env.observation_space.shape[0]
    assert env.action_size == gym_env.action_space.shape[0]
    np.testing.assert_allclose(env.dt, gym_env.unwrapped.dt)
    gym_env.close()


def test_my_tasks_are_registered():
    assert set(MINE) <= set(envs.REGISTRY)
    assert set(envs.REGISTRY) <= set(NAMES)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        envs.make("half_cheetah_v9")
    for name in envs.REGISTRY:
        assert name in str(err.value)


def test_unknown_setting_and_physics_rejected():
    with pytest.raises(TypeError, match="no_such_weight"):
        envs.make("hopper", no_such_weight=1.0)
    with pytest.raises(ValueError, match="physics"):
        envs.make("hopper", physics="v4")


def test_wrong_action_shape_raises():
    env = envs.make("inverted_pendulum")
    state = jax.eval_shape(env.reset, jax.random.key(0))  # traces only: no compile
    with pytest.raises(ValueError, match=r"action of shape \(1,\)"):
        env.step(state, jnp.zeros((2,)))
    with pytest.raises(ValueError, match="VecEnv"):
        env.step(state, jnp.zeros((4, 1)))


def test_import_envs_is_this_repo():
    """PyPI has an unrelated package called `envs`; ours must win."""
    assert os.path.commonpath([os.path.abspath(envs.__file__), REPO]) == REPO
    assert hasattr(envs, "REGISTRY") and hasattr(envs, "make")


def test_open_loop_trajectory_matches_gymnasium():
    """20 env steps open loop from 4 gymnasium resets (Hopper: contacts and falls): the states
    stay at float32 level and the summed reward agrees. Unlike the one-step test, which copies
    gymnasium's "before" kinematics into our state, this runs our own env from reset to step 20,
    so the warm start, the carried kinematics and the reward's "before" are all ours. Measured:
    qvel rel. error max 1.5e-5 at step 1 and 2.5e-6 at step 20, summed reward within 6e-6."""
    drift = gp.run_drift("hopper", n_starts=4, n_steps=20, checkpoints=(1, 20))
    assert drift.rel["qpos"].max() < 1e-4 and drift.rel["qvel"].max() < 1e-3, drift.summary()
    assert np.all(drift.return_diff < 1e-4 * (1.0 + np.abs(drift.gym_return))), drift.summary()
    assert drift.gym_return.min() > 5.0, "hopper should collect its healthy reward for 20 steps"

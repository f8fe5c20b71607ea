"""Parity harness: our MJX ports against Gymnasium's own v5 environments (MuJoCo C, float64).

Used by tests/test_env_parity.py for every registered task, and by hand to measure a physics
setting's fidelity:

    from tests.gym_parity import run_parity            # or `import gym_parity` from tests/
    result = run_parity("hopper")                       # physics="v5", 128 states, 2000 resets
    print(result.summary())

What `run_parity` does, for one task:
1. Rolls out gymnasium's env (`gymnasium.make(GYM_IDS[name])`, seeded) with uniform random
   actions, resetting whenever an episode terminates or is truncated, and keeps `n_states`
   physics states (qpos, qvel; for reacher the goal is part of qpos): up to a quarter are states
   whose next step terminated and states just after a termination (falls), the rest are drawn
   at random from everything visited (reset states included).
2. From each state both simulators restart and take one step with the same action: ours
   `env.reset_to(qpos, qvel)` then `env.step(state, a)` with a ~ U[-1, 1]^nu; gymnasium
   `mj_resetData` + `set_state(qpos, qvel)` (mj_forward) then `step(ctrl)`, where ctrl is the
   same linear map of `a` into ctrlrange that `MujocoEnv.scale_action` applies. Compared: the
   reset observation (after mj_forward only, like gymnasium's reset), the stepped observation,
   reward, terminated, and qpos/qvel after the step.
3. Reset distribution: mean, std and excess kurtosis of the initial qpos/qvel over `n_resets`
   gymnasium resets and `n_resets` of ours (`env.reset`), as z-scores using standard errors.

Steps 2 and 3 on our side are ONE jitted, vmapped function, compiled once per (task, physics).

`run_drift(name, physics)` measures open-loop drift instead: from 16 gymnasium resets, the same
100 random actions in both simulators, states compared after steps 1, 10 and 100 (docs/ENVS.md,
"Drift"). From the shell: `python tests/gym_parity.py humanoid --drift --physics fast`.

`gym_model_hook(model)` may edit gymnasium's MjModel before anything runs (e.g. humanoid's PGS ->
Newton substitution). The default, `sync_options_hook(env)`, copies every MjOption field in which
our env's model differs from gymnasium's XML model, so "v5" parity compares the same equations;
pass `gym_model_hook=None` to compare against the unmodified v5 model (fidelity of "fast").
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any, Callable, Optional

import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:  # the repo's `envs`, never PyPI's unrelated `envs` package
    sys.path.insert(0, _REPO)

import gymnasium  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import mujoco  # noqa: E402

import envs  # noqa: E402

GYM_IDS = envs.GYMNASIUM_IDS

# MjOption fields that sync_options_hook compares and copies.
OPTION_FIELDS = (
    "timestep", "integrator", "solver", "iterations", "ls_iterations", "tolerance",
    "ls_tolerance", "noslip_iterations", "cone", "impratio", "density", "viscosity", "wind",
    "gravity", "disableflags", "enableflags",
)

ModelHook = Callable[[mujoco.MjModel], None]
_AUTO = object()


def option_differences(ours: mujoco.MjModel, theirs: mujoco.MjModel) -> dict[str, Any]:
    """{field: our value} for every OPTION_FIELDS entry where the two models differ."""
    diff = {}
    for field in OPTION_FIELDS:
        a, b = np.asarray(getattr(ours.opt, field)), np.asarray(getattr(theirs.opt, field))
        if a.shape != b.shape or not np.array_equal(a, b):
            diff[field] = getattr(ours.opt, field)
    return diff


def sync_options_hook(env: envs.MujocoEnv) -> ModelHook:
    """A hook that makes gymnasium's model use our env's solver/integrator settings."""

    def hook(model: mujoco.MjModel) -> None:
        for field, value in option_differences(env.mj_model, model).items():
            if np.ndim(value):
                getattr(model.opt, field)[:] = value
            else:
                setattr(model.opt, field, value)

    return hook


def make_gym_env(name: str, gym_model_hook: Optional[ModelHook] = None) -> gymnasium.Env:
    env = gymnasium.make(GYM_IDS[name])
    if gym_model_hook is not None:
        gym_model_hook(env.unwrapped.model)
    return env


def collect_states(
    gym_env: gymnasium.Env, n_states: int, seed: int, steps_per_state: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random-action rollouts of the (time-limited) gymnasium env.

    Returns qpos [n, nq], qvel [n, nv] (float64) and kind [n] (0 ordinary, 1 the next step
    terminated, 2 just terminated).
    """
    u = gym_env.unwrapped
    gym_env.action_space.seed(seed)
    gym_env.reset(seed=seed)
    qpos, qvel, kind = [], [], []
    for _ in range(n_states * steps_per_state):
        qpos.append(u.data.qpos.copy())
        qvel.append(u.data.qvel.copy())
        kind.append(0)
        _, _, terminated, truncated, _ = gym_env.step(gym_env.action_space.sample())
        if terminated:
            kind[-1] = 1
            qpos.append(u.data.qpos.copy())
            qvel.append(u.data.qvel.copy())
            kind.append(2)
        if terminated or truncated:
            gym_env.reset()
    qpos, qvel, kind = np.array(qpos), np.array(qvel), np.array(kind)
    rng = np.random.default_rng(seed)
    falls = np.flatnonzero(kind > 0)
    falls = rng.permutation(falls)[: n_states // 4]
    rest = rng.choice(np.flatnonzero(kind == 0), n_states - len(falls), replace=False)
    pick = np.sort(np.concatenate([falls, rest]))
    return qpos[pick], qvel[pick], kind[pick]


def _gym_ctrl(model: mujoco.MjModel, actions: np.ndarray) -> np.ndarray:
    """Actions [..., nu] in [-1, 1] -> gymnasium's ctrl (float64): the linear map into ctrlrange
    that `MujocoEnv.scale_action` applies on our side."""
    low, high = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
    return low + (np.asarray(actions, np.float64) + 1.0) * 0.5 * (high - low)


def _gym_one_step(gym_env: gymnasium.Env, qpos, qvel, ctrl):
    """mj_resetData + set_state + step, per state. Returns dict of stacked arrays."""
    u = gym_env.unwrapped
    out = {k: [] for k in ("reset_obs", "obs", "reward", "terminated", "qpos", "qvel")}
    for q, v, c in zip(qpos, qvel, ctrl):
        mujoco.mj_resetData(u.model, u.data)  # zero warmstart, as mjx.make_data
        u.set_state(q, v)
        out["reset_obs"].append(u._get_obs())
        obs, reward, terminated, _, _ = u.step(c)
        out["obs"].append(obs)
        out["reward"].append(reward)
        out["terminated"].append(terminated)
        out["qpos"].append(u.data.qpos.copy())
        out["qvel"].append(u.data.qvel.copy())
    return {k: np.asarray(v) for k, v in out.items()}


def _gym_resets(gym_env: gymnasium.Env, n: int, seed: int):
    u = gym_env.unwrapped
    qpos, qvel = [], []
    gym_env.reset(seed=seed)
    for i in range(n):
        if i:
            gym_env.reset()
        qpos.append(u.data.qpos.copy())
        qvel.append(u.data.qvel.copy())
    return np.asarray(qpos), np.asarray(qvel)


# XLA options for the parity executable: it runs once on ~100 states, so compile time is what
# counts; optimisation level 0 cut its CPU compile time by about a third in our measurement.
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

_COMPILED: dict[tuple, tuple] = {}


def batched_fn(env: envs.MujocoEnv) -> Callable:
    """vmap of reset_to+step(qpos, qvel, action) and of the reset noise (keys), not jitted.

    The reset distribution uses `_reset_qpos_qvel`, the part of `env.reset` that draws the state
    (`reset` = `reset_to(*_reset_qpos_qvel(key))`, and reset_to is checked state by state).
    """

    def one(qpos, qvel, action):
        s0 = env.reset_to(qpos, qvel)
        s1 = env.step(s0, action)
        return {
            "reset_obs": s0.obs, "obs": s1.obs, "reward": s1.reward,
            "terminated": s1.terminated, "qpos": s1.data.qpos, "qvel": s1.data.qvel,
        }

    def fn(qpos, qvel, actions, keys):
        return jax.vmap(one)(qpos, qvel, actions), jax.vmap(env._reset_qpos_qvel)(keys)

    return fn


def run_batched(env: envs.MujocoEnv, *args):
    """Runs batched_fn(env) on args; compiled once per (env object, shapes) and cached."""
    key = (id(env),) + tuple((np.shape(a), str(getattr(a, "dtype", ""))) for a in args)
    if key not in _COMPILED:
        lowered = jax.jit(batched_fn(env)).lower(*args)
        _COMPILED[key] = (env, lowered.compile(COMPILER_OPTIONS))  # env kept alive: id unique
    return jax.block_until_ready(_COMPILED[key][1](*args))


def moment_z_scores(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Per-column z-scores of the difference in mean, std and excess kurtosis of samples a, b.

    Standard errors: mean s/sqrt(n); std sqrt(m4 - s^4) / (2 s sqrt(n)) (delta method on the
    sample variance, valid for any distribution with a 4th moment); excess kurtosis sqrt(24/n)
    (its normal-theory value; smaller for the bounded uniform and disc laws used here).
    Columns where both samples are constant get z = 0 if equal and inf otherwise.
    """

    def stats(x):
        n = len(x)
        m, s = x.mean(0), x.std(0)
        m4 = ((x - m) ** 4).mean(0)
        safe = np.where(s > 0, s, 1.0)
        return n, m, s, m4, np.where(s > 0, m4 / safe**4 - 3.0, 0.0)

    na, ma, sa, m4a, ka = stats(a)
    nb, mb, sb, m4b, kb = stats(b)
    const = (sa < 1e-12) & (sb < 1e-12)

    def z(diff, se):
        out = np.abs(diff) / np.where(se > 0, se, np.inf)
        out = np.where(const, np.where(np.abs(diff) < 1e-6, 0.0, np.inf), out)
        return out

    se_mean = np.sqrt(sa**2 / na + sb**2 / nb)
    se_std = np.sqrt(
        np.maximum(m4a - sa**4, 0) / (4 * np.maximum(sa, 1e-12) ** 2 * na)
        + np.maximum(m4b - sb**4, 0) / (4 * np.maximum(sb, 1e-12) ** 2 * nb)
    )
    se_kurt = np.sqrt(24.0 / na + 24.0 / nb)
    return {
        "mean": z(ma - mb, se_mean), "std": z(sa - sb, se_std), "kurtosis": z(ka - kb, se_kurt),
        "mean_a": ma, "mean_b": mb, "std_a": sa, "std_b": sb, "kurt_a": ka, "kurt_b": kb,
    }


def _errors(ours: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    d = np.abs(ours.astype(np.float64) - ref)
    return {"max_abs": float(d.max(initial=0.0)), "max_scaled": float((d / (1.0 + np.abs(ref))).max(initial=0.0))}


def _relative_error(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """[..., n] arrays -> [...] ||ours - ref|| / max(||ref||, 1e-6)."""
    return np.linalg.norm(ours - ref, axis=-1) / np.maximum(np.linalg.norm(ref, axis=-1), 1e-6)


def _norm_rel(ours: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Per-state relative error (_relative_error): median and max over states."""
    rel = _relative_error(ours, ref)
    return {"median": float(np.median(rel)), "max": float(rel.max())}


@dataclasses.dataclass
class ParityResult:
    name: str
    physics: str
    gym_options_changed: dict[str, Any]
    kind: np.ndarray  # [n] 0 ordinary state, 1 pre-termination, 2 post-termination
    actions: np.ndarray  # [n, nu] in [-1, 1]
    ours: dict[str, np.ndarray]
    gym: dict[str, np.ndarray]
    reset_z: Optional[dict[str, dict[str, np.ndarray]]]  # "qpos"/"qvel" -> moment_z_scores
    seconds: dict[str, float]

    def errors(self) -> dict[str, Any]:
        o, g = self.ours, self.gym
        out = {
            "reset_obs": _errors(o["reset_obs"], g["reset_obs"]),
            "obs": _errors(o["obs"], g["obs"]),
            "reward": _errors(o["reward"], g["reward"]),
            "qpos": _errors(o["qpos"], g["qpos"]),
            "qvel": _errors(o["qvel"], g["qvel"]),
            "qpos_rel": _norm_rel(o["qpos"], g["qpos"]),
            "qvel_rel": _norm_rel(o["qvel"], g["qvel"]),
            "terminated_mismatch": int((o["terminated"] != g["terminated"]).sum()),
            "terminated_gym": int(g["terminated"].sum()),
            "n_states": len(self.kind),
        }
        if self.reset_z is not None:
            for part, z in self.reset_z.items():
                for moment in ("mean", "std", "kurtosis"):
                    out[f"reset_{part}_{moment}_zmax"] = float(np.max(z[moment]))
        return out

    def summary(self) -> str:
        e = self.errors()
        lines = [f"{self.name} physics={self.physics} gym options changed: {self.gym_options_changed}"]
        for k, v in e.items():
            lines.append(f"  {k}: {v}")
        lines.append(f"  seconds: {self.seconds}")
        return "\n".join(lines)


def run_parity(
    name: str,
    physics: str = "v5",
    n_states: int = 128,
    n_resets: int = 2000,
    seed: int = 0,
    env: Optional[envs.MujocoEnv] = None,
    gym_model_hook: Any = _AUTO,
) -> ParityResult:
    """One-step parity and (if n_resets) reset-distribution comparison; see the module doc."""
    t0 = time.perf_counter()
    env = env if env is not None else envs.make(name, physics)
    if gym_model_hook is _AUTO:
        gym_model_hook = sync_options_hook(env)
    gym_env = make_gym_env(name, gym_model_hook)
    u = gym_env.unwrapped
    changed = option_differences(u.model, envs.base.gymnasium_model(env.xml_file))
    if u.model.nq != env.mj_model.nq or u.model.nu != env.action_size:
        raise AssertionError(f"{name}: gymnasium's model and ours differ in size")

    qpos, qvel, kind = collect_states(gym_env, n_states, seed)
    rng = np.random.default_rng(seed + 1)
    actions = rng.uniform(-1.0, 1.0, (len(qpos), env.action_size)).astype(np.float32)
    ctrl = _gym_ctrl(u.model, actions)
    t1 = time.perf_counter()
    gym = _gym_one_step(gym_env, qpos, qvel, ctrl)
    reset_gym = _gym_resets(gym_env, n_resets, seed) if n_resets else None
    t2 = time.perf_counter()

    keys = jax.random.split(jax.random.key(seed), max(n_resets, 1))
    ours, reset_ours = run_batched(
        env, jnp.asarray(qpos, jnp.float32), jnp.asarray(qvel, jnp.float32), jnp.asarray(actions), keys
    )
    t3 = time.perf_counter()
    ours = {k: np.asarray(v) for k, v in ours.items()}
    reset_z = None
    if n_resets:
        reset_z = {
            "qpos": moment_z_scores(np.asarray(reset_ours[0], np.float64), reset_gym[0]),
            "qvel": moment_z_scores(np.asarray(reset_ours[1], np.float64), reset_gym[1]),
        }
    gym_env.close()
    return ParityResult(
        name=name, physics=physics, gym_options_changed=changed, kind=kind, actions=actions,
        ours=ours, gym=gym, reset_z=reset_z,
        seconds={"collect": t1 - t0, "gym": t2 - t1, "ours_jit+run": t3 - t2},
    )


def _gym_rollout(gym_env: gymnasium.Env, qpos0, qvel0, actions, checkpoints):
    """Open loop from (qpos0, qvel0) with actions [T, nu] in [-1, 1], terminations ignored.

    Returns qpos [C, nq], qvel [C, nv] after each checkpoint step and the summed reward."""
    u = gym_env.unwrapped
    mujoco.mj_resetData(u.model, u.data)  # zero warm start, as after gymnasium's reset
    u.set_state(qpos0, qvel0)
    qpos, qvel, total = [], [], 0.0
    for t, ctrl in enumerate(_gym_ctrl(u.model, actions), start=1):
        total += u.step(ctrl)[1]
        if t in checkpoints:
            qpos.append(u.data.qpos.copy())
            qvel.append(u.data.qvel.copy())
    return np.asarray(qpos), np.asarray(qvel), total


@dataclasses.dataclass
class DriftResult:
    """Open-loop drift from gymnasium over one action sequence per start: ours, and gymnasium
    against itself from a start perturbed by `floor_noise` (the chaos floor: how far any two
    simulations this close apart would drift; 1e-7 is about float32's resolution of O(1) numbers)."""

    name: str
    physics: str
    gym_options_changed: dict[str, Any]
    checkpoints: tuple[int, ...]  # env steps after which the states are compared
    floor_noise: float
    rel: dict[str, np.ndarray]  # "qpos"/"qvel" and "floor_qpos"/"floor_qvel": [C, n_starts]
    gym_return: np.ndarray  # [n_starts] gymnasium's summed reward
    return_diff: np.ndarray  # [n_starts] |ours - gymnasium's|
    floor_return_diff: np.ndarray  # [n_starts] |perturbed gymnasium - gymnasium|
    seconds: dict[str, float]

    def errors(self) -> dict[str, Any]:
        out = {}
        for i, t in enumerate(self.checkpoints):
            for part, rel in self.rel.items():
                out[f"step{t}_{part}"] = {"median": float(np.median(rel[i])), "max": float(rel[i].max())}
        out["return_abs_diff_max"] = float(self.return_diff.max())
        out["floor_return_abs_diff_max"] = float(self.floor_return_diff.max())
        out["gym_return_mean"] = float(self.gym_return.mean())
        return out

    def summary(self) -> str:
        lines = [f"{self.name} physics={self.physics} drift vs gymnasium (options changed there: "
                 f"{self.gym_options_changed}), {len(self.gym_return)} starts, chaos floor: "
                 f"gymnasium from qvel0 + {self.floor_noise:g} N(0, 1)"]
        lines += [f"  {k}: {v}" for k, v in self.errors().items()]
        lines.append(f"  seconds: {self.seconds}")
        return "\n".join(lines)


def run_drift(
    name: str,
    physics: str = "v5",
    n_starts: int = 16,
    n_steps: int = 100,
    seed: int = 500,
    checkpoints: tuple[int, ...] = (1, 10, 100),
    floor_noise: float = 1e-7,
    env: Optional[envs.MujocoEnv] = None,
    gym_model_hook: Optional[ModelHook] = None,
) -> DriftResult:
    """Open loop from gymnasium's resets: start i is `reset(seed=seed + i)`, then both simulators
    take the same n_steps uniform-random actions (drawn with seed + i), terminations ignored.

    The reference is the unmodified v5 env by default (gym_model_hook None), so the drift is
    everything that separates our `physics` from v5: solver substitutions, iteration counts,
    MJX, float32. One jitted, vmapped env step, compiled once and called n_steps times.
    """
    if max(checkpoints) > n_steps:
        raise ValueError(f"checkpoints {checkpoints} go past n_steps={n_steps}")
    t0 = time.perf_counter()
    env = env if env is not None else envs.make(name, physics)
    gym_env = make_gym_env(name, gym_model_hook)
    u = gym_env.unwrapped
    changed = option_differences(u.model, envs.base.gymnasium_model(env.xml_file))

    starts, actions = [], []
    for i in range(n_starts):
        gym_env.reset(seed=seed + i)
        starts.append((u.data.qpos.copy(), u.data.qvel.copy()))
        rng = np.random.default_rng(seed + i)
        actions.append(rng.uniform(-1.0, 1.0, (n_steps, env.action_size)).astype(np.float32))
    gym = [_gym_rollout(gym_env, q, v, a, checkpoints) for (q, v), a in zip(starts, actions)]
    noise = np.random.default_rng(seed - 1)
    floor = [_gym_rollout(gym_env, q, v + floor_noise * noise.normal(size=v.shape), a, checkpoints)
             for (q, v), a in zip(starts, actions)]
    gym_env.close()
    t1 = time.perf_counter()

    qpos0 = jnp.asarray(np.array([q for q, _ in starts]), jnp.float32)
    qvel0 = jnp.asarray(np.array([v for _, v in starts]), jnp.float32)
    reset = jax.jit(jax.vmap(env.reset_to))
    step = jax.jit(jax.vmap(env.step)).lower(
        jax.eval_shape(reset, qpos0, qvel0), jax.ShapeDtypeStruct((n_starts, env.action_size), jnp.float32),
    ).compile(COMPILER_OPTIONS)
    state = reset(qpos0, qvel0)
    t2 = time.perf_counter()
    our_q, our_v, our_return = [], [], np.zeros(n_starts)
    for t in range(1, n_steps + 1):
        state = step(state, jnp.asarray(np.stack([a[t - 1] for a in actions])))
        our_return += np.asarray(state.reward, np.float64)
        if t in checkpoints:
            our_q.append(np.asarray(state.data.qpos, np.float64))
            our_v.append(np.asarray(state.data.qvel, np.float64))
    t3 = time.perf_counter()

    ref_q = np.stack([g[0] for g in gym], axis=1)  # [C, N, nq]
    ref_v = np.stack([g[1] for g in gym], axis=1)
    gym_return = np.array([g[2] for g in gym])
    rel = {
        "qpos": _relative_error(np.asarray(our_q), ref_q),
        "qvel": _relative_error(np.asarray(our_v), ref_v),
        "floor_qpos": _relative_error(np.stack([f[0] for f in floor], axis=1), ref_q),
        "floor_qvel": _relative_error(np.stack([f[1] for f in floor], axis=1), ref_v),
    }
    return DriftResult(
        name=name, physics=physics, gym_options_changed=changed, checkpoints=tuple(sorted(checkpoints)),
        floor_noise=floor_noise, rel=rel, gym_return=gym_return,
        return_diff=np.abs(our_return - gym_return),
        floor_return_diff=np.abs(np.array([f[2] for f in floor]) - gym_return),
        seconds={"gym": t1 - t0, "compile": t2 - t1, "ours": t3 - t2},
    )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=[n for n in GYM_IDS if n in envs.REGISTRY])
    parser.add_argument("--physics", default="v5")
    parser.add_argument("--states", type=int, default=128)
    parser.add_argument("--resets", type=int, default=2000)
    parser.add_argument("--unsynced", action="store_true", help="compare against the unmodified v5 model")
    parser.add_argument("--drift", action="store_true",
                        help="open-loop drift over 100 env steps from 16 resets (against the unmodified v5 model)")
    parser.add_argument("--fast-physics", type=json.loads, default=None, metavar="JSON",
                        help='replaces the task\'s fast_physics, e.g. \'{"iterations": 8, "ls_iterations": 16}\'')
    args = parser.parse_args()
    for task in args.names:
        extra = {} if args.fast_physics is None else {"fast_physics": args.fast_physics}
        env = envs.make(task, args.physics, **extra)
        if args.drift:
            print(run_drift(task, args.physics, env=env).summary(), flush=True)
            continue
        hook = None if args.unsynced else _AUTO
        print(run_parity(task, args.physics, args.states, args.resets, env=env, gym_model_hook=hook).summary(),
              flush=True)

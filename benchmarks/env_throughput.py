"""Environment throughput: our MJX ports of Gymnasium v5 tasks against brax's MJX humanoid.

    python benchmarks/env_throughput.py                              # CPU: humanoid, N = 8 32
    python benchmarks/env_throughput.py --num-envs 1024 4096 --out env.json   # GPU
    python benchmarks/env_throughput.py --task inverted_pendulum --no-brax

What is timed
-------------
One jitted program per variant: a `lax.scan` of `--steps` vector steps on N envs, with a fresh
uniform random action in [-1, 1] drawn inside the scan at every step (the same for every
variant). The first call (trace + compile + one run) is reported as `first_call_s` and its excess
over the steady state as `compile_s`; the steady state is the best of `--repeats` further calls,
each starting from the same reset state and blocked on. Variants are compiled first and then
timed round-robin (repeat 1 of every variant, then repeat 2, ...), so that the load of a shared
machine falls on all of them alike: compare ratios from one run, not figures across runs.
steps/s = N * steps / best_s (env steps, i.e. vector steps times N; one env step is frame_skip
physics steps in both implementations: 5 for humanoid).

Variants (`--modes`)
--------------------
ours/vecenv   `envs.VecEnv(env, N).step`, exactly what training runs: auto-reset drawing new
              reset noise for every ended episode (a vmapped `env.reset`, i.e. one `mjx.forward`
              per env, under a `lax.cond` that runs whenever *any* env ended), plus episode
              return/length bookkeeping and the successor observation.
ours/bare     `jax.vmap(env.step)`: physics + observation + reward + termination, no resets.
brax/wrap     `brax.envs.training.wrap(env)` (VmapWrapper + EpisodeWrapper + AutoResetWrapper),
              what brax's PPO/SAC step. Its auto-reset does not reset: it `jnp.where`s the cached
              first state of each env back in at every step (no forward pass, every episode of an
              env starts from the same state).
brax/bare     `jax.vmap(env.step)` of brax's env, no wrappers.

What is fair: bare vs bare compares the cost of one environment step (physics, observation,
reward). vecenv vs wrap compares what each trainer actually pays per env step; ours does more
work per ended episode by design (fresh reset noise needs a forward pass). Both ratios are
printed (ours/brax, per N, per physics setting). With random actions a humanoid falls within a
few dozen steps, so at the N here some env ends an episode at nearly every vector step and the
`lax.cond` in VecEnv.step almost always takes the reset branch: vecenv/bare is the reset cost.

brax's `humanoid` (backend='mjx') is a speed reference only, not the same task: its MJCF lets
only the two feet collide with the floor (ours: the Gymnasium humanoid.xml, every geom against
the floor and limbs against each other), it runs Euler with 1 Newton iteration and 4 line-search
iterations (ours v5: RK4, 50 iterations; ours "fast": the task's `fast_physics`), its observation
has no contact forces (244 vs 348) and so skips `mj_rnePostConstraint`. The `opt` column says
which solver settings each row ran. brax prints a deprecation warning when its envs load.

Every measurement is its own function; one that fails (brax missing, out of memory) is reported
as a row with `error` set and the rest go on. `--out FILE.json` writes {"meta", "rows", "ratios"}.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python benchmarks/env_throughput.py` from anywhere
    sys.path.insert(0, ROOT)

import envs  # noqa: E402
from benchmarks._timing import attempt, time_round_robin, timing_stats  # noqa: E402

MODES = ("vecenv", "bare")


@dataclass
class Bench:
    """A compiled variant: `run()` executes one timed call and blocks until it is done."""

    row: dict[str, Any]
    run: Callable[[], None]
    times: list[float] = field(default_factory=list)


def _block(tree) -> None:
    jax.block_until_ready(tree)


def _timed_first_call(fn: Callable, *args) -> float:
    t0 = time.perf_counter()
    _block(fn(*args))
    return time.perf_counter() - t0


def _scan_program(step: Callable, num_envs: int, action_size: int, steps: int) -> Callable:
    """jit((state, key) -> (state, key)): `steps` vector steps with fresh random actions."""

    def program(state, key):
        def body(carry, _):
            state, key = carry
            key, k_act = jax.random.split(key)
            action = jax.random.uniform(k_act, (num_envs, action_size), minval=-1.0, maxval=1.0)
            return (step(state, action), key), None

        return jax.lax.scan(body, (state, key), None, length=steps)[0]

    return jax.jit(program)


def _opt_summary(o) -> str:
    """Solver settings of an MjOption (ours: env.mj_model.opt) or an mjx Option (brax: env.sys.opt)."""
    integrator = {0: "euler", 1: "rk4", 2: "implicit", 3: "implicitfast"}.get(int(o.integrator), str(o.integrator))
    solver = {0: "pgs", 1: "cg", 2: "newton"}.get(int(o.solver), str(o.solver))
    return f"{integrator}/{solver} it={int(o.iterations)} ls={int(o.ls_iterations)} dt={float(o.timestep):g}"


def _make_bench(row: dict, step: Callable, state0, action_size: int, steps: int, seed: int) -> Bench:
    n = row["num_envs"]
    program = _scan_program(step, n, action_size, steps)
    key = jax.random.PRNGKey(seed + 1)
    row["first_call_s"] = _timed_first_call(program, state0, key)
    return Bench(row=row, run=lambda: _block(program(state0, key)))


# --- one function per measurement ----------------------------------------------------------------
def make_env(task: str, physics: str, fast_physics: Optional[dict] = None, rk4_unroll: int = 3):
    """envs.make, with the task's `fast_physics` replaced by `fast_physics` when one is given."""
    overrides = {} if fast_physics is None else {"fast_physics": dict(fast_physics)}
    return envs.make(task, physics=physics, rk4_stage_unroll=rk4_unroll, **overrides)


def physics_label(physics: str, rk4_unroll: int) -> str:
    """"fast", or "fast-u1" for RK4 stages rolled into a loop (envs.base.mjx_step)."""
    return physics if rk4_unroll == 3 else f"{physics}-u{rk4_unroll}"


def prepare_ours(task: str, physics: str, num_envs: int, steps: int, mode: str, seed: int,
                 fast_physics: Optional[dict] = None, rk4_unroll: int = 3) -> Bench:
    """Our env under `physics`, as VecEnv (mode 'vecenv') or a bare vmapped env.step ('bare')."""
    env = make_env(task, physics, fast_physics, rk4_unroll)
    row = dict(impl="ours", task=task, physics=physics_label(physics, rk4_unroll), mode=mode,
               num_envs=num_envs, steps=steps, obs_size=env.observation_size,
               opt=_opt_summary(env.mj_model.opt))
    key = jax.random.PRNGKey(seed)
    if mode == "vecenv":
        vec = envs.VecEnv(env, num_envs)
        state0 = jax.jit(vec.reset)(key)
        step = vec.step
    elif mode == "bare":
        state0 = jax.jit(jax.vmap(env.reset))(jax.random.split(key, num_envs))
        step = jax.vmap(env.step)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return _make_bench(row, step, state0, env.action_size, steps, seed)


def prepare_brax(num_envs: int, steps: int, mode: str, seed: int, name: str = "humanoid") -> Bench:
    """brax's MJX env `name`: training.wrap (mode 'vecenv', shown as 'wrap') or bare vmap."""
    from brax import envs as brax_envs  # optional dependency: pip install brax

    env = brax_envs.get_environment(name, backend="mjx")
    row = dict(impl="brax", task=name, physics="brax-mjx", mode="wrap" if mode == "vecenv" else mode,
               num_envs=num_envs, steps=steps, obs_size=int(env.observation_size),
               opt=_opt_summary(env.sys.opt))  # brax edits sys.opt, not sys.mj_model
    keys = jax.random.split(jax.random.PRNGKey(seed), num_envs)  # raw [N, 2]: EpisodeWrapper needs it
    if mode == "vecenv":
        wrapped = brax_envs.training.wrap(env, episode_length=1000)
        state0 = jax.jit(wrapped.reset)(keys)
        step = wrapped.step
    elif mode == "bare":
        state0 = jax.jit(jax.vmap(env.reset))(keys)
        step = jax.vmap(env.step)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return _make_bench(row, step, state0, int(env.action_size), steps, seed)


def _finish(b: Bench) -> dict:
    row = dict(b.row)
    if not b.times:
        row.setdefault("error", "no timed call succeeded")
        return row
    stats = timing_stats(b.times)
    best = stats["best_s"]
    row.update(stats, compile_s=max(row["first_call_s"] - best, 0.0),
               steps_per_s=row["num_envs"] * row["steps"] / best, error=None)
    return row


def ratios(rows: list[dict]) -> list[dict]:
    """ours/brax steps/s per N, physics and mode pair; and ours vecenv/bare (the reset overhead)."""
    ok = {(r["impl"], r["physics"], r["mode"], r["num_envs"]): r["steps_per_s"]
          for r in rows if r.get("error") is None and r.get("steps_per_s")}
    out = []
    for (impl, physics, mode, n), sps in sorted(ok.items(), key=lambda kv: (kv[0][3], kv[0][1], kv[0][2])):
        if impl != "ours":
            continue
        brax_mode = "wrap" if mode == "vecenv" else "bare"
        brax = ok.get(("brax", "brax-mjx", brax_mode, n))
        if brax:
            out.append(dict(num_envs=n, what=f"ours {physics} {mode} / brax {brax_mode}", ratio=sps / brax))
        if mode == "vecenv" and ("ours", physics, "bare", n) in ok:
            out.append(dict(num_envs=n, what=f"ours {physics} vecenv / ours {physics} bare",
                            ratio=sps / ok[("ours", physics, "bare", n)]))
        unrolled = ("ours", physics.split("-u")[0], mode, n)
        if "-u" in physics and unrolled in ok:
            out.append(dict(num_envs=n, what=f"ours {physics} {mode} / ours {unrolled[1]} {mode}",
                            ratio=sps / ok[unrolled]))
    return out


def print_table(rows: list[dict], ratio_rows: list[dict], legend: bool = True) -> None:
    head = f"{'impl':5} {'task':18} {'physics':8} {'mode':7} {'N':>6} {'first s':>8} {'compile s':>9} " \
           f"{'best s':>8} {'steps/s':>11}  opt"
    print("\n" + head)
    print("-" * len(head))
    for r in rows:
        if r.get("error"):
            print(f"{r['impl']:5} {r['task']:18} {r['physics']:8} {r['mode']:7} {r['num_envs']:>6}  "
                  f"FAILED: {r['error']}")
            continue
        print(f"{r['impl']:5} {r['task']:18} {r['physics']:8} {r['mode']:7} {r['num_envs']:>6} "
              f"{r['first_call_s']:>8.2f} {r['compile_s']:>9.2f} {r['best_s']:>8.4f} "
              f"{r['steps_per_s']:>11,.0f}  {r['opt']}")
    if ratio_rows:
        print("\nratios (steps/s over steps/s, measured side by side in this run)")
        for q in ratio_rows:
            print(f"  N={q['num_envs']:<6} {q['what']:42} {q['ratio']:.3f}")
    if not legend:
        return
    print("\nours 'vecenv' = envs.VecEnv.step as training uses it (auto-reset with fresh reset noise); "
          "'bare' = vmapped env.step; brax 'wrap' = brax.envs.training.wrap (cached-state auto-reset).")


def _git(*args: str) -> Optional[str]:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
    except Exception:
        return None


def task_source_sha(task: str) -> Optional[str]:
    """sha256 (12 hex) of the task's module: the ports are still changing, the commit may not say."""
    import hashlib
    import inspect

    try:
        with open(inspect.getsourcefile(envs.REGISTRY[task]), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()[:12]
    except Exception:
        return None


def _meta() -> dict:
    import mujoco
    from mujoco import mjx  # noqa: F401

    commit = (_git("rev-parse", "--short", "HEAD") or "").strip() or None
    status = _git("status", "--porcelain", "--untracked-files=all", "--", "envs", "savgo_mjx", "benchmarks")
    try:
        from importlib.metadata import version
        mjx_version = version("mujoco-mjx")
    except Exception:
        mjx_version = None
    return dict(commit=commit, dirty_files=None if status is None else len(status.splitlines()),
                backend=jax.default_backend(), devices=[str(d) for d in jax.devices()],
                jax=jax.__version__, mujoco=mujoco.__version__, mujoco_mjx=mjx_version,
                python=platform.python_version(), cpu_count=os.cpu_count(),
                matmul_precision=str(jax.config.jax_default_matmul_precision))


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    gpu = jax.default_backend() != "cpu"
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="humanoid", choices=sorted(envs.REGISTRY))
    p.add_argument("--physics", nargs="+", default=list(envs.PHYSICS), choices=list(envs.PHYSICS))
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES),
                   help="vecenv: VecEnv (brax: training.wrap); bare: vmapped env.step")
    p.add_argument("--num-envs", type=int, nargs="+", default=[1024, 4096] if gpu else [8, 32])
    p.add_argument("--steps", type=int, default=100 if gpu else 50, help="vector steps per scan")
    p.add_argument("--repeats", type=int, default=3, help="timed calls after the first; best is kept")
    p.add_argument("--fast-physics", type=json.loads, default=None, metavar="JSON",
                   help='replaces the task\'s fast_physics for the "fast" rows, e.g. '
                        '\'{"iterations": 2, "ls_iterations": 4}\' (a candidate setting)')
    p.add_argument("--rk4-unroll", type=int, nargs="+", default=[3], choices=(1, 2, 3),
                   help="RK4 stages unrolled for free/ball-joint tasks (3: MJX's; 1 compiles faster); "
                        "rows for values other than 3 show physics as e.g. 'fast-u1'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-brax", action="store_true", help="skip brax's humanoid")
    p.add_argument("--brax-env", default="humanoid", help="brax.envs name of the reference env")
    p.add_argument("--out", default=None, help="write {meta, rows, ratios} as JSON here")
    args = p.parse_args(argv)
    if min(args.num_envs) <= 0 or args.steps <= 0 or args.repeats <= 0:
        p.error("--num-envs, --steps and --repeats must be positive")
    return args


def main(argv: Optional[list[str]] = None) -> dict:
    """Runs the benchmark; returns (and with --out writes) {"meta", "rows", "ratios"}."""
    args = parse_args(argv)
    # As training sets it (savgo_mjx.train_loop.configure_jax): TF32 matmuls have produced NaNs in
    # MJX on GPU. No persistent compilation cache here: it would hide compile times.
    jax.config.update("jax_default_matmul_precision", "highest")
    meta = _meta()
    meta.update(args=vars(args), argv=list(sys.argv[1:] if argv is None else argv),
                task_source_sha256=task_source_sha(args.task))
    print(f"backend {meta['backend']}, jax {meta['jax']}, mujoco {meta['mujoco']}, "
          f"mujoco-mjx {meta['mujoco_mjx']}, commit {meta['commit']} "
          f"(+{meta['dirty_files']} uncommitted files), {args.task} source {meta['task_source_sha256']}")
    rows: list[dict] = []
    result = dict(meta=meta, rows=rows, ratios=[])
    for n in args.num_envs:
        print(f"N = {n}", flush=True)
        benches: list[Bench] = []
        errors: list[dict] = []
        for physics in args.physics:
            for unroll in args.rk4_unroll:
                label = physics_label(physics, unroll)
                for mode in args.modes:
                    base = dict(impl="ours", task=args.task, physics=label, mode=mode, num_envs=n,
                                steps=args.steps)
                    b = attempt(f"ours {args.task} {label} {mode}",
                                lambda: prepare_ours(args.task, physics, n, args.steps, mode, args.seed,
                                                     args.fast_physics, unroll), errors, base)
                    if b:
                        benches.append(b)
        if not args.no_brax:
            for mode in args.modes:
                shown = "wrap" if mode == "vecenv" else mode
                base = dict(impl="brax", task=args.brax_env, physics="brax-mjx", mode=shown,
                            num_envs=n, steps=args.steps)
                b = attempt(f"brax {args.brax_env} {shown}",
                            lambda: prepare_brax(n, args.steps, mode, args.seed, args.brax_env), errors, base)
                if b:
                    benches.append(b)
        time_round_robin(benches, args.repeats)
        done = [_finish(b) for b in benches] + errors
        del benches
        rows.extend(done)
        if len(args.num_envs) > 1:  # this N's table now: a long run that dies keeps its results
            print_table(done, ratios(done), legend=False)
        result = _write(args.out, meta, rows)
    print_table(rows, result["ratios"])
    if args.out:
        print(f"wrote {args.out}")
    return result


def _write(path: Optional[str], meta: dict, rows: list[dict]) -> dict:
    """{meta, rows, ratios}; written to `path` (after every N, so partial runs leave a file)."""
    result = dict(meta=meta, rows=rows, ratios=ratios(rows))
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump(result, f, indent=2, default=str)
        os.replace(path + ".tmp", path)
    return result


if __name__ == "__main__":
    main()

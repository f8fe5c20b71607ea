"""Training throughput with the real Trainer/Agent code: where an iteration's time goes, SAVGO's
update cost over SAC's, and end-to-end training env steps/s over raw env steps/s.

    python benchmarks/train_throughput.py                                   # CPU: inverted_pendulum preset
    python benchmarks/train_throughput.py --env humanoid --physics fast --num-envs 1024 --out t.json
    python benchmarks/train_throughput.py --updates-only --env humanoid --num-candidates 16

Sizes come from the task's preset (configs/<env>.toml, else savgo_mjx.config.Config defaults),
overridden by the flags. Learning starts after `--warmup-steps` env steps (default: one batch), so
the timed part always runs the G updates of every iteration.

What is measured (all in one process, compiled first, then timed round-robin: repeat 1 of every
measurement, then repeat 2, ... best of `--repeats`; compile excluded and reported apart)
-------------------------------------------------------------------------------------------------
e2e        `jax.jit(Trainer.run_chunk, donate_argnums=0)` for `--iterations` iterations, as
           train.py runs it, after a warm-up chunk that fills the buffer (the warm-up run doubles
           as the compile check). env steps/s = N * iterations / best_s.
raw_env    `envs.VecEnv.step` with uniform random actions at the same N: a `lax.scan` of
           `--iterations` vector steps (the program of benchmarks/env_throughput.py, mode vecenv).
Parts of one iteration, each jitted on its own on the real (warmed-up) TrainState, repeated
`--reps` times inside a `fori_loop` per call, its carry donated and chained from call to call:
env_step   policy action (normalised obs -> actor sample) + `VecEnv.step` (auto-reset included).
insert     `replay.insert` of N transitions + `normalize.update_stats` (obs statistics).
updates    `Trainer.learn`: G updates, each sampling B transitions, normalising them and
           running `Agent.update` (savgo), on the warmed-up buffer.
updates_sac the same with `algo="sac"` (a fresh SAC agent, same buffer, same B/G/hidden): SAVGO's
           per-update cost over SAC's is the ratio asked for (goal <= 1.5).
updates_bf16 the same SAVGO updates from the same state with `candidate_dtype="bfloat16"` (the
           target trunk's P x K candidate pass in bfloat16, the critics' in float32): its cost
           over `updates` says what bf16 scoring buys (on CPU bfloat16 is emulated and slower;
           the question is for GPUs).
updates_tf32, updates_sac_tf32 the SAVGO and SAC updates with `update_precision="tensorfloat32"`
           (their network matmuls on TF32 tensor cores; SAVGO's candidate Q values stay float32):
           their cost over `updates` / `updates_sac` says what TF32 buys (nothing on CPU).
`--updates-only` measures just the five update parts, on a buffer of random transitions
(`synthetic_state`): no env program is compiled, so a sweep over K, P, M, B or hidden is quick.
`--flops-only` compiles and runs nothing: it prints XLA's operation count of one SAVGO and one SAC
update at the chosen sizes (see `update_flops`), a machine-independent floor of their cost ratio.
`--parts raw_env updates updates_sac` measures only those (e2e always runs: the parts start from
its warmed-up state); benchmarks/gpu_check.py uses it to stay inside its time budget.
`sum of parts` vs the e2e time per iteration shows what the fused program saves or adds (the
`lax.cond` around the updates, the warm-up `jnp.where`, metrics sums).

`--out FILE.json` writes {"meta", "config", "rows", "ratios", "flops"}; `main(argv)` returns the same.
Every measurement is its own function; one that fails is reported as a row with `error` set.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
import time
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import envs  # noqa: E402
from benchmarks import env_throughput  # noqa: E402
from benchmarks._timing import attempt, time_round_robin, timing_stats  # noqa: E402
from savgo_mjx.config import Config, defaults_for, validate  # noqa: E402
from savgo_mjx.agent import Agent, Hyper  # noqa: E402
from savgo_mjx.normalize import init_stats, normalize, update_stats  # noqa: E402
from savgo_mjx.replay import Transition, init_buffer, insert  # noqa: E402
from savgo_mjx.trainer import Trainer, TrainState  # noqa: E402

UPDATE_PARTS = ("updates", "updates_sac", "updates_bf16", "updates_tf32", "updates_sac_tf32")
PARTS = ("raw_env", "env_step", "insert", *UPDATE_PARTS)
"""What --parts can select; e2e (the warmed-up state the parts start from) always runs."""


@dataclass
class Bench:
    """A compiled measurement. `run()` executes one timed call (and blocks). One call covers
    `iterations` training iterations' worth of this part (N env steps each) and `updates`
    gradient updates (0 if none)."""

    row: dict[str, Any]
    run: Callable[[], None]
    iterations: int
    num_envs: int
    updates: int = 0
    times: list[float] = field(default_factory=list)


def _copy(tree):
    return jax.tree.map(jnp.copy, tree)


def _chained(fn: Callable, state, *args) -> tuple[Callable[[], None], float]:
    """Returns run() that feeds fn's output back as its next (donated) input, and the first
    call's time (trace + compile + one run)."""
    holder = [state]

    def run():
        holder[0] = fn(holder[0], *args)
        jax.block_until_ready(holder[0])

    t0 = time.perf_counter()
    run()
    return run, time.perf_counter() - t0


# --- one function per measurement ----------------------------------------------------------------
def prepare_e2e(trainer: Trainer, seed: int, iterations: int) -> tuple[Bench, TrainState]:
    """Trainer.run_chunk as train.py compiles it; returns the bench and a warmed-up state copy.
    Its first_call_s is the ahead-of-time compile plus the warm-up chunk."""
    cfg = trainer.cfg
    ts = trainer.init_members([dataclasses.replace(cfg, seed=seed)])  # one member: [1]-leading
    t0 = time.perf_counter()
    chunk = jax.jit(trainer.run_chunk, donate_argnums=0).lower(ts, jnp.int32(1)).compile()
    compile_s = time.perf_counter() - t0
    warm_iterations = math.ceil(max(cfg.warmup_steps, cfg.batch_size) / cfg.num_envs) + 1
    t0 = time.perf_counter()
    ts, _ = chunk(ts, jnp.int32(warm_iterations))
    jax.block_until_ready(ts)
    warm_s = time.perf_counter() - t0
    if int(ts.env_steps[0]) < cfg.warmup_steps or int(ts.buffer.size[0]) < cfg.batch_size:
        raise RuntimeError("warm-up did not reach the learning phase")
    snapshot = _copy(jax.tree.map(lambda x: x[0], ts))
    holder = [ts]
    learned = []

    def run():
        holder[0], metrics = chunk(holder[0], jnp.int32(iterations))
        jax.block_until_ready(holder[0])
        learned.append(float(metrics["critic_loss"][0]) != 0.0)

    run()  # the first call at the timed length (not timed: run_chunk's count is traced)
    row = dict(name="e2e", what=f"Trainer.run_chunk ({iterations} iterations, updates on)",
               compile_s=compile_s, warmup_s=warm_s, warmup_iterations=warm_iterations,
               first_call_s=compile_s + warm_s, learned=learned)
    return Bench(row, run, iterations, cfg.num_envs), snapshot


def prepare_raw_env(cfg: Config, seed: int, iterations: int, fast_physics: Optional[dict] = None) -> Bench:
    """VecEnv.step with random actions: the very program env_throughput.py times (mode vecenv)."""
    b = env_throughput.prepare_ours(cfg.env, cfg.physics, cfg.num_envs, iterations, "vecenv", seed,
                                    fast_physics, cfg.rk4_stage_unroll)
    row = dict(name="raw_env", what=f"VecEnv.step, random actions (scan of {iterations})",
               first_call_s=b.row["first_call_s"])
    return Bench(row, b.run, iterations, cfg.num_envs)


def prepare_env_part(trainer: Trainer, ts: TrainState, reps: int) -> Bench:
    """Policy action + VecEnv.step, as in Trainer.iteration (the warm-up where() left out)."""
    agent, vec_env, cfg = trainer.agent, trainer.vec_env, trainer.cfg

    def part(vstate, actor, obs_stats, key):
        def body(i, vstate):
            obs = normalize(obs_stats, vstate.obs, cfg.obs_norm)
            action = agent.act(actor, obs, jax.random.fold_in(key, i))
            return vec_env.step(vstate, action)

        return jax.lax.fori_loop(0, reps, body, vstate)

    fn = jax.jit(part, donate_argnums=0)
    run, first = _chained(fn, _copy(ts.env), ts.agent.actor, ts.obs_stats, jax.random.PRNGKey(7))
    row = dict(name="env_step", what="policy action + VecEnv.step", first_call_s=first)
    return Bench(row, run, reps, cfg.num_envs)


def prepare_insert_part(trainer: Trainer, ts: TrainState, reps: int) -> Bench:
    """replay.insert of N transitions + the obs-statistics update."""
    cfg = trainer.cfg
    n, a = cfg.num_envs, trainer.env.action_size
    transition = Transition(
        obs=ts.env.obs, action=jax.random.uniform(jax.random.PRNGKey(3), (n, a), minval=-1.0, maxval=1.0),
        reward=ts.env.reward, next_obs=ts.env.next_obs, terminated=ts.env.terminated.astype(jnp.float32),
        truncated=ts.env.truncated.astype(jnp.float32) if cfg.n_step > 1 else None,
    )

    def part(carry, transition):
        def body(i, carry):
            buffer, stats = carry
            # Vary the rows a little so nothing is loop-invariant.
            tr = transition.replace(reward=transition.reward + i.astype(jnp.float32))
            stats = update_stats(stats, tr.obs) if cfg.obs_norm else stats
            return insert(buffer, tr), stats

        return jax.lax.fori_loop(0, reps, body, carry)

    fn = jax.jit(part, donate_argnums=0)
    run, first = _chained(fn, (_copy(ts.buffer), _copy(ts.obs_stats)), transition)
    row = dict(name="insert", what="replay.insert + update_stats", first_call_s=first)
    return Bench(row, run, reps, cfg.num_envs)


def prepare_updates(trainer: Trainer, ts: TrainState, reps: int, agent_state=None, name="updates") -> Bench:
    """Trainer.learn (G updates of B sampled transitions) `reps` times, on ts's buffer."""
    cfg = trainer.cfg
    agent_state = _copy(ts.agent) if agent_state is None else agent_state

    def part(agent_state, hyper, buffer, obs_stats, env_steps, key):
        def body(i, agent_state):
            view = types.SimpleNamespace(agent=agent_state, hyper=hyper, buffer=buffer,
                                         obs_stats=obs_stats, env_steps=env_steps)
            return trainer.learn(view, jax.random.fold_in(key, i))[0]

        return jax.lax.fori_loop(0, reps, body, agent_state)

    fn = jax.jit(part, donate_argnums=0)
    run, first = _chained(fn, agent_state, ts.hyper, ts.buffer, ts.obs_stats, ts.env_steps,
                          jax.random.PRNGKey(11))
    scoring = f", {cfg.candidate_dtype} scoring" if cfg.algo == "savgo" else ""
    actor = f", actor in 1 of {cfg.policy_frequency}" if cfg.policy_frequency > 1 else ""
    matmuls = f", {cfg.update_precision} matmuls" if cfg.update_precision != "float32" else ""
    row = dict(name=name, what=f"{cfg.updates_per_iter} x Agent.update ({cfg.algo}, B={cfg.batch_size}"
                               f"{scoring}{actor}{matmuls})",
               first_call_s=first)
    return Bench(row, run, reps, cfg.num_envs, reps * cfg.updates_per_iter)


def synthetic_state(trainer: Trainer, seed: int, rows: int = 16_384):
    """What prepare_updates reads of a TrainState, without any env: a fresh agent and a buffer of
    `rows` random transitions (standard-normal observations, 5% terminal). For --updates-only."""
    cfg, env = trainer.cfg, trainer.env
    o, a = env.observation_size, env.action_size
    n = max(min(rows, cfg.buffer_size), cfg.batch_size)
    k = jax.random.split(jax.random.PRNGKey(seed + 17), 6)
    batch = Transition(
        obs=jax.random.normal(k[0], (n, o)), action=jax.random.uniform(k[1], (n, a), minval=-1.0, maxval=1.0),
        reward=jax.random.normal(k[2], (n,)), next_obs=jax.random.normal(k[3], (n, o)),
        terminated=(jax.random.uniform(k[4], (n,)) < 0.05).astype(jnp.float32),
        truncated=jnp.zeros((n,)) if cfg.n_step > 1 else None,
    )
    buffer = jax.jit(insert)(init_buffer(cfg.buffer_size, o, a, store_truncated=cfg.n_step > 1), batch)
    return types.SimpleNamespace(
        agent=jax.jit(trainer.agent.init)(k[5]), hyper=Hyper.from_config(cfg, a), buffer=buffer,
        obs_stats=update_stats(init_stats(o), batch.obs),
        env_steps=jnp.asarray(max(cfg.warmup_steps, cfg.batch_size), jnp.int32),
    )


def prepare_sac_updates(cfg: Config, env, ts: TrainState, reps: int, seed: int, name="updates_sac") -> Bench:
    """The same G updates with algo="sac": a fresh SAC agent on the same buffer and sizes."""
    trainer = Trainer(dataclasses.replace(cfg, algo="sac"), env)
    agent_state = jax.jit(trainer.agent.init)(jax.random.PRNGKey(seed + 5))
    return prepare_updates(trainer, ts, reps, agent_state, name=name)


def update_flops(cfg: Config, observation_size: int, action_size: int) -> dict[str, float]:
    """XLA's count of floating-point operations in one `Agent.update` at cfg's sizes (averaged
    over the policy delay), and in its P x K candidate scoring alone (`Agent._score_candidates`),
    from the lowered program on abstract shapes: nothing is compiled or run, so it takes a second
    on any machine.

    The count is the HLO's (a matmul [m, k] x [k, n] is 2mkn; the elementwise work is small beside
    it), the same on every backend, and independent of dtype: it says how much work there is, not
    how fast a device does it (bfloat16 scoring does the same operations on tensor cores).
    Returns {"gflop_per_update", "candidate_gflop"} (candidate_gflop 0 for SAC)."""
    agent = Agent(cfg, observation_size, action_size)
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)  # noqa: E731
    st = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
    b, o, a = cfg.batch_size, observation_size, action_size
    batch = Transition(obs=f32(b, o), action=f32(b, a), reward=f32(b), next_obs=f32(b, o), terminated=f32(b))

    def gflop(update_actor: bool) -> float:
        update = jax.jit(functools.partial(agent.update, update_actor=update_actor)).lower(
            st, Hyper.from_config(cfg, a), batch, jax.ShapeDtypeStruct((), jnp.int32), jax.random.PRNGKey(0))
        return _flops(update) / 1e9

    # With a policy delay d, one update in d has the actor step: count the average update.
    d = cfg.policy_frequency
    full = gflop(True)
    out = dict(gflop_per_update=full if d == 1 else (full + (d - 1) * gflop(False)) / d, candidate_gflop=0.0)
    if cfg.algo == "savgo":
        p, k = cfg.actor_batch, cfg.num_candidates
        scoring = jax.jit(agent._score_candidates).lower(st, f32(p, 1, o), f32(p, k, a))
        out["candidate_gflop"] = _flops(scoring) / 1e9 / d
    return out


def _flops(lowered) -> float:
    """XLA's operation count of a lowered (not compiled) program."""
    cost = lowered.cost_analysis()
    if not cost:  # None on the H200's CUDA plugin (jax 0.11.2); the count does not depend on the machine
        raise RuntimeError("this backend has no cost analysis before compiling; run --flops-only on a CPU")
    return cost["flops"]


def flops_table(cfg: Config, env) -> dict[str, Any]:
    """update_flops for SAVGO and SAC at cfg's sizes, printed; returns the numbers and the ratio."""
    o, a = env.observation_size, env.action_size
    savgo = update_flops(cfg, o, a)
    sac = update_flops(dataclasses.replace(cfg, algo="sac"), o, a)
    out = dict(savgo_gflop_per_update=savgo["gflop_per_update"], sac_gflop_per_update=sac["gflop_per_update"],
               candidate_gflop=savgo["candidate_gflop"],
               candidate_share=savgo["candidate_gflop"] / savgo["gflop_per_update"],
               savgo_over_sac_update_flops=savgo["gflop_per_update"] / sac["gflop_per_update"])
    print(f"XLA flop count per update: SAVGO {out['savgo_gflop_per_update']:.2f} GFLOP (P x K candidate scoring "
          f"{out['candidate_gflop']:.2f}, {out['candidate_share']:.0%}), SAC {out['sac_gflop_per_update']:.2f} GFLOP; "
          f"SAVGO / SAC {out['savgo_over_sac_update_flops']:.2f}")
    return out


# --- driver --------------------------------------------------------------------------------------
def _finish(b: Bench) -> dict:
    row = dict(b.row)
    if not b.times:
        row.setdefault("error", "no timed call succeeded")
        return row
    stats = timing_stats(b.times)
    best = stats["best_s"]
    row.update(stats, iterations_per_call=b.iterations, ms_per_iter=1e3 * best / b.iterations,
               steps_per_s=b.num_envs * b.iterations / best, error=None)
    if b.updates:
        row.update(updates_per_call=b.updates, ms_per_update=1e3 * best / b.updates,
                   updates_per_s=b.updates / best)
    if "learned" in row:
        row["learned"] = bool(row["learned"]) and all(row["learned"])
    return row


def compute_ratios(rows: list[dict]) -> dict[str, Any]:
    ok = {r["name"]: r for r in rows if r.get("error") is None and "best_s" in r}
    out: dict[str, Any] = {}
    if "updates" in ok and "updates_sac" in ok:
        out["savgo_over_sac_update_cost"] = ok["updates"]["ms_per_update"] / ok["updates_sac"]["ms_per_update"]
    if "updates" in ok and "updates_bf16" in ok:
        out["bf16_over_f32_scoring_update_cost"] = (ok["updates_bf16"]["ms_per_update"]
                                                    / ok["updates"]["ms_per_update"])
    for base, tf32, key in (("updates", "updates_tf32", "tf32_over_f32_savgo_update_cost"),
                            ("updates_sac", "updates_sac_tf32", "tf32_over_f32_sac_update_cost")):
        if base in ok and tf32 in ok:
            out[key] = ok[tf32]["ms_per_update"] / ok[base]["ms_per_update"]
    if "updates_tf32" in ok and "updates_sac_tf32" in ok:
        out["savgo_over_sac_update_cost_tf32"] = (ok["updates_tf32"]["ms_per_update"]
                                                  / ok["updates_sac_tf32"]["ms_per_update"])
    if "e2e" in ok and "raw_env" in ok:
        out["train_over_raw_env_steps_per_s"] = ok["e2e"]["steps_per_s"] / ok["raw_env"]["steps_per_s"]
    parts = [p for p in ("env_step", "insert", "updates") if p in ok]
    if len(parts) == 3:
        total = sum(ok[p]["ms_per_iter"] for p in parts)
        out["sum_of_parts_ms_per_iter"] = total
        out["share_of_parts"] = {p: ok[p]["ms_per_iter"] / total for p in parts}
        if "e2e" in ok:
            out["e2e_ms_per_iter_over_sum_of_parts"] = ok["e2e"]["ms_per_iter"] / total
    return out


def add_achieved_tflops(rows: list[dict], flops: dict[str, Any]) -> None:
    """Sets achieved_tflop_per_s on the timed update rows: XLA's count (flops_table) over the
    measured time. How far an update is from the device's peak says whether its matmuls or the
    rest (elementwise passes, kernel launches) bound it."""
    if not flops:
        return
    gflop = {name: flops["sac_gflop_per_update" if "sac" in name else "savgo_gflop_per_update"]
             for name in UPDATE_PARTS}
    for r in rows:
        if r["name"] in gflop and r.get("ms_per_update"):
            r["achieved_tflop_per_s"] = gflop[r["name"]] / r["ms_per_update"]


def print_table(rows: list[dict], ratios: dict, cfg: Config) -> None:
    head = f"{'part':12} {'first s':>8} {'best s':>8} {'ms/iter':>9} {'steps/s':>10} {'ms/update':>10}  what"
    print("\n" + head)
    print("-" * len(head))
    for r in rows:
        if r.get("error"):
            print(f"{r['name']:12} FAILED: {r['error']}")
            continue
        upd = f"{r['ms_per_update']:>10.2f}" if "ms_per_update" in r else " " * 10
        print(f"{r['name']:12} {r['first_call_s']:>8.2f} {r['best_s']:>8.4f} {r['ms_per_iter']:>9.3f} "
              f"{r['steps_per_s']:>10,.0f} {upd}  {r['what']}")
    for r in rows:
        if "achieved_tflop_per_s" in r:
            print(f"{r['name']:12} {r['achieved_tflop_per_s']:8.2f} TFLOP/s achieved (XLA's flop count over ms/update)")
    e2e = next((r for r in rows if r["name"] == "e2e" and not r.get("error")), None)
    if e2e:
        print(f"e2e: run_chunk compile {e2e['compile_s']:.1f} s; warm-up {e2e['warmup_iterations']} "
              f"iterations {e2e['warmup_s']:.2f} s; updates ran in every timed chunk: {e2e['learned']}")
    print("(steps/s of a part: N env steps per iteration over that part's time per iteration)")
    if "sum_of_parts_ms_per_iter" in ratios:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in ratios["share_of_parts"].items())
        print(f"\nsum of parts {ratios['sum_of_parts_ms_per_iter']:.3f} ms/iter ({shares})")
        if "e2e_ms_per_iter_over_sum_of_parts" in ratios:
            print(f"e2e ms/iter / sum of parts          {ratios['e2e_ms_per_iter_over_sum_of_parts']:.3f}")
    if "savgo_over_sac_update_cost" in ratios:
        print(f"SAVGO update / SAC update (B={cfg.batch_size}, K={cfg.num_candidates}, P={cfg.actor_batch}, "
              f"M={cfg.geometry_batch}, hidden={cfg.hidden})  {ratios['savgo_over_sac_update_cost']:.3f}  (goal <= 1.5)")
    if "bf16_over_f32_scoring_update_cost" in ratios:
        print(f"SAVGO update, bf16 / float32 candidate scoring                    "
              f"{ratios['bf16_over_f32_scoring_update_cost']:.3f}")
    for key, what in (("tf32_over_f32_savgo_update_cost", "SAVGO update, TF32 / float32 matmuls"),
                      ("tf32_over_f32_sac_update_cost", "SAC update, TF32 / float32 matmuls"),
                      ("savgo_over_sac_update_cost_tf32", "SAVGO update / SAC update, both TF32")):
        if key in ratios:
            print(f"{what:66}{ratios[key]:.3f}")
    if "train_over_raw_env_steps_per_s" in ratios:
        print(f"training env steps/s / raw env steps/s (N={cfg.num_envs}, G={cfg.updates_per_iter})  "
              f"{ratios['train_over_raw_env_steps_per_s']:.3f}  (goal >= 0.5)")


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="inverted_pendulum", choices=sorted(envs.REGISTRY))
    p.add_argument("--physics", default=None, choices=list(envs.PHYSICS), help="default: the preset's")
    for flag in ("num-envs", "batch-size", "updates-per-iter", "policy-frequency", "num-candidates",
                 "actor-batch", "geometry-batch", "hidden", "actor-hidden", "critic-hidden", "buffer-size",
                 "warmup-steps", "n-step"):
        p.add_argument(f"--{flag}", type=int, default=None, help="default: the task's preset")
    p.add_argument("--fast-physics", type=json.loads, default=None, metavar="JSON",
                   help="with --physics fast: replaces the task's fast_physics (a candidate setting)")
    p.add_argument("--updates-only", action="store_true",
                   help="measure only the SAVGO and SAC updates, on random transitions (no env "
                        "program is compiled: quick sweeps of K, P, M, B, hidden)")
    p.add_argument("--flops-only", action="store_true",
                   help="print XLA's flop count of one SAVGO and one SAC update and exit (nothing "
                        "is compiled or run)")
    p.add_argument("--parts", nargs="+", default=None, choices=PARTS, metavar="PART",
                   help=f"measure only these of {', '.join(PARTS)} (default: all; e2e always runs "
                        "unless --updates-only: it makes the warmed-up state the parts use)")
    p.add_argument("--iterations", type=int, default=20, help="iterations per timed run_chunk call")
    p.add_argument("--reps", type=int, default=5, help="repetitions of a part inside one timed call")
    p.add_argument("--repeats", type=int, default=3, help="timed calls after the first; best is kept")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write {meta, config, rows, ratios} as JSON here")
    args = p.parse_args(argv)
    if args.iterations <= 0 or args.reps <= 0 or args.repeats <= 0:
        p.error("--iterations, --reps and --repeats must be positive")
    if args.updates_only and args.parts and set(args.parts) - {"updates", "updates_sac"}:
        p.error("--updates-only measures only updates and updates_sac")
    return args


def make_config(args: argparse.Namespace) -> Config:
    cfg = defaults_for(args.env)
    overrides = {name: getattr(args, name) for name in (
        "physics", "num_envs", "batch_size", "updates_per_iter", "policy_frequency", "num_candidates",
        "actor_batch", "geometry_batch", "hidden", "actor_hidden", "critic_hidden", "buffer_size",
        "warmup_steps", "n_step") if getattr(args, name) is not None}
    cfg = dataclasses.replace(cfg, algo="savgo", seed=args.seed, progress=False, track=False, **overrides)
    if args.warmup_steps is None:  # learn as soon as one batch is in the buffer
        cfg = dataclasses.replace(cfg, warmup_steps=cfg.batch_size)
    validate(cfg)
    return cfg


def main(argv: Optional[list[str]] = None) -> dict:
    """Runs the benchmark; returns (and with --out writes) {"meta", "config", "rows", "ratios", "flops"}."""
    args = parse_args(argv)
    jax.config.update("jax_default_matmul_precision", "highest")  # as training runs
    cfg = make_config(args)
    meta = env_throughput._meta()
    meta.update(args=vars(args), argv=list(sys.argv[1:] if argv is None else argv),
                task_source_sha256=env_throughput.task_source_sha(cfg.env))
    print(f"backend {meta['backend']}, jax {meta['jax']}, mujoco {meta['mujoco']}, "
          f"mujoco-mjx {meta['mujoco_mjx']}, commit {meta['commit']} "
          f"(+{meta['dirty_files']} uncommitted files), {cfg.env} source {meta['task_source_sha256']}")
    if args.fast_physics is not None:
        print(f"fast_physics replaced by {args.fast_physics}")
    print(f"{cfg.env} physics={cfg.physics} N={cfg.num_envs} B={cfg.batch_size} G={cfg.updates_per_iter} "
          f"policy_frequency={cfg.policy_frequency} K={cfg.num_candidates} P={cfg.actor_batch} "
          f"M={cfg.geometry_batch} hidden={cfg.hidden} n_step={cfg.n_step} "
          f"buffer={cfg.buffer_size} warmup={cfg.warmup_steps}", flush=True)
    env = env_throughput.make_env(cfg.env, cfg.physics, args.fast_physics, cfg.rk4_stage_unroll)
    try:  # a count the backend cannot give must not cost the timed measurements
        flops = flops_table(cfg, env)
    except Exception as e:
        if args.flops_only:
            raise
        print(f"no flop count: {type(e).__name__}: {e}")
        flops = {}
    if args.flops_only:
        return _write(dict(meta=meta, config=dataclasses.asdict(cfg), rows=[], ratios={}, flops=flops), args.out)
    trainer = Trainer(cfg, env)

    rows: list[dict] = []
    benches: list[Bench] = []
    if args.updates_only:
        ts = synthetic_state(trainer, args.seed)
        parts = UPDATE_PARTS
    else:
        out = attempt("e2e", lambda: prepare_e2e(trainer, args.seed, args.iterations), rows, dict(name="e2e"))
        ts = None
        if out:
            benches.append(out[0])
            ts = out[1]
        if args.parts is None or "raw_env" in args.parts:
            b = attempt("raw_env", lambda: prepare_raw_env(cfg, args.seed, args.iterations, args.fast_physics),
                        rows, dict(name="raw_env"))
            if b:
                benches.append(b)
        parts = ("env_step", "insert", "updates", "updates_sac")
    if args.parts is not None:
        parts = tuple(n for n in parts if n in args.parts)
    tf32 = dataclasses.replace(cfg, update_precision="tensorfloat32")
    if ts is None:  # the parts need a warmed-up state; without e2e, say so
        rows.extend(dict(name=n, error="needs the warmed-up state from e2e, which failed") for n in parts)
    else:
        prepare = {"env_step": lambda: prepare_env_part(trainer, ts, args.reps),
                   "insert": lambda: prepare_insert_part(trainer, ts, args.reps),
                   "updates": lambda: prepare_updates(trainer, ts, args.reps),
                   "updates_sac": lambda: prepare_sac_updates(cfg, env, ts, args.reps, args.seed),
                   "updates_bf16": lambda: prepare_updates(
                       Trainer(dataclasses.replace(cfg, candidate_dtype="bfloat16"), env), ts, args.reps,
                       name="updates_bf16"),
                   "updates_tf32": lambda: prepare_updates(
                       Trainer(tf32, env), ts, args.reps, name="updates_tf32"),
                   "updates_sac_tf32": lambda: prepare_sac_updates(tf32, env, ts, args.reps, args.seed,
                                                                   name="updates_sac_tf32")}
        for name in parts:
            b = attempt(name, prepare[name], rows, dict(name=name))
            if b:
                benches.append(b)

    time_round_robin(benches, args.repeats)  # the machine's load falls on all parts alike
    order = {n: i for i, n in enumerate(("e2e", *PARTS))}
    rows = sorted([_finish(b) for b in benches] + rows, key=lambda r: order.get(r["name"], 99))
    ratios = compute_ratios(rows)
    add_achieved_tflops(rows, flops)
    print_table(rows, ratios, cfg)
    return _write(dict(meta=meta, config=dataclasses.asdict(cfg), rows=rows, ratios=ratios, flops=flops), args.out)


def _write(result: dict, path: Optional[str]) -> dict:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(result, f, indent=2, default=str)
        print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()

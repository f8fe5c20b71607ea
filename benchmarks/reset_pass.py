"""The reset pass side by side: Humanoid (physics fast, 32 envs), 40 VecEnv steps with random
actions from a fresh reset (episodes end and reset inside them), with the reset running the
smooth kinematics only (`MujocoEnv._reset_pass`, the default) vs the whole mjx.forward
(`reset_needs_constraints=True`, the old reset). Prints each variant's trace + lower and XLA
compile seconds (measured one after the other, in the order given) and env steps/s (timed
round-robin, best of 3), and the ratios lite / full.

    python benchmarks/reset_pass.py              # lite compiled first
    python benchmarks/reset_pass.py full-first   # the other order
"""
import os
import sys
import time

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import envs  # noqa: E402
from benchmarks._timing import time_round_robin, timing_stats  # noqa: E402
from benchmarks.env_throughput import Bench, _block, _scan_program  # noqa: E402

NUM_ENVS, STEPS = 32, 40


def prepare(full: bool) -> Bench:
    """One variant: its scan program traced, then compiled, each timed."""
    env = envs.make("humanoid", physics="fast", reset_needs_constraints=full)
    vec = envs.VecEnv(env, NUM_ENVS)
    state0, key = jax.jit(vec.reset)(jax.random.PRNGKey(0)), jax.random.PRNGKey(1)
    t0 = time.perf_counter()
    lowered = _scan_program(vec.step, NUM_ENVS, env.action_size, STEPS).lower(state0, key)
    t1 = time.perf_counter()
    program = lowered.compile()
    row = dict(variant="full" if full else "lite", trace_s=t1 - t0, compile_s=time.perf_counter() - t1)
    return Bench(row=row, run=lambda: _block(program(state0, key)))


def main(argv: list[str]) -> None:
    order = [True, False] if argv == ["full-first"] else [False, True]
    benches = {full: prepare(full) for full in order}
    time_round_robin(benches.values(), repeats=3)
    for b in benches.values():
        b.row["steps_per_s"] = NUM_ENVS * STEPS / timing_stats(b.times)["best_s"]
        print({k: round(v, 1) if isinstance(v, float) else v for k, v in b.row.items()}, flush=True)
    lite, full = benches[False].row, benches[True].row
    print("lite/full: " + ", ".join(f"{k} {lite[k] / full[k]:.2f}" for k in ("trace_s", "compile_s", "steps_per_s")))


if __name__ == "__main__":
    main(sys.argv[1:])

"""The reset pass side by side: Humanoid (physics fast, 32 envs), a jitted scan of 40 VecEnv
steps with random actions from a fresh reset (episodes end and reset inside it), with the reset
running the smooth kinematics only (`MujocoEnv._reset_pass`, the default) vs the whole
mjx.forward (`reset_needs_constraints=True`, the old reset). Prints trace, compile and env
steps/s (best of 3) of each, both in one process, and their ratio.

    python benchmarks/reset_pass.py              # lite first
    python benchmarks/reset_pass.py full-first   # the other order (this VM favours the first)
"""
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import envs  # noqa: E402

def measure(full: bool):
    env = envs.make("humanoid", physics="fast", reset_needs_constraints=full)
    vec = envs.VecEnv(env, 32)
    def rollout(s, key):
        def body(carry, k):
            s = carry
            a = jax.random.uniform(k, (32, env.action_size), minval=-1, maxval=1)
            s = vec.step(s, a)
            return s, s.terminated.sum()
        return jax.lax.scan(body, s, jax.random.split(key, 40))
    s0 = jax.jit(vec.reset)(jax.random.key(0))
    t = time.perf_counter(); lowered = jax.jit(rollout).lower(s0, jax.random.key(1)); t1 = time.perf_counter()
    fn = lowered.compile(); t2 = time.perf_counter()
    best = 1e9
    for _ in range(3):
        t3 = time.perf_counter(); _, ends = fn(s0, jax.random.key(1)); jax.block_until_ready(ends); best = min(best, time.perf_counter() - t3)
    return dict(trace=t1 - t, compile=t2 - t1, sps=32 * 40 / best, ends=int(ends.sum()))

order = [False, True] if sys.argv[1:] != ["full-first"] else [True, False]
res = {}
for full in order:
    res[full] = measure(full)
    print("full" if full else "lite", {k: round(v, 1) for k, v in res[full].items()}, flush=True)
print("lite/full: trace %.2f compile %.2f steps/s %.2f" % tuple(res[False][k] / res[True][k] for k in ("trace", "compile", "sps")))

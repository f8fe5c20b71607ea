"""Seeds side by side: wall time of S members in one program against one member, same N each.

    python benchmarks/seeds_throughput.py                                  # CPU: IP, S = 1 and 8
    python benchmarks/seeds_throughput.py --env humanoid --num-seeds 1 8 --out seeds_gpu.json

Each S gets `Trainer.run_chunk` compiled exactly as train.py compiles it (members axis, donated
state), warmed up past the learning start, then `--iterations` iterations timed round-robin with
the other S values (benchmarks/_timing.py). Printed: wall time per iteration for each S and its
ratio to S = 1 (the goal for 8 seeds: <= 3x), plus the compile time of each program.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import envs  # noqa: E402
from benchmarks._timing import time_round_robin, timing_stats  # noqa: E402
from savgo_mjx.config import defaults_for, members, validate  # noqa: E402
from savgo_mjx.train_loop import configure_jax  # noqa: E402
from savgo_mjx.trainer import Trainer, make_env  # noqa: E402

SIZES = ("num_envs", "batch_size", "updates_per_iter", "num_candidates", "actor_batch",
         "geometry_batch", "hidden", "buffer_size")


class SeedsBench:
    def __init__(self, cfg, env, iterations: int):
        self.row = {"num_seeds": cfg.num_seeds}
        self.times: list[float] = []
        trainer = Trainer(cfg, env)
        ts = trainer.init_members(members(cfg))
        t0 = time.perf_counter()
        chunk = jax.jit(trainer.run_chunk, donate_argnums=0).lower(ts, jnp.int32(1)).compile()
        self.row["compile_s"] = time.perf_counter() - t0
        warm = math.ceil(max(cfg.warmup_steps, cfg.batch_size) / cfg.num_envs) + 1
        ts, _ = chunk(ts, jnp.int32(warm))
        self.holder = [jax.block_until_ready(ts)]
        self.chunk, self.iterations = chunk, iterations
        self.run()  # the first call at the timed length is not timed

    def run(self) -> None:
        self.holder[0], metrics = self.chunk(self.holder[0], jnp.int32(self.iterations))
        jax.block_until_ready(metrics)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="inverted_pendulum", choices=sorted(envs.REGISTRY))
    p.add_argument("--num-seeds", type=int, nargs="+", default=[1, 8])
    for name in SIZES:
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=None, help="default: the preset's")
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    configure_jax()
    base = defaults_for(args.env)
    base = dataclasses.replace(base, progress=False, **{
        k: getattr(args, k) for k in SIZES if getattr(args, k) is not None})
    env = make_env(base)
    benches = []
    for s in args.num_seeds:
        cfg = dataclasses.replace(base, num_seeds=s)
        validate(cfg)
        print(f"compiling S = {s} ...", flush=True)
        benches.append(SeedsBench(cfg, env, args.iterations))
        print(f"  compile {benches[-1].row['compile_s']:.1f} s", flush=True)
    time_round_robin(benches, args.repeats)
    base_s = None
    rows = []
    for b in benches:
        b.row.update(timing_stats(b.times))
        b.row["ms_per_iteration"] = 1e3 * b.row["best_s"] / args.iterations
        base_s = base_s or b.row["best_s"]
        b.row["wall_ratio_to_first"] = b.row["best_s"] / base_s
        rows.append(b.row)
        print(f"S = {b.row['num_seeds']:3d}: {b.row['ms_per_iteration']:8.1f} ms/iteration, "
              f"x{b.row['wall_ratio_to_first']:.2f} the wall time of S = {args.num_seeds[0]} "
              f"(compile {b.row['compile_s']:.1f} s)")
    meta = {"backend": jax.default_backend(), "device": str(jax.devices()[0]), "jax": jax.__version__,
            "config": {k: getattr(base, k) for k in SIZES}, "env": base.env, "iterations": args.iterations}
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

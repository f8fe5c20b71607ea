"""Everything one GPU session must record, in one time-boxed script (~9.5 min on one H100/H200).

The GPU session (one `run` call; the host lacks mujoco, mjx, brax, tyro, rich, gymnasium)
------------------------------------------------------------------------------------------
On the development machine, from the project root (the wheels are ~35 MB and git-ignored):

    ../shared/gpu/fetch-wheels.sh .wheels
    python benchmarks/gpu_check.py --tiny --out /tmp/gpu_check_tiny   # optional: same paths on CPU
    git rev-parse --short HEAD                                         # put it after --commit below

then one device call with `carry: [".wheels"]` and `timeout_s: 600` (the phase budgets sum to
545 s, pip needs ~20 s). Do not set MUJOCO_GL=egl there: without the EGL loaders (see the device
README) mujoco's import then fails in every phase. Only 8 files come back from $OUT, so the
command packs the rest:

    python3 -m pip install -q --no-index --no-deps --no-compile --target .site .wheels/*.whl \
      && export PYTHONPATH=$PWD/.site:$PWD PYTHONUNBUFFERED=1; \
    timeout 570 python3 benchmarks/gpu_check.py --out /tmp/gco --work /tmp/gw --keep-work \
      --physics fast --commit <sha>[+dirty]; \
    cp /tmp/gco/summary.md /tmp/gco/curve.png /tmp/gco/curve.csv $OUT/; \
    tar czf $OUT/gpu_check.tgz --exclude=jax-cache --exclude=checkpoints -C /tmp gco gw

The tarball holds one JSON and log per phase, summary.json, the train.py logs and the curve
run's metrics, config and exported policies/ (checkpoints and caches stay behind). matplotlib
is not on the GPU host; without it curve.png is drawn by a small built-in plotter (ticks as
numbers, no axis titles; summary.md says which). Add `matplotlib contourpy cycler fonttools
kiwisolver pillow pyparsing python-dateutil six` to fetch-wheels.sh's arguments for the real
plot if the 64 MiB carry has room (~20 MB more).

Phases (each its own subprocess with its own timeout; a crash or hang is recorded as that phase's
error and the others still run; default order below, `--phases` picks and orders a subset)
----------------------------------------------------------------------------------------------
meta     device, memory, jax/jaxlib/mujoco/mujoco-mjx/flax/brax versions, commit (+dirty), the
         matmul precision (jax's default and what training sets), XLA_FLAGS.
compile  compile-once: two `train.py` start-ups of one program on one persistent cache
         (SAVGO_MJX_CACHE, empty when the invocation starts), the second with other learning
         rates and lambda (traced values: it should load the compiled programs from the cache):
         first and second `compile_s` (train.py's "compiled in"), cache entries written by each.
         After the curve phase (the default order), the curve's cold start-up is the first one.
env      raw env steps/s (benchmarks/env_throughput.py): ours (VecEnv, what training steps) vs
         brax's humanoid (training.wrap) at 1024 and 4096 envs. Default physics "fast" only: every
         humanoid program compiles for ~50 s on an H200 (docs/ENVS.md), so "v5" at the training N
         comes from the train phase's raw_env row instead; `--env-physics v5 fast` adds v5 here.
train    end-to-end training steps/s vs raw env steps/s at the same N, and SAVGO/SAC update cost
         (benchmarks/train_throughput.py with the preset's sizes, parts e2e, raw_env, updates,
         updates_sac). With the shared cache, e2e loads the program the compile phase built
         (its compile_s is then a cache load, said so in the summary).
curve    (runs second: it fills the cache the later phases load) time-boxed training with the
         preset (`train.py --env humanoid`; evaluations every 200k env steps instead of 500k,
         `--curve-args` adds or overrides flags), stopped with SIGINT at
         `--curve-box` seconds after launch (train.py saves a checkpoint and exits 130); its
         metrics.jsonl becomes curve.csv (wall_s, env_steps, eval_return, episode_return,
         critic_loss and the actor's entropy, alpha and kernel diagnostics; the summary gives
         the first and largest critic loss and the actor's last values) and
         curve.png (eval return against wall time). wall_s is train.py's own clock (compile
         included, process start-up and imports not).

Default budgets (seconds, GPU): meta 15, curve 250, compile 80, train 120, env 80 = 545 (the
curve is stopped 30 s before its budget); set with `--budget NAME=SECONDS`. Sized from the first
GPU run (H200, 2026-11-26, docs/BENCHMARKS.md): the Humanoid training chunk (physics fast, 1024
envs) compiled cold in 116 s and the evaluation program in about as long, a second start-up on
the cache took 27 s, an env-only program at 1024 envs did not compile within 55 s; the old
budgets (compile 140 s for two cold start-ups, env 60, train 85) all ran out. About 7 minutes,
as first planned, does not fit while a cold MJX Humanoid program compiles for ~100 s.
A phase that runs out is killed and reported as an error with whatever it wrote (env_throughput
writes after every N; the compile phase after each start-up; the curve's metrics are read either
way). A longer curve alone: `--phases curve --budget curve=560` (it then
compiles cold: the cache lives in this invocation's work folder).

--tiny: the same code paths on CPU with InvertedPendulum (physics "fast"), 4 envs, tiny networks
and steps, brax skipped (its humanoid compiles for ~2 min on CPU; tiny has no reference env),
`JAX_DISABLE_MOST_OPTIMIZATIONS=1` (about a third less XLA compile time: tiny checks paths, its
figures mean nothing), and the curve stopped as soon as it has two evaluations. Its time is
almost all MJX compiles (each 20-100 s on a 2-core CPU): 605 s on the shared 2-core development
VM (load 4-6), far from the two minutes hoped for; tests/test_gpu_check.py runs it as a slow test.

Caches: one persistent compilation cache folder per invocation (in `--work`), emptied when the
invocation starts; curve, compile, train and env all use it (`--no-share-cache`: env and train
compile cold; the compile figures are unaffected either way).

Exit code 0 when every selected phase succeeded, 1 otherwise.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from typing import Any, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

PHASES = ("meta", "curve", "compile", "train", "env")
GPU_BUDGETS = {"meta": 15, "curve": 250, "compile": 80, "train": 120, "env": 80}
TINY_BUDGETS = {"meta": 120, "compile": 480, "env": 300, "train": 300, "curve": 300}
CURVE_GRACE_S = 20.0  # after SIGINT: the running chunk ends, a checkpoint (no buffer), exit
CURVE_EVAL_EVERY = 200_000  # GPU curve: the preset's 500k may not be reached inside a short box
CURVE_MARGIN_S = 30.0  # default box = curve budget - this (grace, plus the worker's own exit)
DESCRIPTION = {
    "meta": "device, versions, commit, matmul precision",
    "compile": "train.py start-up twice on a fresh persistent cache (second: other lr/lambda)",
    "env": "raw env steps/s, ours vs brax (benchmarks/env_throughput.py)",
    "train": "training vs raw env steps/s, SAVGO/SAC update cost (benchmarks/train_throughput.py)",
    "curve": "time-boxed training, stopped with SIGINT; curve.csv, curve.png",
}

# The tiny sizes: flags that train.py and train_throughput.py both take, so that the train phase's
# e2e program is the one train.py compiled (and comes from the shared cache).
TINY_SIZES = ["--physics", "fast", "--num-envs", "4", "--buffer-size", "256", "--batch-size", "16",
              "--updates-per-iter", "1", "--geometry-batch", "8", "--actor-batch", "4",
              "--num-candidates", "2", "--hidden", "8", "--warmup-steps", "16"]
TINY_ENV = "inverted_pendulum"
TINY_STEPS = 2  # env phase scan length = train phase iterations: raw_env is the env phase's program


# --- small helpers ------------------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.t0 = time.monotonic()

    def say(self, msg: str) -> None:
        print(f"[gpu_check {time.monotonic() - self.t0:7.1f} s] {msg}", flush=True)


def _git(*args: str) -> Optional[str]:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20)
    except Exception:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def commit_id(given: Optional[str]) -> dict:
    """The commit, "+dirty" when tracked files differ from it (untracked files do not count)."""
    if given:
        return {"commit": given, "source": "--commit"}
    sha = _git("rev-parse", "--short", "HEAD")
    if sha is None:
        return {"commit": "unknown", "source": "no git here; pass --commit"}
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": sha + ("+dirty" if dirty else ""), "source": "git",
            "dirty_files": [] if not dirty else [line[3:] for line in dirty.splitlines()]}


def last_json_line(text: str) -> Optional[dict]:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def read_text(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def read_json(path: str) -> Optional[Any]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json(path: str, obj: Any) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(path + ".tmp", path)


def cache_entries(cache: str) -> list[str]:
    """Entries of a persistent compilation cache folder (jax names them <program>-<hash>-...)."""
    try:
        return sorted(n for n in os.listdir(cache) if not n.startswith("."))
    except OSError:
        return []


def _kill_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM then SIGKILL to the process group this script created for `proc` (start_new_session):
    the phase's own process and whatever it started (train.py), nothing else."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:  # whatever of the group is left (the phase process, or a train.py it started)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10.0)
    except subprocess.TimeoutExpired:
        pass


# --- the plan: one command per phase ------------------------------------------------------------
def preset(env: str) -> Any:
    from savgo_mjx.config import defaults_for  # pure python: the parent never imports jax

    return defaults_for(env)


def train_common(a: argparse.Namespace) -> list[str]:
    """train.py flags of the compile and curve phases, shared so that both build one program."""
    args = ["--env", a.env, "--no-progress", "--no-save-buffer", "--checkpoint-every", "0"]
    if a.tiny:
        args += TINY_SIZES + ["--eval-envs", "2"]
    else:
        if a.physics:
            args += ["--physics", a.physics]
        if a.num_envs:
            args += ["--num-envs", str(a.num_envs)]
    return args


def compile_second_flags(a: argparse.Namespace) -> list[str]:
    """Other learning rates and lambda for the second start-up: traced values, same program."""
    cfg = preset(a.env)
    lam = 1.0 if cfg.lam != 1.0 else 1.5
    return ["--actor-lr", f"{cfg.actor_lr / 3:g}", "--critic-lr", f"{cfg.critic_lr / 3:g}",
            "--embedding-lr", f"{cfg.embedding_lr / 2:g}", "--lam", f"{lam:g}"]


def phase_plan(name: str, a: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """(argv, extra environment) of a phase's subprocess."""
    py = sys.executable
    me = os.path.abspath(__file__)
    env: dict[str, str] = {}
    share = a.share_cache
    if name == "meta":
        return [py, me, "--worker", "meta", "--out", a.out, "--work", a.work], env
    if name in ("compile", "curve"):
        spec = dict(train_py=os.path.abspath(a.train_py), train_args=train_common(a), cache=a.cache, out=a.out,
                    work=a.work, tiny=a.tiny)
        if name == "compile":
            before = a.phase_list[:a.phase_list.index("compile")]
            spec["curve_stderr"] = os.path.join(a.work, "curve", "stderr.txt") if "curve" in before else None
            cfg = preset(a.env)
            n = a.num_envs or cfg.num_envs
            steps = 16 if a.tiny else n  # one chunk (tiny: 4 iterations), then the final eval
            spec.update(first=["--total-steps", str(steps), "--log-every", str(steps), "--eval-every", "0"],
                        second=compile_second_flags(a))
        else:
            budget = a.budgets["curve"]
            box = a.curve_box if a.curve_box is not None else (0.0 if a.tiny else max(budget - CURVE_MARGIN_S, 1.0))
            spec.update(box=box, min_evals=a.curve_min_evals if a.curve_min_evals is not None else (2 if a.tiny else 0),
                        grace=CURVE_GRACE_S,
                        extra=(["--total-steps", "100000", "--log-every", "8", "--eval-every", "8"]
                               if a.tiny else ["--eval-every", str(CURVE_EVAL_EVERY)]) + a.curve_args)
        spec_path = os.path.join(a.work, f"{name}_spec.json")
        write_json(spec_path, spec)
        return [py, me, "--worker", name, "--spec", spec_path], env
    if name == "env":
        out = os.path.join(a.out, "env", "env_throughput.json")
        if a.tiny:
            args = ["--task", TINY_ENV, "--physics", "fast", "--modes", "vecenv", "--num-envs", "4",
                    "--steps", str(TINY_STEPS), "--repeats", "1", "--no-brax"]
        else:
            args = ["--task", a.env, "--physics", *a.env_physics, "--modes", *a.env_modes,
                    "--num-envs", *map(str, a.env_num_envs), "--steps", "20", "--repeats", "2"]
            if a.no_brax:
                args.append("--no-brax")
        if share:
            env.update(JAX_COMPILATION_CACHE_DIR=a.cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1")
        return [py, os.path.join(ROOT, "benchmarks", "env_throughput.py"), *args, "--out", out], env
    if name == "train":
        out = os.path.join(a.out, "train", "train_throughput.json")
        parts = ["--parts", "raw_env", "updates", "updates_sac"]
        if a.tiny:
            args = ["--env", TINY_ENV, *TINY_SIZES, "--iterations", str(TINY_STEPS), "--reps", "1",
                    "--repeats", "1", *parts]
        else:
            cfg = preset(a.env)
            args = ["--env", a.env, "--warmup-steps", str(cfg.warmup_steps),  # = train.py's program
                    "--iterations", "20", "--reps", "2", "--repeats", "2", *parts]
            if a.physics:
                args += ["--physics", a.physics]
            if a.num_envs:
                args += ["--num-envs", str(a.num_envs)]
        if share:
            env.update(JAX_COMPILATION_CACHE_DIR=a.cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1")
        return [py, os.path.join(ROOT, "benchmarks", "train_throughput.py"), *args, "--out", out], env
    raise ValueError(name)


# --- running a phase ----------------------------------------------------------------------------
def run_phase(name: str, a: argparse.Namespace, clock: Clock) -> dict:
    budget = float(a.budgets[name])
    log_path = os.path.join(a.out, f"{name}.log")
    record: dict[str, Any] = dict(phase=name, what=DESCRIPTION[name], ok=False, error=None, warnings=[],
                                  budget_s=budget, log=os.path.basename(log_path))
    shutil.rmtree(os.path.join(a.out, name), ignore_errors=True)  # no stale results from an earlier --out
    for stale in ([f"{name}.json"] + (["curve.csv", "curve.png"] if name == "curve" else [])):
        if os.path.exists(os.path.join(a.out, stale)):
            os.remove(os.path.join(a.out, stale))
    try:
        cmd, extra_env = phase_plan(name, a)
    except Exception as e:  # e.g. an unknown env name for the preset
        record.update(error=f"could not plan the phase: {type(e).__name__}: {e}", elapsed_s=0.0)
        write_json(os.path.join(a.out, f"{name}.json"), record)
        clock.say(f"phase {name}: ERROR: {record['error']}")
        return record
    env = dict(os.environ, PYTHONUNBUFFERED="1", **extra_env)
    if a.tiny:
        env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    pythonpath = env.get("PYTHONPATH", "")
    if ROOT not in pythonpath.split(os.pathsep):
        env["PYTHONPATH"] = ROOT + (os.pathsep + pythonpath if pythonpath else "")
    record.update(cmd=" ".join(shlex.quote(c) for c in cmd), env={k: v for k, v in extra_env.items()})
    clock.say(f"phase {name}: start (budget {budget:.0f} s): {DESCRIPTION[name]}")
    t0 = time.monotonic()
    timed_out = False
    with open(log_path, "w") as log:
        log.write(f"$ {record['cmd']}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)
        try:
            proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        except KeyboardInterrupt:
            _kill_group(proc)
            raise
    record.update(elapsed_s=round(time.monotonic() - t0, 2), returncode=proc.returncode, timed_out=timed_out)
    log_text = read_text(log_path)
    try:
        record["result"] = PARSERS[name](a, record)
    except Exception as e:
        record["result"] = None
        record["warnings"].append(f"reading the phase's output failed: {type(e).__name__}: {e}")
    if timed_out:
        record["error"] = f"timed out after {budget:.0f} s (killed); partial results, if any, are kept"
    elif proc.returncode != 0:
        record["error"] = f"exit code {proc.returncode}; log tail:\n{tail(log_text)}"
    elif record.get("result") is None:
        record["error"] = "the phase wrote no usable result; log tail:\n" + tail(log_text)
    elif record["result"].get("error"):
        record["error"] = record["result"]["error"]
    record["ok"] = record["error"] is None
    write_json(os.path.join(a.out, f"{name}.json"), record)
    if record["ok"]:
        clock.say(f"phase {name}: ok in {record['elapsed_s']:.1f} s; {headline(record)}")
    else:
        clock.say(f"phase {name}: ERROR after {record['elapsed_s']:.1f} s: {record['error'].splitlines()[0]}")
    return record


# --- reading what each phase wrote (in this process: also after a timeout) -----------------------
def parse_meta(a, record) -> Optional[dict]:
    return read_json(os.path.join(a.out, "meta", "meta.json"))


def parse_env(a, record) -> Optional[dict]:
    data = read_json(os.path.join(a.out, "env", "env_throughput.json"))
    if data is None:
        return None
    rows = [{k: r.get(k) for k in ("impl", "task", "physics", "mode", "num_envs", "steps", "steps_per_s",
                                   "compile_s", "first_call_s", "best_s", "opt", "error")}
            for r in data.get("rows", [])]
    ok_rows = [r for r in rows if r.get("error") is None and r.get("steps_per_s")]
    failed = [r for r in rows if r.get("error")]
    for r in failed:
        record["warnings"].append(f"env row {r['impl']} {r['physics']} {r['mode']} N={r['num_envs']}: {r['error']}")
    result = dict(file="env/env_throughput.json", rows=rows, ratios=data.get("ratios", []),
                  brax="skipped in --tiny (no reference env there)" if a.tiny else
                  ("skipped (--no-brax)" if a.no_brax else "brax humanoid, backend mjx (a speed reference, not the v5 task)"))
    if not ok_rows:
        result["error"] = "no env measurement succeeded"
    return result


def parse_train(a, record) -> Optional[dict]:
    data = read_json(os.path.join(a.out, "train", "train_throughput.json"))
    if data is None:
        return None
    rows = [{k: r.get(k) for k in ("name", "what", "steps_per_s", "ms_per_iter", "ms_per_update", "first_call_s",
                                   "compile_s", "best_s", "learned", "achieved_tflop_per_s", "error")}
            for r in data.get("rows", [])]
    by = {r["name"]: r for r in rows}
    cfg = data.get("config", {})
    result = dict(file="train/train_throughput.json", rows=rows, ratios=data.get("ratios", {}),
                  flops=data.get("flops", {}),
                  config={k: cfg.get(k) for k in ("env", "physics", "num_envs", "batch_size", "updates_per_iter",
                                                  "num_candidates", "actor_batch", "geometry_batch", "hidden",
                                                  "buffer_size", "warmup_steps")},
                  e2e_compile_from_shared_cache=bool(a.share_cache))
    bad = [n for n, r in by.items() if r.get("error")]
    if bad:
        result["error"] = "; ".join(f"{n}: {by[n]['error']}" for n in bad)
    elif not (by.get("e2e", {}).get("steps_per_s") and by.get("raw_env", {}).get("steps_per_s")):
        result["error"] = "e2e or raw_env missing"
    return result


def parse_compile(a, record) -> Optional[dict]:
    data = read_json(os.path.join(a.out, "compile", "compile_runs.json"))
    if data is None:
        return None
    runs = data.get("runs", [])
    result = dict(runs=runs, cache="fresh folder, emptied before the first start-up")
    for r in runs:
        if r.get("compile_s") is None:
            result["error"] = f"start-up {r['label']!r} gave no compile_s (exit code {r.get('returncode')})"
    if len(runs) == 2 and "error" not in result:
        first, second = runs[0]["compile_s"], runs[1]["compile_s"]
        result.update(first_compile_s=first, second_compile_s=second, second_over_first=second / first,
                      second_faster=second < first,
                      new_cache_entries_second=runs[1]["cache_entries"] - runs[0]["cache_entries"],
                      programs_compiled_again=runs[1].get("new_cache_programs"))
    elif "error" not in result:
        result["error"] = f"{len(runs)} of 2 start-ups finished"
    return result


# Actor diagnostics copied into curve.csv and the summary (SAC rows have no kernel_* keys).
ACTOR_KEYS = ("entropy", "alpha", "kernel_max_weight", "kernel_cos_spread", "kernel_value_gain")


def parse_curve(a, record) -> Optional[dict]:
    run = read_json(os.path.join(a.out, "curve", "curve_run.json")) or {}
    metrics_path = os.path.join(a.work, "curve", "run", "metrics.jsonl")
    rows = []
    for line in read_text(metrics_path).splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill
        if row.get("member", 0) == 0:
            rows.append(row)
    # One row per env step: an evaluation's row (a background Gymnasium one is written after later
    # training rows) joins the training row of its own step; the training row's fields come first.
    by_step: dict[int, dict] = {}
    for row in sorted(rows, key=lambda r: (r["env_steps"], r.get("eval_backend") == "gymnasium")):
        merged = by_step.setdefault(row["env_steps"], {})
        for k, v in row.items():
            if v is not None:
                merged.setdefault(k, v)
    rows = [by_step[s] for s in sorted(by_step)]
    os.makedirs(os.path.join(a.out, "curve"), exist_ok=True)
    if os.path.isfile(metrics_path):
        shutil.copy(metrics_path, os.path.join(a.out, "curve", "metrics.jsonl"))
    config_path = os.path.join(a.work, "curve", "run", "config.json")
    if os.path.isfile(config_path):
        shutil.copy(config_path, os.path.join(a.out, "curve", "config.json"))
    result = dict(run, rows=len(rows))
    if run.get("killed_after_grace"):
        # It can save its checkpoint and still be finishing an evaluation on host threads.
        saved = "after saving its checkpoint" if run.get("checkpoint_saved_on_sigint") else "(no checkpoint)"
        record["warnings"].append(f"train.py did not exit within {CURVE_GRACE_S:.0f} s of SIGINT and was killed "
                                  f"{saved}; the metrics rows are complete")
    if not rows:
        result["error"] = "no metrics rows (the run did not get past its start-up in the box?)"
        return result
    csv_path = os.path.join(a.out, "curve.csv")
    columns = ("eval_return", "episode_return", "critic_loss") + ACTOR_KEYS
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["wall_s", "env_steps", *columns])
        for r in rows:
            w.writerow([f"{r['wall_s']:.3f}", r["env_steps"],  # diagnostics span decades: %g
                        *("" if r.get(k) is None else format(r[k], ".4g" if k in ACTOR_KEYS else ".4f")
                          for k in columns)])
    evals = [(r["wall_s"], r["eval_return"]) for r in rows if r.get("eval_return") is not None]
    # Before the normaliser's std floor (docs/TUNING.md F1) the first Humanoid critic loss was 2.4e7.
    critic = [r["critic_loss"] for r in rows if r.get("critic_loss") is not None]
    if critic:
        result.update(critic_loss_first=critic[0], critic_loss_max=max(critic))
    # What the actor was doing (docs/TUNING.md F11): the last logged value of each diagnostic.
    result["actor_last"] = {k: next((r[k] for r in reversed(rows) if r.get(k) is not None), None)
                            for k in ACTOR_KEYS}
    title = f"{a.env} ({'tiny, CPU' if a.tiny else 'preset'}), commit {a.commit['commit']}"
    result.update(curve_csv="curve.csv", eval_points=len(evals), final_env_steps=rows[-1]["env_steps"],
                  final_wall_s=rows[-1]["wall_s"], last_eval_return=evals[-1][1] if evals else None,
                  best_eval_return=max(e[1] for e in evals) if evals else None,
                  eval_curve=[{"wall_s": w, "eval_return": r} for w, r in evals])
    try:
        result["png_backend"] = plot_curve(os.path.join(a.out, "curve.png"), rows, title)
        result["curve_png"] = "curve.png"
    except Exception as e:
        record["warnings"].append(f"curve.png not drawn: {type(e).__name__}: {e}")
    return result


PARSERS = {"meta": parse_meta, "env": parse_env, "train": parse_train, "compile": parse_compile,
           "curve": parse_curve}


# --- workers (run as `gpu_check.py --worker NAME`, i.e. in the phase's own subprocess) ----------
def worker_meta(a: argparse.Namespace) -> int:
    from importlib import metadata

    t0 = time.perf_counter()
    import jax
    import jax.numpy as jnp

    info: dict[str, Any] = {"python": sys.version.split()[0], "cpu_count": os.cpu_count()}
    versions = {}
    for dist in ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "mujoco", "mujoco-mjx", "flax",
                 "optax", "orbax-checkpoint", "brax", "numpy", "tyro", "matplotlib"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    info["versions"] = versions
    devices = jax.devices()
    info.update(backend=jax.default_backend(), devices=[str(d) for d in devices],
                device_kind=devices[0].device_kind, device_count=len(devices))
    try:
        stats = devices[0].memory_stats() or {}
        info["memory_bytes_limit"] = stats.get("bytes_limit")
    except Exception:
        info["memory_bytes_limit"] = None
    t1 = time.perf_counter()
    x = jnp.ones((1024, 1024), jnp.float32)
    float((x @ x).sum())  # the device runs something
    info["first_op_s"] = round(time.perf_counter() - t1, 3)
    info["jax_import_and_device_s"] = round(t1 - t0, 3)
    info["matmul_precision_default"] = str(jax.config.jax_default_matmul_precision or "unset (jax default: TF32 matmuls on NVIDIA Ampere and later)")
    import mujoco
    from mujoco import mjx  # noqa: F401  (that it imports is part of the check)

    info["mujoco_import"] = mujoco.__version__
    from savgo_mjx.train_loop import configure_jax

    configure_jax(cache_dir=None)  # what train.py does (cache aside): the precision it trains with
    info["matmul_precision_training"] = str(jax.config.jax_default_matmul_precision)
    info["env_vars"] = {k: os.environ.get(k) for k in (
        "XLA_FLAGS", "JAX_PLATFORMS", "JAX_DEFAULT_MATMUL_PRECISION", "JAX_DISABLE_MOST_OPTIMIZATIONS",
        "XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_PREALLOCATE", "MUJOCO_GL")}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = smi.stdout.strip() or None
    except Exception:
        info["nvidia_smi"] = None
    write_json(os.path.join(a.out, "meta", "meta.json"), info)
    print(json.dumps(info, indent=2))
    return 0


def _start_train(cmd: list[str], env: dict, stdout_path: str, stderr_path: str) -> tuple[subprocess.Popen, Any, Any]:
    out, err = open(stdout_path, "w"), open(stderr_path, "w")
    return subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT), out, err


def curve_compile_s(stderr_path: Optional[str]) -> Optional[float]:
    """train.py's "compiled in X s" from the curve phase's stderr (None if it never got there)."""
    match = re.search(r"compiled in ([0-9.]+) s", read_text(stderr_path)) if stderr_path else None
    return float(match.group(1)) if match else None


def worker_compile(a: argparse.Namespace) -> int:
    """Two start-ups of one program, the second with other traced values. When the curve phase
    ran earlier in this invocation, its start-up on the fresh cache is the first one (a humanoid
    start-up compiles for minutes on a GPU: doing it twice does not fit a session)."""
    spec = read_json(a.spec)
    cache = spec["cache"]
    env = dict(os.environ, SAVGO_MJX_CACHE=cache)
    runs: list[dict] = []
    result_path = os.path.join(spec["out"], "compile", "compile_runs.json")
    first_s = curve_compile_s(spec.get("curve_stderr"))
    starts = [("second (other lr/lambda)", spec["first"] + spec["second"])]
    if first_s is not None:
        runs.append(dict(label="first (fresh cache): the curve phase's start-up", flags=[], returncode=0,
                         compile_s=first_s, from_curve=True, cache_entries=len(cache_entries(cache))))
    else:
        shutil.rmtree(cache, ignore_errors=True)
        os.makedirs(cache)
        starts.insert(0, ("first (fresh cache)", spec["first"]))
    write_json(result_path, {"runs": runs})
    before = cache_entries(cache)
    for i, (label, extra) in enumerate(starts, start=len(runs)):
        run_dir = os.path.join(spec["work"], "compile", f"run{i + 1}")
        shutil.rmtree(run_dir, ignore_errors=True)
        os.makedirs(run_dir)
        cmd = [sys.executable, spec["train_py"], *spec["train_args"], *extra, "--run-dir", run_dir]
        print(f"$ {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
        t0 = time.perf_counter()
        so, se = os.path.join(run_dir, "stdout.txt"), os.path.join(run_dir, "stderr.txt")
        proc, fo, fe = _start_train(cmd, env, so, se)
        proc.wait()
        fo.close()
        fe.close()
        stdout, stderr = read_text(so), read_text(se)
        print(tail(stderr, 8), flush=True)
        summary = last_json_line(stdout) or {}
        run = dict(label=label, flags=extra, returncode=proc.returncode, process_s=round(time.perf_counter() - t0, 2),
                   compile_s=summary.get("compile_s"), train_wall_s=summary.get("wall_s"),
                   env_steps=summary.get("env_steps"))
        after = cache_entries(cache)
        run.update(cache_entries=len(after),
                   new_cache_programs=sorted(n.split("-")[0] for n in set(after) - set(before)))
        before = after
        if proc.returncode != 0:
            run["stderr_tail"] = tail(stderr)
        runs.append(run)
        write_json(result_path, {"runs": runs})
        print(f"{label}: exit {proc.returncode}, compile_s {run['compile_s']}, process {run['process_s']} s, "
              f"cache entries {run['cache_entries']}", flush=True)
    return 0 if all(r["returncode"] == 0 for r in runs) else 1


def worker_curve(a: argparse.Namespace) -> int:
    spec = read_json(a.spec)
    run_dir = os.path.join(spec["work"], "curve", "run")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    env = dict(os.environ, SAVGO_MJX_CACHE=spec["cache"])
    cmd = [sys.executable, spec["train_py"], *spec["train_args"], *spec["extra"], "--run-dir", run_dir]
    print(f"$ {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    print(f"time box {spec['box']} s from launch; at least {spec['min_evals']} evaluation rows first", flush=True)
    so, se = os.path.join(spec["work"], "curve", "stdout.txt"), os.path.join(spec["work"], "curve", "stderr.txt")
    metrics = os.path.join(run_dir, "metrics.jsonl")
    t0 = time.monotonic()
    proc, fo, fe = _start_train(cmd, env, so, se)
    sigint_at, killed = None, False
    result_path = os.path.join(spec["out"], "curve", "curve_run.json")
    write_json(result_path, dict(cmd=cmd, box_s=spec["box"], min_evals=spec["min_evals"], stopped="running"))
    while proc.poll() is None:
        time.sleep(0.5)
        if sigint_at is not None:
            if not killed and time.monotonic() - sigint_at > spec["grace"]:
                proc.kill()  # the one process this worker started
                killed = True
                print(f"no exit {spec['grace']:.0f} s after SIGINT: killed", flush=True)
            continue
        elapsed = time.monotonic() - t0
        if elapsed >= spec["box"]:
            evals = read_text(metrics).count('"eval_return"')
            if evals >= spec["min_evals"]:
                proc.send_signal(signal.SIGINT)
                sigint_at = time.monotonic()
                print(f"SIGINT at {elapsed:.1f} s ({evals} evaluation rows)", flush=True)
    proc.wait()
    fo.close()
    fe.close()
    end = time.monotonic() - t0
    stderr = read_text(se)
    print(tail(stderr, 10), flush=True)
    if sigint_at is None:
        stopped = "finished its total steps" if proc.returncode == 0 else f"exited with {proc.returncode} on its own"
    else:
        stopped = f"SIGINT at {sigint_at - t0:.1f} s after launch, exit code {proc.returncode}"
    # Stopped as planned: finished, or exited 130 after SIGINT, or killed when it outlived the grace
    # (a long chunk; its metrics rows are all there). Anything else is the run failing.
    ok = proc.returncode == 0 or (sigint_at is not None and (proc.returncode == 130 or killed))
    checkpoint_saved = "interrupted: saved a checkpoint" in stderr
    write_json(result_path, dict(cmd=cmd, box_s=spec["box"], min_evals=spec["min_evals"], stopped=stopped,
                                 returncode=proc.returncode, process_s=round(end, 2),
                                 sigint_s=None if sigint_at is None else round(sigint_at - t0, 2),
                                 checkpoint_saved_on_sigint=checkpoint_saved, killed_after_grace=killed,
                                 stderr_tail=None if ok else tail(stderr)))
    print(stopped, flush=True)
    return 0 if ok else 1


WORKERS = {"meta": worker_meta, "compile": worker_compile, "curve": worker_curve}


# --- the curve figure ---------------------------------------------------------------------------
def plot_curve(path: str, rows: list[dict], title: str) -> str:
    """curve.png: eval return (points and line) and training episode return (grey) against wall_s.
    matplotlib (Agg) when installed, else the built-in PNG writer. Returns which drew it."""
    wall = [r["wall_s"] for r in rows]
    evals = [(r["wall_s"], r["eval_return"]) for r in rows if r.get("eval_return") is not None]
    train = [(r["wall_s"], r["episode_return"]) for r in rows if r.get("episode_return") is not None]
    try:
        import matplotlib
    except ImportError:
        _png_plot(path, [(train, (170, 170, 170), False), (evals, (31, 119, 180), True)], min(wall), max(wall))
        return "builtin (matplotlib not installed: no axis titles; x = wall_s, y = return, blue = eval, grey = training episodes)"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if train:
        ax.plot(*zip(*train), color="0.65", lw=1, label="training episode return")
    if evals:
        ax.plot(*zip(*evals), "o-", color="C0", lw=1.5, ms=4, label="eval return (deterministic)")
    ax.set_xlabel("wall s (train.py's clock: compile + training)")
    ax.set_ylabel("return")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return "matplotlib"


_FONT = {  # 3x5 glyphs for tick labels
    "0": ("111", "101", "101", "101", "111"), "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"), "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"), "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"), "7": ("111", "001", "001", "001", "001"),
    "8": ("111", "101", "111", "101", "111"), "9": ("111", "101", "111", "001", "111"),
    ".": ("000", "000", "000", "000", "010"), "-": ("000", "000", "111", "000", "000"),
    "e": ("000", "111", "111", "100", "111"), "+": ("000", "010", "111", "010", "000"),
}


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    import math

    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _png_plot(path: str, series: list, x_lo: float, x_hi: float, width: int = 720, height: int = 440) -> None:
    """A dependency-free line plot: series = [(points, rgb, markers)]; ticks labelled with numbers."""
    px = bytearray([255]) * (width * height * 3)
    ys = [y for pts, _, _ in series for _, y in pts]
    y_lo, y_hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if y_hi - y_lo < 1e-9:
        y_lo, y_hi = y_lo - 1.0, y_hi + 1.0
    if x_hi - x_lo < 1e-9:
        x_lo, x_hi = x_lo - 1.0, x_hi + 1.0
    left, right, top, bottom = 70, width - 20, 20, height - 40

    def X(x):
        return int(round(left + (x - x_lo) / (x_hi - x_lo) * (right - left)))

    def Y(y):
        return int(round(bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top)))

    def dot(x, y, c):
        if 0 <= x < width and 0 <= y < height:
            i = (y * width + x) * 3
            px[i:i + 3] = bytes(c)

    def line(x0, y0, x1, y1, c, thick=1):
        n = max(abs(x1 - x0), abs(y1 - y0), 1)
        for k in range(n + 1):
            x, y = x0 + (x1 - x0) * k // n, y0 + (y1 - y0) * k // n
            for d in range(thick):
                dot(x, y + d, c)

    def text(x, y, s, c=(0, 0, 0), scale=2):
        for ch in s:
            glyph = _FONT.get(ch)
            if glyph:
                for r, bits in enumerate(glyph):
                    for col, b in enumerate(bits):
                        if b == "1":
                            for dy in range(scale):
                                for dx in range(scale):
                                    dot(x + col * scale + dx, y + r * scale + dy, c)
            x += 4 * scale

    def label(v):
        return f"{v:.6g}" if abs(v) < 1e5 else f"{v:.2e}"

    grid, axis = (230, 230, 230), (0, 0, 0)
    for v in _ticks(x_lo, x_hi):
        line(X(v), top, X(v), bottom, grid)
        s = label(v)
        text(X(v) - len(s) * 4, bottom + 8, s)
    for v in _ticks(y_lo, y_hi):
        line(left, Y(v), right, Y(v), grid)
        s = label(v)
        text(left - 8 - len(s) * 8, Y(v) - 5, s)
    line(left, bottom, right, bottom, axis)
    line(left, top, left, bottom, axis)
    for pts, rgb, markers in series:
        coords = [(X(x), Y(y)) for x, y in pts]
        for (x0, y0), (x1, y1) in zip(coords, coords[1:]):
            line(x0, y0, x1, y1, rgb, thick=2)
        if markers:
            for x, y in coords:
                for dx in range(-3, 4):
                    for dy in range(-3, 4):
                        dot(x + dx, y + dy, rgb)
    raw = b"".join(b"\x00" + bytes(px[r * width * 3:(r + 1) * width * 3]) for r in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(png)


# --- the summary --------------------------------------------------------------------------------
def _f(x: Any, fmt: str = ",.0f") -> str:
    return "-" if x is None else format(x, fmt)


def headline(rec: dict) -> str:
    r = rec.get("result") or {}
    name = rec["phase"]
    if name == "meta":
        v = r.get("versions", {})
        return (f"{r.get('device_kind')} ({r.get('backend')}), jax {v.get('jax')}, mujoco {v.get('mujoco')}, "
                f"mjx {v.get('mujoco-mjx')}, flax {v.get('flax')}, precision {r.get('matmul_precision_training')}")
    if name == "env":
        ok = [x for x in r.get("rows", []) if x.get("steps_per_s")]
        return "; ".join(f"{x['impl']} {x['physics']} {x['mode']} N={x['num_envs']}: {x['steps_per_s']:,.0f} steps/s"
                         for x in ok) or "no rows"
    if name == "train":
        q = r.get("ratios", {})
        return (f"train/raw env steps/s {_f(q.get('train_over_raw_env_steps_per_s'), '.3f')}, "
                f"SAVGO/SAC update {_f(q.get('savgo_over_sac_update_cost'), '.2f')}")
    if name == "compile":
        again = r.get("programs_compiled_again")
        return (f"compile_s first {_f(r.get('first_compile_s'), '.1f')}, second {_f(r.get('second_compile_s'), '.1f')}"
                f"; programs compiled again by the second: {', '.join(again) if again else 'none'}")
    if name == "curve":
        return (f"{r.get('rows', 0)} rows, {r.get('eval_points', 0)} evals, last eval "
                f"{_f(r.get('last_eval_return'), '.1f')} at {_f(r.get('final_env_steps'))} env steps; {r.get('stopped')}")
    return ""


def summary_markdown(s: dict) -> str:
    L = [f"# gpu_check {'--tiny ' if s['tiny'] else ''}({s['started']})", "",
         f"commit {s['commit']['commit']} ({s['commit']['source']}); {s['elapsed_s']:.0f} s in all; "
         f"phases {', '.join(s['phases_run'])}; exit code {s['exit_code']}.", ""]
    if s["tiny"]:
        L += ["**--tiny: CPU code-path check, not a measurement.** InvertedPendulum, physics fast, 4 envs, "
              "tiny networks, JAX_DISABLE_MOST_OPTIMIZATIONS=1, brax's reference env skipped.", ""]
    L += ["| phase | status | s | headline |", "|---|---|---|---|"]
    for name in s["phases_run"]:
        rec = s["phases"][name]
        status = "ok" if rec["ok"] else "ERROR"
        L.append(f"| {name} | {status} | {rec.get('elapsed_s', 0):.1f} / {rec['budget_s']:.0f} | "
                 f"{headline(rec) if rec.get('result') else (rec.get('error') or '').splitlines()[0]} |")
    for name in s["phases_run"]:
        rec = s["phases"][name]
        r = rec.get("result") or {}
        L += ["", f"## {name}: {DESCRIPTION[name]}", ""]
        if rec.get("error"):
            L += ["**ERROR**: " + rec["error"].replace("\n", "  \n"), ""]
        for w in rec.get("warnings", []):
            L.append(f"- warning: {w}")
        L.append(f"- command: `{rec.get('cmd', '')}`; log: `{rec['log']}`")
        if rec.get("env"):
            L.append(f"- environment added: {json.dumps(rec['env'])}")
        if name == "meta" and r:
            L += [f"- device: {r.get('devices')} ({r.get('device_kind')}), memory limit "
                  f"{_f(r.get('memory_bytes_limit'))} bytes, nvidia-smi: {r.get('nvidia_smi')}",
                  f"- versions: {json.dumps(r.get('versions'))}",
                  f"- matmul precision: jax default {r.get('matmul_precision_default')}, training "
                  f"{r.get('matmul_precision_training')}; env: {json.dumps(r.get('env_vars'))}"]
        elif name == "env" and r:
            L += [f"- reference: {r.get('brax')}", "", "| impl | physics | mode | N | steps/s | compile s | opt |",
                  "|---|---|---|---|---|---|---|"]
            for x in r.get("rows", []):
                if x.get("error"):
                    L.append(f"| {x['impl']} | {x['physics']} | {x['mode']} | {x['num_envs']} | FAILED: {x['error']} | | |")
                else:
                    L.append(f"| {x['impl']} | {x['physics']} | {x['mode']} | {x['num_envs']} | {_f(x.get('steps_per_s'))} | "
                             f"{_f(x.get('compile_s'), '.1f')} | {x.get('opt')} |")
            L.append("")
            for q in r.get("ratios", []):
                L.append(f"- N={q['num_envs']} {q['what']}: {q['ratio']:.3f}")
        elif name == "train" and r:
            L += [f"- config: {json.dumps(r.get('config'))}",
                  f"- e2e program from the compile phase's cache: {r.get('e2e_compile_from_shared_cache')} "
                  "(then its first call is a cache load, not a compile)", "",
                  "| part | steps/s | ms/iter | ms/update | TFLOP/s | first call s |", "|---|---|---|---|---|---|"]
            for x in r.get("rows", []):
                L.append(f"| {x['name']} | {_f(x.get('steps_per_s'))} | {_f(x.get('ms_per_iter'), '.3f')} | "
                         f"{_f(x.get('ms_per_update'), '.3f')} | {_f(x.get('achieved_tflop_per_s'), '.3g')} | "
                         f"{_f(x.get('first_call_s'), '.1f')} |")
            q, fl = r.get("ratios", {}), r.get("flops", {})
            L += ["", f"- training env steps/s over raw env steps/s: {_f(q.get('train_over_raw_env_steps_per_s'), '.3f')} (goal >= 0.5)",
                  f"- SAVGO update over SAC update: {_f(q.get('savgo_over_sac_update_cost'), '.3f')} (goal <= 1.5); "
                  f"in XLA's flop count {_f(fl.get('savgo_over_sac_update_flops'), '.2f')} (SAVGO "
                  f"{_f(fl.get('savgo_gflop_per_update'), '.3g')} GFLOP, {_f(fl.get('candidate_share'), '.0%')} of it "
                  f"candidate scoring; SAC {_f(fl.get('sac_gflop_per_update'), '.3g')})"]
        elif name == "compile" and r:
            L += ["", "| start-up | compile_s | process s | cache entries after | programs written | exit |",
                  "|---|---|---|---|---|---|"]
            for x in r.get("runs", []):
                L.append(f"| {x['label']} | {_f(x.get('compile_s'), '.2f')} | {_f(x.get('process_s'), '.1f')} | "
                         f"{x.get('cache_entries')} | {', '.join(x.get('new_cache_programs') or []) or '-'} | "
                         f"{x.get('returncode')} |")
            L.append("")
            L.append("- compile_s is train.py's: lowering and compiling the training chunk only; process s "
                     "is the whole start-up and run (imports, init, evaluation, checkpoint)")
            if "second_over_first" in r:
                L.append(f"- second / first compile_s: {r['second_over_first']:.3f} "
                         f"(cache hit expected: traced learning rates and lambda)")
        elif name == "curve" and r:
            L += [f"- stopped: {r.get('stopped')}; checkpoint saved on SIGINT: {r.get('checkpoint_saved_on_sigint')}",
                  f"- {r.get('rows')} metrics rows, {r.get('eval_points')} evaluations; last eval return "
                  f"{_f(r.get('last_eval_return'), '.1f')}, best {_f(r.get('best_eval_return'), '.1f')}, "
                  f"{_f(r.get('final_env_steps'))} env steps at wall {_f(r.get('final_wall_s'), '.1f')} s",
                  f"- critic loss: first logged {_f(r.get('critic_loss_first'), '.3g')}, largest "
                  f"{_f(r.get('critic_loss_max'), '.3g')} (2.4e7 before the normaliser fix, docs/TUNING.md F1)",
                  "- actor at the last log point: " + ", ".join(
                      f"{k} {_f(v, '.3g')}" for k, v in (r.get("actor_last") or {}).items())
                  + (" (SAVGO's kernel is flat and its entropy high until alpha is ~1e-5: docs/TUNING.md F11)"
                     if (r.get("actor_last") or {}).get("kernel_value_gain") is not None else ""),
                  f"- files: `curve.csv`, `{r.get('curve_png', 'no png')}` ({r.get('png_backend')}), "
                  "`curve/metrics.jsonl`, `curve/config.json`",
                  "- wall_s is train.py's clock (compile + training; imports and init before it not counted)"]
    return "\n".join(L) + "\n"


# --- the command line ---------------------------------------------------------------------------
def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--out", default=None, help="receives <phase>.json/.log, summary.json, summary.md, curve.*")
    p.add_argument("--work", default=None, help="caches and run dirs (default: a temp folder, removed at the end)")
    p.add_argument("--keep-work", action="store_true", help="keep the --work folder")
    p.add_argument("--tiny", action="store_true", help="the same code paths on CPU, tiny sizes (see above)")
    p.add_argument("--phases", default=",".join(PHASES),
                   help=f"comma-separated, run in the order given (default {','.join(PHASES)})")
    p.add_argument("--budget", action="append", default=[], metavar="PHASE=SECONDS",
                   help=f"a phase's timeout (GPU defaults {GPU_BUDGETS}; --tiny {TINY_BUDGETS})")
    p.add_argument("--env", default=None, help="task of compile/train/curve (default humanoid; --tiny: inverted_pendulum)")
    p.add_argument("--physics", default=None, choices=("v5", "fast"), help="compile/train/curve physics (default: the preset's)")
    p.add_argument("--num-envs", type=int, default=None, help="compile/train/curve N (default: the preset's)")
    p.add_argument("--env-num-envs", type=int, nargs="+", default=[1024, 4096], help="env phase N values")
    p.add_argument("--env-physics", nargs="+", default=["fast"], choices=("v5", "fast"), help="env phase physics")
    p.add_argument("--env-modes", nargs="+", default=["vecenv"], choices=("vecenv", "bare"), help="env phase modes")
    p.add_argument("--no-brax", action="store_true", help="env phase without brax's humanoid")
    p.add_argument("--curve-box", type=float, default=None,
                   help="SIGINT this many seconds after launch (default: curve budget - 30 s; --tiny: 0)")
    p.add_argument("--curve-min-evals", type=int, default=None,
                   help="and not before this many evaluation rows exist (default 0; --tiny: 2)")
    p.add_argument("--curve-args", default="", help="extra train.py flags for the curve run (quoted string)")
    p.add_argument("--no-share-cache", dest="share_cache", action="store_false",
                   help="env and train phases compile cold instead of using the compile phase's cache")
    p.add_argument("--commit", default=None, help="the commit to record when there is no git checkout")
    p.add_argument("--train-py", default=os.path.join(ROOT, "train.py"), help=argparse.SUPPRESS)  # tests: a stand-in
    p.add_argument("--worker", default=None, choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.out is None and a.worker in (None, "meta"):
        p.error("--out DIR is required")
    a.phase_list = [x for x in a.phases.replace(" ", ",").split(",") if x]
    unknown = [x for x in a.phase_list if x not in PHASES]
    if unknown or not a.phase_list or len(set(a.phase_list)) != len(a.phase_list):
        p.error(f"--phases: each of {', '.join(PHASES)} at most once; got {a.phases!r}")
    a.budgets = dict(TINY_BUDGETS if a.tiny else GPU_BUDGETS)
    for item in a.budget:
        name, _, value = item.partition("=")
        try:
            a.budgets[name] = float(value)
        except ValueError:
            p.error(f"--budget wants PHASE=SECONDS, got {item!r}")
        if name not in PHASES or a.budgets[name] <= 0:
            p.error(f"--budget wants PHASE=SECONDS with PHASE in {', '.join(PHASES)} and SECONDS > 0, got {item!r}")
    a.env = a.env or (TINY_ENV if a.tiny else "humanoid")
    if a.tiny and a.env != TINY_ENV:
        p.error("--tiny runs inverted_pendulum (its sizes are fixed); leave --env out")
    a.curve_args = shlex.split(a.curve_args)
    return a


def main(argv: Optional[list[str]] = None) -> int:
    a = parse_args(argv)
    if a.worker:
        return WORKERS[a.worker](a)
    clock = Clock()
    a.out = os.path.abspath(a.out)
    os.makedirs(a.out, exist_ok=True)
    own_work = a.work is None
    a.work = os.path.abspath(a.work or tempfile.mkdtemp(prefix="gpu_check-"))
    os.makedirs(a.work, exist_ok=True)
    a.cache = os.path.join(a.work, "jax-cache")
    shutil.rmtree(a.cache, ignore_errors=True)  # every invocation starts cold: its first start-up is measured
    os.makedirs(a.cache)
    a.commit = commit_id(a.commit)
    started = datetime.datetime.now().isoformat(timespec="seconds")
    clock.say(f"{'--tiny ' if a.tiny else ''}out {a.out}; work {a.work}; commit {a.commit['commit']}; "
              f"phases {','.join(a.phase_list)}; budgets {sum(a.budgets[n] for n in a.phase_list):.0f} s in all")
    if a.tiny:
        clock.say("--tiny: inverted_pendulum, physics fast, 4 envs, tiny networks, "
                  "JAX_DISABLE_MOST_OPTIMIZATIONS=1; brax's reference env skipped")
    records: dict[str, dict] = {}
    interrupted = False
    try:
        for name in a.phase_list:
            records[name] = run_phase(name, a, clock)
    except KeyboardInterrupt:
        interrupted = True
        clock.say("interrupted: writing the summary of what ran")
    finally:
        if own_work and not a.keep_work:
            shutil.rmtree(a.work, ignore_errors=True)
    exit_code = 0 if (not interrupted and all(r["ok"] for r in records.values())) else 1
    summary = dict(started=started, tiny=a.tiny, commit=a.commit, elapsed_s=time.monotonic() - clock.t0,
                   phases_run=list(records), phases_requested=a.phase_list, budgets=a.budgets,
                   interrupted=interrupted, exit_code=exit_code, argv=sys.argv[1:] if argv is None else argv,
                   phases=records)
    write_json(os.path.join(a.out, "summary.json"), summary)
    with open(os.path.join(a.out, "summary.md"), "w") as f:
        f.write(summary_markdown(summary))
    clock.say(f"done: {sum(r['ok'] for r in records.values())}/{len(records)} phases ok; "
              f"{os.path.join(a.out, 'summary.md')}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

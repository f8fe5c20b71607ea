"""The host side of a run: set up, then alternate device chunks with logging, evaluation and
checkpoints. Nothing here runs per environment step."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import threading
import time
import types
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from savgo_mjx.checkpoint import Checkpointer
from savgo_mjx.config import SWEEPABLE, Config, ConfigError, members, parse_sweep, validate
from savgo_mjx.evaluate import BackgroundEvaluator
from savgo_mjx.metrics import MetricsLogger
from savgo_mjx.policy import export_policies, member_policies
from savgo_mjx.preflight import check_memory
from savgo_mjx.trainer import DATA, Trainer, make_env, params_finite

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "savgo-mjx", "jax")
MAX_PENDING_EVALUATIONS = 2
"""Background evaluations that may run at once; training waits before submitting another, so
that a slow host never lets them pile up unseen."""
WATCHED = ("critic_loss", "geometry_loss", "actor_loss", "alpha_loss", "q_mean", "alpha")


class TrainingDiverged(RuntimeError):
    """A loss or parameter became NaN or infinite; the message names which and when."""


def configure_jax(cache_dir: str | None = DEFAULT_CACHE) -> None:
    """Full float32 matmuls (TF32 defaults have produced NaNs with MJX) and the persistent
    compilation cache, so a second run of the same program skips most of its compile."""
    jax.config.update("jax_default_matmul_precision", "highest")
    cache_dir = os.environ.get("SAVGO_MJX_CACHE", cache_dir)
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def make_mesh(devices: int) -> Mesh | None:
    """A 1-D mesh over the first `devices` devices (all hosts' under jax.distributed), or None
    for one device. ConfigError when fewer are visible."""
    if devices == 1:
        return None
    visible = jax.devices()
    if len(visible) < devices:
        raise ConfigError(f"--devices {devices} but jax sees {len(visible)} device(s): "
                          f"{', '.join(str(d) for d in visible[:8])}")
    return Mesh(np.asarray(visible[:devices]), (DATA,))


HOST_ONLY = ("seed", "run_dir", "resume", "total_steps", "eval_every", "log_every",
             "checkpoint_every", "save_buffer", "track", "wandb_project", "wandb_entity",
             "progress", "ablation", "distributed", "num_seeds", "sweep", "eval_backend", "eval_workers")
"""Config fields the compiled programs never read: the host loop's settings, and what reaches
the programs as data (seeds; with SWEEPABLE, the traced hyperparameters in TrainState)."""


def program_config(cfg: Config) -> Config:
    """cfg with every field the programs do not read set to its default: two configs with the
    same program_config (and member count) run the very same compiled programs."""
    defaults = Config()
    return dataclasses.replace(cfg, **{k: getattr(defaults, k) for k in (*HOST_ONLY, *SWEEPABLE)})


@functools.lru_cache(maxsize=4)
def _program(program_cfg: Config, num_members: int) -> types.SimpleNamespace:
    """The env, trainer and programs of one program config, kept for the process: a second
    train() with other seeds, traced values or run settings neither re-traces nor re-compiles
    (the persistent cache only saves XLA's compile; tracing an MJX program takes seconds to a
    minute). `chunk` and `evaluate` are `_Background` compiles started by the first run."""
    env = make_env(program_cfg)
    trainer = Trainer(program_cfg, env, make_mesh(program_cfg.devices))
    return types.SimpleNamespace(
        env=env, trainer=trainer, chunk=None, evaluate=None,
        env_state_bytes=_tree_bytes(jax.eval_shape(env.reset, jax.random.PRNGKey(0))))


def _start_up(program: types.SimpleNamespace, member_cfgs: list[Config], with_evaluation: bool):
    """The members' initial state; starts the compiles `program` still lacks.

    The first run of a program traces the training chunk from the init program's output shapes
    and compiles it on a background thread while the init program (env reset, network init)
    compiles and runs on this one: XLA's compile releases the GIL, so the two overlap. With
    `with_evaluation`, the MJX evaluation (its own copy of the MJX step, ~100 s of compile for
    Humanoid on an H200) compiles on a third thread and overlaps the first training chunks too;
    the first evaluation waits for it if it is not done yet."""
    trainer = program.trainer
    inputs = trainer.member_inputs(member_cfgs)
    if program.chunk is None:
        init = trainer.init_program.trace(*inputs)
        shapes = trainer.place(init.out_info)
        chunk = trainer.chunk_program(shapes).lower(shapes, jnp.int32(1))
        program.chunk = _Background(chunk.compile)
        init = init.lower()
        if with_evaluation:
            _compile_evaluation(program, shapes, _eval_keys(member_cfgs, 0))
        return trainer.place(init.compile()(*inputs))
    ts = trainer.init_members(member_cfgs)
    if with_evaluation and program.evaluate is None:
        _compile_evaluation(program, ts, _eval_keys(member_cfgs, 0))
    return ts


def _compile_evaluation(program: types.SimpleNamespace, ts, eval_keys: jax.Array) -> None:
    """`ts`, `eval_keys`: arrays or their ShapeDtypeStructs (only their shapes matter)."""
    trainer = program.trainer
    program.evaluate = _Background(lambda: jax.jit(trainer.evaluate_members).lower(ts, eval_keys).compile())


BACKGROUND_THREAD = "savgo-mjx-compile"


def compile_in_flight() -> bool:
    """Whether a background compile (`_Background`) is still running. A process must then leave
    with os._exit: Python's shutdown would stop that daemon thread inside XLA's C++ compiler,
    which aborts the process (exit -6, "FATAL: exception not rethrown") after a clean Ctrl-C."""
    return any(t.name == BACKGROUND_THREAD and t.is_alive() for t in threading.enumerate())


class _Background:
    """`fn()` on a daemon thread: a run stopped early exits without waiting for it (see
    compile_in_flight)."""

    def __init__(self, fn: Callable):
        self._done = threading.Event()
        self._value, self._error = None, None

        def run():
            try:
                self._value = fn()
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                self._error = e
            finally:
                self._done.set()

        threading.Thread(target=run, name=BACKGROUND_THREAD, daemon=True).start()

    def result(self):
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


def _crossed(every: int, steps: int, chunk_steps: int) -> bool:
    """Whether the last chunk (chunk_steps env steps, ending at `steps`) crossed a multiple of
    `every` (0: never)."""
    return bool(every) and steps // every > (steps - chunk_steps) // every


def _eval_keys(member_cfgs: list[Config], steps: int) -> jax.Array:
    """[S, 2]: a member's evaluation episodes depend on its seed and the step count only."""
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(m.seed + 1), steps) for m in member_cfgs])


def default_run_dir(cfg: Config) -> str:
    return os.path.join("runs", f"{cfg.env}-{cfg.algo}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}")


def _tree_bytes(tree) -> int:
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def train(cfg: Config) -> dict:
    """Trains according to `cfg`; returns a summary (run_dir, env_steps, eval returns...).

    Every member (seed times swept setting, `config.members`) trains side by side in one compiled
    program; metrics.jsonl gets one row per member and log point, keyed by `member` and `seed`
    (and the swept values). Raises ConfigError for impossible settings (before allocating
    anything), TrainingDiverged when a loss or parameter goes non-finite. Ctrl-C saves a
    checkpoint, then re-raises.
    """
    validate(cfg)
    member_cfgs = members(cfg)
    swept = list(parse_sweep(cfg.sweep))
    program = _program(program_config(cfg), len(member_cfgs))
    env, trainer = program.env, program.trainer
    check_memory(cfg, env.observation_size, env.action_size, program.env_state_bytes,
                 num_members=len(member_cfgs))

    run_dir = cfg.run_dir or default_run_dir(cfg)
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(dataclasses.replace(cfg, run_dir=run_dir)), f, indent=2)

    checkpointer = Checkpointer(run_dir, save_buffer=cfg.save_buffer)
    on_device = cfg.eval_backend == "mjx"
    t0 = time.perf_counter()
    ts = _start_up(program, member_cfgs, with_evaluation=on_device)
    if cfg.resume:
        ts = checkpointer.restore(ts)
    start_steps = int(ts.env_steps[0])
    chunk = program.chunk.result()  # waits while it is still compiling
    compile_s = time.perf_counter() - t0  # start-up: init program and chunk compile, overlapped

    total_iterations = math.ceil(cfg.total_steps / cfg.num_envs)
    chunk_iterations = max(1, cfg.log_every // cfg.num_envs)
    logger = MetricsLogger(cfg, run_dir, initial_steps=start_steps)
    logger.print(f"run dir {run_dir}; {len(member_cfgs)} member(s) x {cfg.num_envs} envs; "
                 f"compiled in {compile_s:.1f} s (init included)")
    labels = [{"member": i, "seed": m.seed, **{k: getattr(m, k) for k in swept}}
              for i, m in enumerate(member_cfgs)]
    last_saved = checkpointer.latest_step()
    eval_returns = None
    steps = start_steps
    evaluator = None if on_device else BackgroundEvaluator(cfg.eval_envs, cfg.eval_workers)
    fell_behind = False

    def log_background_evaluations(max_pending: int | None = None) -> None:
        """Logs a row per member for each finished Gymnasium evaluation, at the env step and
        wall time of the policy snapshot it evaluated (so after later training rows); with
        `max_pending`, first waits until no more than that many are running."""
        nonlocal eval_returns
        for at, returns, lengths in evaluator.finished(max_pending):
            logger.log([dict(at, **label, eval_return=float(r.mean()), eval_return_std=float(r.std()),
                             eval_length=float(n.mean()), eval_backend="gymnasium")
                        for label, r, n in zip(labels, returns, lengths)])
            eval_returns = [float(r.mean()) for r in returns]
        for error in evaluator.errors:
            logger.print(f"warning: a Gymnasium evaluation episode failed ({error}); its return is logged as null")
        evaluator.errors.clear()

    with _sigint_between_chunks() as stop_requested:
        try:
            wall0 = time.perf_counter()
            while int(ts.iteration[0]) < total_iterations:
                n = min(chunk_iterations, total_iterations - int(ts.iteration[0]))
                tick = time.perf_counter()
                ts, metrics = chunk(ts, jnp.int32(n))
                metrics = jax.device_get(metrics)
                elapsed = time.perf_counter() - tick
                steps = int(ts.env_steps[0])
                _check_finite(metrics, steps, last_saved, run_dir, labels)

                shared = {"env_steps": steps, "wall_s": time.perf_counter() - wall0 + compile_s,
                          "sps": n * cfg.num_envs * len(member_cfgs) / elapsed}
                rows = [dict(shared, **label, **{k: v[i] for k, v in metrics.items() if k != "params_finite"})
                        for i, label in enumerate(labels)]
                finished = int(ts.iteration[0]) >= total_iterations
                # On Ctrl-C the evaluation is skipped: it would delay the stop (its first call may
                # still be compiling) and the checkpoint matters more.
                if finished or (_crossed(cfg.eval_every, steps, n * cfg.num_envs) and not stop_requested()):
                    if evaluator is not None:  # a host snapshot of the policies; logged when done
                        if evaluator.pending >= MAX_PENDING_EVALUATIONS:
                            if not fell_behind:
                                logger.print("Gymnasium evaluations fall behind training: it waits for "
                                             "them (more --eval-workers or a larger --eval-every avoid that)")
                            fell_behind = True
                            log_background_evaluations(max_pending=MAX_PENDING_EVALUATIONS - 1)
                        evaluator.submit(member_policies(dataclasses.replace(cfg, run_dir=run_dir), env, ts),
                                         {"env_steps": steps, "wall_s": shared["wall_s"]})
                    else:
                        evaluate = program.evaluate.result()  # waits while it is still compiling
                        returns = np.asarray(evaluate(ts, _eval_keys(member_cfgs, steps)))  # [S, eval_envs]
                        eval_returns = [float(r) for r in returns.mean(axis=1)]
                        for row, r in zip(rows, returns):
                            row.update(eval_return=float(r.mean()), eval_return_std=float(r.std()))
                logger.log(rows)
                if evaluator is not None:
                    log_background_evaluations(max_pending=0 if finished else None)
                if finished or _crossed(cfg.checkpoint_every, steps, n * cfg.num_envs):
                    last_saved = checkpointer.save(ts)
                    export_policies(run_dir, cfg, env, ts)
                if stop_requested() and not finished:
                    raise KeyboardInterrupt
            if cfg.track:  # a video of the best member's episode in Gymnasium; never fails the run
                try:
                    from savgo_mjx.video import log_video_to_wandb

                    best = 0 if eval_returns is None else int(np.argmax(eval_returns))
                    log_video_to_wandb(run_dir, best, step=steps)
                except Exception as e:  # noqa: BLE001
                    logger.print(f"warning: no video logged to wandb ({type(e).__name__}: {e})")
        except KeyboardInterrupt:
            if any(leaf.is_deleted() for leaf in jax.tree.leaves(ts)):  # a second Ctrl-C inside a chunk
                logger.print("interrupted twice: the chunk in flight had taken the training state; "
                             f"the last checkpoint ({last_saved} env steps) in {run_dir} is kept")
            elif bool(np.all(jax.device_get(jax.vmap(params_finite)(ts.agent)))):
                last_saved = checkpointer.save(ts)
                export_policies(run_dir, cfg, env, ts)
                logger.print(f"interrupted: saved a checkpoint at {last_saved} env steps in {run_dir}; "
                             f"continue with --resume --run-dir {run_dir}")
            if evaluator is not None and evaluator.pending:  # seconds; a second Ctrl-C skips them
                logger.print(f"waiting for {evaluator.pending} evaluation(s) in Gymnasium")
                log_background_evaluations(max_pending=0)
            raise
        finally:
            if evaluator is not None:
                evaluator.close()
            logger.close()
            checkpointer.close()
    return {"run_dir": run_dir, "env_steps": steps, "members": len(member_cfgs),
            "eval_return": None if eval_returns is None else float(np.mean(eval_returns)),
            "eval_returns": eval_returns, "compile_s": compile_s,
            "wall_s": time.perf_counter() - t0}


@contextlib.contextmanager
def _sigint_between_chunks() -> Iterator[Callable[[], bool]]:
    """Yields `stop_requested()`. The first Ctrl-C / SIGINT only sets it: a chunk donates the
    training state to the device program, so an interrupt inside the call would leave nothing to
    save; the loop checks it after each chunk. A second SIGINT raises KeyboardInterrupt at once."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers live there only
        yield lambda: False
        return
    requested = []

    def on_sigint(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)
        print("Ctrl-C: stopping after the running chunk (again to stop at once, losing it)", flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)


def _check_finite(metrics: dict, steps: int, last_saved: int | None, run_dir: str,
                  labels: list[dict]) -> None:
    """metrics: per-member arrays [S]. Raises TrainingDiverged naming quantity and member."""
    problems = []
    for i, label in enumerate(labels):
        bad = [k for k in WATCHED if k in metrics and not np.isfinite(metrics[k][i])]
        if not metrics["params_finite"][i]:
            bad.append("network parameters")
        if bad:
            who = f" (member {i}, seed {label['seed']})" if len(labels) > 1 else ""
            problems.append(f"{', '.join(bad)}{who}")
    if problems:
        kept = (f"the last good checkpoint ({last_saved} env steps) in {run_dir} is kept"
                if last_saved is not None else "no checkpoint had been written yet")
        raise TrainingDiverged(f"non-finite {'; '.join(problems)} by env step {steps}; {kept}")

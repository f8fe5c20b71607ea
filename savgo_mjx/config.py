"""The one typed config: every knob of a run, its validation, and preset loading.

Defaults here are the paper's single-env values (SAVGO.md section 4) where they carry over, and a
small CPU-sized parallel regime otherwise. Per-task presets in `configs/<env>.toml` override them
(K per task, num-envs, batch...); a `--config FILE` overrides the preset; command-line flags
override everything.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import os
import typing
from typing import Literal, Optional

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


class ConfigError(ValueError):
    """Bad user input: train.py prints it on one line and exits with code 2."""


@dataclasses.dataclass(frozen=True)
class Config:
    # --- run ---------------------------------------------------------------------------------
    env: str = "inverted_pendulum"
    """Task name from the envs registry."""
    physics: Literal["v5", "fast"] = "v5"
    """Simulator settings: "v5" as the Gymnasium XML, "fast" tuned for speed (docs/ENVS.md)."""
    rk4_stage_unroll: Literal[1, 2, 3] = 3
    """RK4 stages compiled as straight-line code for free/ball-joint tasks (ant, humanoid): 1
    compiles in ~0.6x the time and runs ~0.85x as fast on CPU (docs/BENCHMARKS.md); same physics."""
    algo: Literal["savgo", "sac"] = "savgo"
    """SAVGO kernel actor, or the plain SAC actor (reparameterised min-Q gradient) as baseline."""
    seed: int = 0
    num_envs: int = 16
    """Parallel environments N: each iteration adds N transitions to the buffer."""
    total_steps: int = 40_000
    """Environment steps (summed over all envs) to train for."""
    run_dir: Optional[str] = None
    """Where config.json, metrics.jsonl and checkpoints go (default runs/<env>-<algo>-<seed>-<time>)."""
    resume: bool = False
    """Continue the run in --run-dir from its latest checkpoint."""
    num_seeds: int = 1
    """Seeds seed, seed+1, ... trained side by side as a vmapped axis of one compiled program."""
    sweep: tuple[str, ...] = ()
    """NAME=V1,V2,... per swept hyperparameter (traced ones only, see SWEEPABLE); every
    combination of the values, times --num-seeds, trains in one compiled program."""
    devices: int = 1
    """Data-parallel devices D: envs, replay and batches split D ways, gradients averaged
    (num-envs, buffer-size, batch-size, geometry-batch and actor-batch must divide by D)."""
    distributed: bool = False
    """Multi-host: call jax.distributed.initialize() first (coordinator from the environment,
    e.g. SLURM or JAX_COORDINATOR_ADDRESS); --devices then counts devices over all hosts."""
    ablation: Optional[str] = None
    """The paper ablation applied (a key of ABLATIONS; set with --ablation), kept for reports."""

    # --- replay and updates ------------------------------------------------------------------
    buffer_size: int = 200_000
    """Replay capacity in transitions (a device-resident ring)."""
    batch_size: int = 256
    """B: transitions per gradient update (critic loss)."""
    updates_per_iter: int = 4
    """G: gradient updates after each vector step. Replay ratio = G * B / N."""
    policy_frequency: int = 1
    """The actor and its temperature update on every n-th of the G updates (critics and embedding
    on every one), FastSAC's and TD3's policy delay; G must divide by it. SAVGO's candidate
    scoring is in the actor update, so 2 halves its cost per iteration."""
    n_step: int = 1
    """Critic targets from n-step returns (1: the paper's one-step target). Each env's return
    stops at its episode's end and at the newest data; the geometry loss stays one-step."""
    warmup_steps: int = 2_000
    """Env steps of uniform random actions before learning starts."""
    geometry_batch: int = 256
    """M: the geometry loss runs on an M x M sub-batch of the update batch."""
    actor_batch: int = 256
    """P: states per kernel-actor update (each with K candidates)."""
    num_candidates: int = 64
    """K: candidate actions per state for the kernel actor (per-task values in configs/)."""

    # --- optimisation ------------------------------------------------------------------------
    gamma: float = 0.99
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    critic_weight_decay: float = 1e-4
    embedding_lr: float = 1e-3
    alpha_lr: float = 1e-3
    alpha_init: float = 1.0
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    """Adam's second-moment decay for every optimiser (FastSAC: 0.95)."""
    target_entropy: Optional[float] = None
    """Entropy target; None means -|A|."""
    target_rate: float = 0.005
    """Polyak rate of the critic targets, and of the embedding target unless --embed-target-rate."""
    embed_target_rate: Optional[float] = None
    """Polyak rate of the target embedding trunk (candidate scoring, temporal mixing); None: the
    --target-rate."""
    grad_clip: float = 5.0
    hidden: int = 256
    """Width of every hidden layer (actor 2, critics 2 each, embedding 3 plus its output)."""
    actor_hidden: Optional[int] = None
    """Actor width if not --hidden (FastTD3: 512)."""
    critic_hidden: Optional[int] = None
    """Twin-critic width if not --hidden (FastTD3: 1024); the embedding keeps --hidden."""
    log_std_max: float = 1.0
    """Upper end of the actor's log std range [-5, log_std_max] (paper 1, FastSAC 0)."""
    critic_layer_norm: bool = False
    obs_norm: bool = True

    # --- SAVGO geometry and kernel (SAVGO.md section 3) -----------------------------------
    lam: float = 1.5
    """Curvature lambda of the target cosine T = 1 - 2 Delta^lambda."""
    eta: float = 0.5
    """Temporal mixing weight of the next-state cosine in Y."""
    beta_decay: float = 0.995
    fixed_beta: Optional[float] = None
    """Ablation A4: a constant beta instead of the EMA of the 0.95 quantile (A4 uses 1.0)."""
    huber_delta: float = 0.2
    kernel_eps: float = 0.05
    candidate_dtype: Literal["float32", "bfloat16"] = "float32"
    """Number format of the P x K target-embedding pass of candidate scoring (no gradient):
    bfloat16 trades ~3 significant digits for tensor-core matmuls on GPUs. The candidates'
    target Q values are always float32 (bfloat16 cannot resolve their spread)."""
    update_precision: Literal["float32", "tensorfloat32"] = "float32"
    """Matmul precision of the gradient update's networks (jax's names): tensorfloat32 rounds
    their float32 matmul inputs to 10 mantissa bits on NVIDIA tensor cores (no effect on CPU).
    The env step, acting and evaluation stay float32 (reduced-precision defaults have produced
    NaNs with MJX), and so do the candidates' target Q values (their spread is the actor's signal)."""
    candidate_noise: float = 0.2
    target_noise: float = 0.2
    tau_start: float = 1.0
    tau_end: float = 0.3
    tau_anneal_steps: int = 200_000
    """Env steps over which the kernel temperature anneals; 0 keeps tau_start (ablation B9)."""
    kernel: Literal["softmax", "uniform", "argmax"] = "softmax"
    """Kernel weights: softmax (SAVGO), uniform (ablation B1), argmax (ablation B4)."""
    trunk: Literal["geometry", "actor_only", "random_frozen"] = "geometry"
    """Embedding training: geometry loss (SAVGO), actor loss only (A2), random and frozen (A1)."""
    value_signal: Literal["bellman", "q"] = "bellman"
    """u_i = r + gamma (1 - term) min Qbar (default) or the older u_i = min Qbar."""

    # --- evaluation, logging, checkpoints ----------------------------------------------------
    eval_every: int = 10_000
    """Env steps between deterministic evaluations (0: only at the end)."""
    eval_envs: int = 10
    """Episodes per evaluation."""
    eval_backend: Literal["mjx", "gymnasium"] = "mjx"
    """Where evaluations run. "mjx": the deterministic policy in the MJX env on the device, between
    chunks (training waits). "gymnasium": a snapshot of it in Gymnasium's own v5 env (MuJoCo C) on
    host threads while training goes on: no device time and no evaluation program to compile, and
    the simulator the paper's returns come from (v5 physics, whatever --physics trains on)."""
    eval_workers: int = 4
    """Host threads of --eval-backend gymnasium (each runs one episode at a time)."""
    log_every: int = 2_000
    """Env steps between log lines (the device program runs this many steps between host syncs)."""
    checkpoint_every: int = 20_000
    save_buffer: bool = True
    """Include the replay buffer in checkpoints (exact resume; costs disk)."""
    track: bool = False
    """Log to Weights & Biases."""
    wandb_project: str = "savgo-mjx"
    wandb_entity: Optional[str] = None
    progress: bool = True
    """Show the live progress display."""


ABLATIONS: dict[str, dict] = {
    "A1": {"trunk": "random_frozen"},
    "A2": {"trunk": "actor_only"},
    "A3": {"eta": 0.0},
    "A4": {"fixed_beta": 1.0},
    "A5": {"lam": 1.0},
    "B1": {"kernel": "uniform"},
    "B4": {"kernel": "argmax"},
    "B9": {"tau_anneal_steps": 0},
}
"""The paper's ablations (SAVGO.md section 5) as config overrides."""


SWEEPABLE = ("gamma", "lam", "eta", "beta_decay", "huber_delta", "kernel_eps", "candidate_noise",
             "target_noise", "tau_start", "tau_end", "tau_anneal_steps", "target_rate",
             "embed_target_rate", "target_entropy", "actor_lr", "critic_lr", "embedding_lr",
             "alpha_lr", "alpha_init", "adam_b1", "adam_b2")
"""Hyperparameters that are traced inputs of the compiled program (agent.Hyper, the optimiser
states, the initial temperature): a sweep over them shares one compile. Everything else (sizes,
switches, clipping, weight decay) changes the program."""


def parse_sweep(sweep: tuple[str, ...]) -> dict[str, list[float]]:
    """("lam=1,1.5", "eta=0.5") -> {"lam": [1.0, 1.5], "eta": [0.5]}; ConfigError if malformed."""
    grid: dict[str, list[float]] = {}
    for item in sweep:
        name, sep, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            raise ConfigError(f"--sweep entries look like NAME=V1,V2,...; got {item!r}")
        if name not in SWEEPABLE:
            raise ConfigError(f"cannot sweep {name!r} in one program; sweepable: {', '.join(SWEEPABLE)}")
        if name in grid:
            raise ConfigError(f"--sweep names {name!r} twice")
        try:
            grid[name] = [float(v) for v in values.split(",")]
        except ValueError:
            raise ConfigError(f"--sweep {name}: values must be numbers, got {values!r}") from None
    return grid


def members(cfg: Config) -> list[Config]:
    """The runs trained side by side: every sweep combination (outer) times every seed (inner).
    Each member is a full Config whose seed and swept values are its own."""
    grid = parse_sweep(cfg.sweep)
    out = []
    for values in itertools.product(*grid.values()):
        setting = dict(zip(grid, values))
        if "tau_anneal_steps" in setting:
            setting["tau_anneal_steps"] = int(setting["tau_anneal_steps"])
        for i in range(cfg.num_seeds):
            out.append(dataclasses.replace(cfg, seed=cfg.seed + i, **setting))
    return out


def load_toml(path: str, extra_keys: tuple[str, ...] = (), what: str = "config file") -> dict:
    """Reads a preset file and checks its keys against Config (plus `extra_keys`)."""
    if not os.path.isfile(path):
        raise ConfigError(f"{what} not found: {path}")
    with open(path, "rb") as f:
        try:
            values = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"cannot parse {path}: {e}") from None
    known = {f.name for f in dataclasses.fields(Config)} | set(extra_keys)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in {path}")
    _check_choices(values, f" in {path}")
    return values


def _check_choices(values: dict, where: str = "") -> None:
    """Settings typed Literal[...] must be one of those values (the flags' choices come from the
    same types; a config file or a Config built in code is checked here)."""
    hints = typing.get_type_hints(Config)
    for name, value in values.items():
        choices = typing.get_args(hints[name]) if typing.get_origin(hints.get(name)) is Literal else ()
        if choices and value not in choices:
            raise ConfigError(f"--{name.replace('_', '-')} must be one of {', '.join(map(str, choices))}{where}, "
                              f"got {value!r}")


def preset_path(env: str) -> str:
    return os.path.join(CONFIG_DIR, f"{env}.toml")


def defaults_for(env: str, config_file: Optional[str] = None) -> Config:
    """Config defaults, then configs/<env>.toml if it exists, then `config_file`."""
    values: dict = {"env": env}
    if os.path.isfile(preset_path(env)):
        values.update(load_toml(preset_path(env)))
    if config_file is not None:
        values.update(load_toml(config_file))
    return Config(**values)


def validate(cfg: Config, observation_size: int = 0, action_size: int = 0) -> None:
    """Raises ConfigError naming the first impossible setting."""
    import envs  # local: config stays importable without building anything

    if cfg.env not in envs.REGISTRY:
        raise ConfigError(f"unknown env {cfg.env!r}; valid names: {', '.join(sorted(envs.REGISTRY))}")
    positive = ["num_seeds", "devices", "num_envs", "total_steps", "buffer_size", "batch_size", "updates_per_iter",
                "policy_frequency", "geometry_batch", "actor_batch", "num_candidates", "eval_envs", "log_every",
                "hidden", "n_step", "eval_workers"]
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    for name in ["actor_hidden", "critic_hidden"]:
        if getattr(cfg, name) is not None and getattr(cfg, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    for name in ["actor_lr", "critic_lr", "embedding_lr", "alpha_lr"]:
        if not getattr(cfg, name) >= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    for name in ["warmup_steps", "eval_every", "checkpoint_every", "tau_anneal_steps",
                 "critic_weight_decay", "eta", "grad_clip"]:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    _check_choices({f.name: getattr(cfg, f.name) for f in dataclasses.fields(Config)})
    if not 0.0 <= cfg.gamma <= 1.0:
        raise ConfigError(f"--gamma must be in [0, 1], got {cfg.gamma}")
    if not -5.0 < cfg.log_std_max <= 2.0:
        raise ConfigError(f"--log-std-max must be in (-5, 2] (the range's lower end is -5), got {cfg.log_std_max}")
    for name in ["adam_b1", "adam_b2"]:
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(cfg, name)}")
    if not 0.0 < cfg.target_rate <= 1.0:
        raise ConfigError(f"--target-rate must be in (0, 1], got {cfg.target_rate}")
    if cfg.embed_target_rate is not None and not 0.0 < cfg.embed_target_rate <= 1.0:
        raise ConfigError(f"--embed-target-rate must be in (0, 1], got {cfg.embed_target_rate}")
    if cfg.lam <= 0 or cfg.tau_start <= 0 or cfg.tau_end <= 0 or cfg.alpha_init <= 0:
        raise ConfigError("--lam, --tau-start, --tau-end and --alpha-init must be positive")
    if not 0.0 <= cfg.kernel_eps <= 1.0:
        raise ConfigError(f"--kernel-eps must be in [0, 1], got {cfg.kernel_eps}")
    if cfg.buffer_size < cfg.num_envs:
        raise ConfigError(f"--buffer-size ({cfg.buffer_size}) must hold at least one vector step "
                          f"of --num-envs ({cfg.num_envs}) transitions")
    if cfg.n_step > 1 and cfg.buffer_size % cfg.num_envs:
        fit = cfg.buffer_size // cfg.num_envs * cfg.num_envs
        raise ConfigError(f"--n-step {cfg.n_step} follows each env through the buffer, so "
                          f"--buffer-size ({cfg.buffer_size}) must be a multiple of --num-envs "
                          f"({cfg.num_envs}); e.g. --buffer-size {fit}")
    if cfg.batch_size > cfg.buffer_size:
        raise ConfigError(f"--batch-size ({cfg.batch_size}) is larger than --buffer-size "
                          f"({cfg.buffer_size})")
    if cfg.geometry_batch > cfg.batch_size or cfg.actor_batch > cfg.batch_size:
        raise ConfigError(f"--geometry-batch ({cfg.geometry_batch}) and --actor-batch "
                          f"({cfg.actor_batch}) must not exceed --batch-size ({cfg.batch_size})")
    if cfg.updates_per_iter % cfg.policy_frequency:
        raise ConfigError(f"--updates-per-iter ({cfg.updates_per_iter}) must divide by "
                          f"--policy-frequency ({cfg.policy_frequency}): the actor updates once "
                          f"in every {cfg.policy_frequency} of them")
    if cfg.geometry_batch < 2:
        raise ConfigError("--geometry-batch must be at least 2 (the loss is over pairs)")
    if cfg.resume and cfg.run_dir is None:
        raise ConfigError("--resume needs --run-dir (the run to continue)")
    for name in ["num_envs", "buffer_size", "batch_size", "geometry_batch", "actor_batch"]:
        if getattr(cfg, name) % cfg.devices:
            raise ConfigError(f"--{name.replace('_', '-')} ({getattr(cfg, name)}) must divide by "
                              f"--devices ({cfg.devices}): each device holds an equal share")
    if cfg.devices > 1 and cfg.geometry_batch // cfg.devices < 2:
        raise ConfigError("--geometry-batch / --devices must be at least 2 (the loss is over pairs)")
    if cfg.eval_backend == "gymnasium":
        if cfg.env not in envs.GYMNASIUM_IDS:
            raise ConfigError(f"--eval-backend gymnasium: {cfg.env!r} has no Gymnasium id")
        if importlib.util.find_spec("gymnasium") is None:
            raise ConfigError("--eval-backend gymnasium needs gymnasium with MuJoCo "
                              "(pip install 'gymnasium[mujoco]'); or use --eval-backend mjx")
    if cfg.ablation is not None and cfg.ablation not in ABLATIONS:
        raise ConfigError(f"unknown ablation {cfg.ablation!r}; valid: {', '.join(ABLATIONS)}")
    if cfg.sweep:
        for member in members(cfg):
            validate(dataclasses.replace(member, sweep=()))


def shard_config(cfg: Config) -> Config:
    """The sizes one of cfg.devices shards works on (validate() checks they divide)."""
    d = cfg.devices
    return dataclasses.replace(
        cfg, num_envs=cfg.num_envs // d, buffer_size=cfg.buffer_size // d,
        batch_size=cfg.batch_size // d, geometry_batch=cfg.geometry_batch // d,
        actor_batch=cfg.actor_batch // d)
